"""``@task(**sealed("prod"))`` and ``@flow(**sealed_flow("prod"))``: one argument per task.

The helpers return Prefect decorator keyword arguments (storage, serializer, persistence, and
for tasks the keyed cache policy) and refuse or flag the options that would put data back into
Prefect's API: a ``result_storage_key`` template stores parameter values as the storage key (a
ConfigError), run-name templates that use parameters store them as the run's name (a warning,
since a name such as ``"extract-{region}"`` may be harmless). Decorating contacts no server and
reads no configuration: the profile is resolved where the task runs.
"""

from __future__ import annotations

import string
import warnings
from collections.abc import Callable
from typing import Any, cast

from prefect.cache_policies import DEFAULT, NO_CACHE, CachePolicy

from sealed_results.errors import ConfigError
from sealed_results.prefect.cache import SealedCachePolicy
from sealed_results.prefect.serializer import SealedSerializer
from sealed_results.prefect.storage import SealedResultStorage

__all__ = ["RunNameWarning", "sealed", "sealed_flow"]


class RunNameWarning(UserWarning):
    """A run-name template uses parameters: their values are stored by Prefect's API."""


def _check_common(overrides: dict[str, Any], helper: str) -> None:
    if "result_storage_key" in overrides:
        raise ConfigError(
            f"{helper}() refuses result_storage_key: Prefect stores the rendered key, parameter "
            "values included, in its API; sealed results are stored under a keyed hash instead"
        )
    if "result_storage" in overrides:
        raise ConfigError(
            f"{helper}() chooses the result storage; remove result_storage, or do not use "
            f"{helper}() for this task or flow"
        )
    for option in ("task_run_name", "flow_run_name"):
        template = overrides.get(option)
        if isinstance(template, str) and _uses_fields(template):
            warnings.warn(
                f"{option} uses parameters: Prefect's API stores the rendered name, so those "
                "values leave your infrastructure; use a fixed name or one without parameters",
                RunNameWarning,
                stacklevel=3,
            )


def _uses_fields(template: str) -> bool:
    try:
        return any(field is not None for _, field, _, _ in string.Formatter().parse(template))
    except ValueError:
        return False


def _keyed_policy(overrides: dict[str, Any], profile: str | None) -> CachePolicy:
    key_fn: Callable[..., str | None] | None = overrides.pop("cache_key_fn", None)
    policy = overrides.pop("cache_policy", None)
    if key_fn is not None:
        if policy is not None:
            raise ConfigError("give cache_policy or cache_key_fn, not both")
        return SealedCachePolicy.wrap(CachePolicy.from_cache_key_fn(key_fn), profile)
    if policy is NO_CACHE:
        return cast(CachePolicy, NO_CACHE)  # random storage keys: nothing to hide
    return SealedCachePolicy.wrap(DEFAULT if policy is None else policy, profile)


def sealed(
    profile: str | None = None, *, seal_exceptions: bool | None = None, **overrides: Any
) -> dict[str, Any]:
    """Keyword arguments for ``@task(...)``: results sealed under ``profile`` (None: the
    default profile where the task runs), persisted, with a keyed cache policy wrapping
    ``cache_policy`` (Prefect's DEFAULT unless given) or ``cache_key_fn``. Other overrides
    (``retries``, ``cache_expiration``...) pass through.

    ``seal_exceptions=True``: a failure's message reaches Prefect as a token (the exception's
    type stays visible; ``sealed_results.prefect.failures``); None follows the flow's choice,
    then ``$SEALED_RESULTS_SEAL_EXCEPTIONS``."""
    overrides = dict(overrides)
    _check_common(overrides, "sealed")
    options: dict[str, Any] = {
        "result_storage": SealedResultStorage.lazy(profile),
        "result_serializer": SealedSerializer(profile=profile).with_exception_choice(
            seal_exceptions
        ),
        "persist_result": True,
        "cache_policy": _keyed_policy(overrides, profile),
    }
    options.update(overrides)
    return options


def sealed_flow(
    profile: str | None = None, *, seal_exceptions: bool | None = None, **overrides: Any
) -> dict[str, Any]:
    """Keyword arguments for ``@flow(...)`` (which takes no cache options): the flow's own
    result sealed under ``profile``; other overrides pass through. ``seal_exceptions=True``
    seals the messages of the flow's failures and of its tasks' that make no choice."""
    overrides = dict(overrides)
    _check_common(overrides, "sealed_flow")
    for option in ("cache_policy", "cache_key_fn", "cache_expiration", "refresh_cache"):
        if option in overrides:
            raise ConfigError(f"@flow takes no {option}; use sealed() on the flow's tasks")
    options: dict[str, Any] = {
        "result_storage": SealedResultStorage.lazy(profile),
        "result_serializer": SealedSerializer(profile=profile).with_exception_choice(
            seal_exceptions
        ),
        "persist_result": True,
    }
    options.update(overrides)
    return options
