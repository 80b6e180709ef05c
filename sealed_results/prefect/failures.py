"""Sealed exception messages: Prefect sees the exception's type and a token, never its message.

Opt in per task or flow (``sealed(seal_exceptions=True)``, ``sealed_flow(seal_exceptions=True)``;
a flow's choice also covers its tasks that make none) or for a whole machine with
``SEALED_RESULTS_SEAL_EXCEPTIONS`` (``1``/``true``/``all``: every task and flow decorated with
``sealed()``/``sealed_flow()``; or a comma-separated list of profile names, ``default`` for
``sealed(None)``). An explicit ``seal_exceptions=False`` wins over the variable.

How: Prefect builds every failed or crashed state's message with one function,
``prefect.states.format_exception`` (``"<Type>: <message>"``), which ``install()`` wraps. When
the run in context opted in, the exception (type, message, arguments, formatted traceback and
causes) is sealed once into the profile's store with ``seal_exception`` and the message becomes
``"ValueError: [sealed message sealed:<profile>:<token>]"``; the state, and the events Prefect
derives from it, carry only that. The exception object remembers its token, so the flow that
re-raises it reports the same token. Logs are rewritten by the API log handler wrapper
(``sealed_results.prefect.logs``). Nothing else changes: the task still raises the very
exception object, so retries, ``retry_condition_fn`` (which sees the exception),
``raise_on_failure`` and ``state.result()`` in the same process get the real message; in another
process ``state.result()`` raises it rebuilt from the sealed record
(``sealed_results.sealing.rebuild_exception``).
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any, cast

import prefect.states
from prefect.context import FlowRunContext, TaskRunContext

from sealed_results.config import resolve_profile
from sealed_results.errors import SealedResultsError
from sealed_results.prefect.serializer import SealedSerializer
from sealed_results.sealing import (
    REDACTOR,
    exception_placeholder,
    exception_token,
    seal_exception,
)

__all__ = [
    "SEAL_EXCEPTIONS_ENV",
    "exception_options",
    "install",
    "seal_current_exception",
]

SEAL_EXCEPTIONS_ENV = "SEALED_RESULTS_SEAL_EXCEPTIONS"
_TRUE = {"1", "true", "yes", "on", "all", "*"}
_FALSE = {"", "0", "false", "no", "off"}
WITHHELD = "[message withheld: it could not be sealed]"


def _env_selects(profile: str | None) -> bool:
    raw = os.environ.get(SEAL_EXCEPTIONS_ENV, "").strip()
    if raw.lower() in _FALSE:
        return False
    if raw.lower() in _TRUE:
        return True
    names = {name.strip() for name in raw.split(",") if name.strip()}
    if profile is None:
        if "default" in names:
            return True
        try:
            return resolve_profile(None).name in names
        except SealedResultsError:
            return False
    return profile in names


def _profile_selects(profile: str | None) -> bool:
    """The profile's own ``seal_exceptions = true`` (profile-wide opt-in)."""
    try:
        return resolve_profile(profile).seal_exceptions
    except SealedResultsError:
        return False


def exception_options(obj: Any, flow: Any = None) -> tuple[bool, str | None]:
    """(seal exceptions?, profile) for a task or flow ``obj``, inside ``flow`` if given: its own
    ``seal_exceptions`` choice, else the flow's, else ``SEALED_RESULTS_SEAL_EXCEPTIONS``."""
    chain = [o for o in (obj, flow) if o is not None]
    profile: str | None = None
    sealed_any = False
    for item in chain:
        serializer = getattr(item, "result_serializer", None)
        if isinstance(serializer, SealedSerializer):
            if not sealed_any:
                profile, sealed_any = serializer.profile, True
            choice = serializer.seal_exceptions
            if choice is not None:
                return choice, profile if sealed_any else serializer.profile
    return (sealed_any and (_env_selects(profile) or _profile_selects(profile))), profile


def _current_options() -> tuple[bool, str | None]:
    flow_ctx = FlowRunContext.get()
    flow = flow_ctx.flow if flow_ctx is not None else None
    task_ctx = TaskRunContext.get()
    if task_ctx is not None:
        return exception_options(task_ctx.task, flow)
    if flow is not None:
        return exception_options(flow)
    return False, None


def seal_current_exception(exc: BaseException) -> str | None:
    """The placeholder for ``exc``'s message when it was sealed before or the run in context
    seals exceptions (sealing it now), else None."""
    token = exception_token(exc)
    if token is None:
        enabled, profile = _current_options()
        if not enabled:
            return None
        try:
            token = seal_exception(exc, profile)
        except Exception:
            # The store or the key provider failed: the message is withheld, not shipped.
            REDACTOR.add_secret(str(exc), WITHHELD)
            return WITHHELD
    return exception_placeholder(token)


# -- the hook into Prefect's state messages ------------------------------------------------------
_MARK = "__sealed_results_wrapped__"


def _wrap(original: Any) -> Any:
    if getattr(original, _MARK, False):
        return original

    def format_exception(exc: BaseException, tb: TracebackType | None = None) -> str:
        placeholder = seal_current_exception(exc)
        if placeholder is None:
            return cast(str, original(exc, tb))
        return f"{type(exc).__name__}: {placeholder}"

    setattr(format_exception, _MARK, True)
    format_exception.__wrapped__ = original  # type: ignore[attr-defined]
    format_exception.__doc__ = original.__doc__
    return format_exception


def install() -> None:
    """Wrap ``prefect.states.format_exception`` (and its import in ``prefect._internal.states``)
    once per process. Importing ``sealed_results.prefect`` calls this."""
    prefect.states.format_exception = _wrap(prefect.states.format_exception)
    internal = sys.modules.get("prefect._internal.states")
    if internal is not None and hasattr(internal, "format_exception"):
        setattr(internal, "format_exception", _wrap(internal.format_exception))  # noqa: B010
