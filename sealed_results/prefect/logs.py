"""Log redaction at Prefect's API log handler: what is shipped is rewritten, nothing else.

Every record Prefect sends to its API goes through ``APILogHandler.prepare(record)``, which
formats it (message text and formatted traceback, by the handler's formatter) into the
``LogCreate`` dict that is queued for the API. ``install()`` wraps that method on the class, so
it applies to every API log handler instance, whatever logger it hangs on (Prefect attaches it
to ``prefect``, ``prefect.flow_runs``, ``prefect.task_runs``, and a logging config may add more),
to handlers created later by a new logging configuration, and to subclasses
(``WorkerAPILogHandler``). The wrapper

1. seals the exceptions of the record (``exc_info`` and exceptions among the arguments) when
   the run in context seals exception messages (``sealed_results.prefect.failures``);
2. lets Prefect format the record as usual;
3. rewrites the formatted text with ``sealed_results.sealing.REDACTOR``: sealed exception
   messages become ``[sealed message <token>]``, values opened from sealed parameters
   ``[sealed value <token>]``, the settings of the profiles this process used (roots, bucket and
   key names, keyring paths, provider addresses), ``REDACTOR.add_pattern`` patterns and
   ``$SEALED_RESULTS_REDACT_PATTERNS`` lines ``[redacted]``.

Levels, logger names, timestamps and run ids are kept. The record itself is not modified, so
the console and any other local handler still show the real text: a ``logging.Filter`` on
Python 3.11 can only mutate the shared record (filters returning a replacement record arrived
in 3.12), and Prefect's API handler runs before the console handler, so a mutating filter would
redact local output too. ``RedactingFilter`` is provided for handlers where that is wanted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_LOGGING_TO_API_MAX_LOG_SIZE

from sealed_results.prefect.failures import seal_current_exception
from sealed_results.sealing import REDACTOR

__all__ = ["RedactingFilter", "install", "redact_log"]

_MARK = "__sealed_results_wrapped__"


def _record_exceptions(record: logging.LogRecord) -> list[BaseException]:
    found: list[BaseException] = []
    if record.exc_info and isinstance(record.exc_info, tuple) and record.exc_info[1]:
        found.append(record.exc_info[1])
    args = record.args
    values = args.values() if isinstance(args, dict) else (args or ())
    found += [a for a in values if isinstance(a, BaseException)]
    return found


def redact_log(log: dict[str, Any], handler: APILogHandler | None = None) -> dict[str, Any]:
    """A prepared ``LogCreate`` dict with its message redacted (and within Prefect's size cap)."""
    message = log.get("message")
    if not isinstance(message, str):
        return log
    redacted = REDACTOR.redact(message)
    if redacted == message:
        return log
    log = dict(log)
    log["message"] = redacted
    if handler is not None and "__payload_size__" in log:
        log.pop("__payload_size__")
        size = handler._get_payload_size(log)
        limit = PREFECT_LOGGING_TO_API_MAX_LOG_SIZE.value()
        if size > limit:
            keep = max(len(redacted) - (size - limit) - 50, 0)
            log["message"] = redacted[:keep] + "... [truncated]"
            size = handler._get_payload_size(log)
        log["__payload_size__"] = size
    return log


def _wrap(original: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    if getattr(original, _MARK, False):
        return original

    def prepare(self: APILogHandler, record: logging.LogRecord) -> dict[str, Any]:
        for exc in _record_exceptions(record):
            seal_current_exception(exc)
        return redact_log(original(self, record), self)

    setattr(prepare, _MARK, True)
    prepare.__wrapped__ = original  # type: ignore[attr-defined]
    prepare.__doc__ = original.__doc__
    return prepare


def install() -> None:
    """Wrap ``APILogHandler.prepare`` once per process (importing ``sealed_results.prefect``
    calls this)."""
    APILogHandler.prepare = _wrap(APILogHandler.prepare)  # type: ignore[method-assign]


class RedactingFilter(logging.Filter):
    """A filter that redacts a record in place (message, arguments and traceback text), for
    handlers whose output should be redacted too (files shipped elsewhere, a log collector).
    It changes the record for every handler that sees it after this one."""

    def filter(self, record: logging.LogRecord) -> bool:
        for exc in _record_exceptions(record):
            seal_current_exception(exc)
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = REDACTOR.redact(message), ()
        if record.exc_text:
            record.exc_text = REDACTOR.redact(record.exc_text)
        record.exc_info = None
        return True
