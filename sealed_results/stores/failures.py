"""What went wrong in a store, decided in one place, and the error of ours that says so.

Every store error leaves as one of ours, with a fixed message: ``ResultNotFound`` for a missing
object, a path-free ``FileExistsError`` for a name an exclusive write found taken, and
``StorageError`` for everything else. A backend only says what its SDK's exceptions mean
(``sdk_failure``) and, after a bare not-found, whether the bucket itself is missing
(``container_missing``); ``as_ours`` does the rest.

The traceback rule. An SDK's message names roots, buckets, objects and paths, and orchestrators
ship whole formatted tracebacks to their cloud, chained exceptions included. So our errors are
raised ``from None``, never ``from exc``::

    except Exception as exc:
        raise as_ours(exc, ...) from None

``from None`` sets ``__suppress_context__``, so ``traceback.format_exception`` prints our error
alone, while the SDK's error stays reachable for debugging on the machine that raised it, as
``err.__context__`` (Python sets it because the raise is inside the ``except`` block; ``as_ours``
also sets it, for callers that raise elsewhere). ``__cause__`` stays None.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterator

from sealed_results.errors import ResultNotFound, SealedResultsError, StorageError

__all__ = [
    "EXISTS_MESSAGE",
    "MESSAGES",
    "Failure",
    "SdkFailure",
    "as_ours",
    "classify",
    "exception_chain",
    "failure_for_status",
    "is_transient",
]


class Failure(enum.Enum):
    MISSING = "missing"  # no such object
    EXISTS = "exists"  # an exclusive create found the name taken
    NO_CONTAINER = "no_container"  # no such bucket or container
    DENIED = "denied"
    TRANSIENT = "transient"  # throttled, 5xx, dropped connection, timeout
    NOT_A_FILE = "not_a_file"  # a local name that is a symlink, FIFO, device or directory
    PERMANENT = "permanent"


MESSAGES = {
    Failure.NO_CONTAINER: "the bucket or container does not exist",
    Failure.DENIED: "the store denied access (check the credentials and permissions)",
    Failure.TRANSIENT: "the store kept failing with transient errors; gave up after retrying",
    Failure.NOT_A_FILE: "the stored object is not a regular file",
    Failure.PERMANENT: "the store failed",
}
EXISTS_MESSAGE = "an object of that name exists"

#: What one exception of a store's SDK means, if the backend knows.
SdkFailure = Callable[[BaseException], "Failure | None"]

_STATUS = {
    404: Failure.MISSING, 401: Failure.DENIED, 403: Failure.DENIED, 409: Failure.EXISTS,
    412: Failure.EXISTS, 408: Failure.TRANSIENT, 429: Failure.TRANSIENT,
}  # fmt: skip


def failure_for_status(status: int | None) -> Failure | None:
    """The meaning of an HTTP status on an object operation, if it has a general one."""
    if status is not None and 500 <= status <= 599:
        return Failure.TRANSIENT
    return _STATUS.get(status) if status is not None else None


@functools.cache
def _connection_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the connection broke or timed out, whichever SDK was talking: the
    builtins, and aiohttp's (s3fs, gcsfs and adlfs all speak HTTP through aiohttp)."""
    errors: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - only the local and memory stores lack it
        return errors
    return (*errors, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or during, outermost first (SDKs wrap their
    meaningful error in generic ones, or the other way round)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _no_sdk_failure(exc: BaseException) -> Failure | None:
    return None


def classify(exc: BaseException, sdk_failure: SdkFailure = _no_sdk_failure) -> Failure:
    """What ``exc`` means: the SDK's word first, anywhere in the chain, then the builtins'."""
    chain = list(exception_chain(exc))
    for item in chain:
        failure = sdk_failure(item)
        if failure is not None:
            return failure
    for item in chain:
        if isinstance(item, FileExistsError):
            return Failure.EXISTS
        if isinstance(item, FileNotFoundError):
            return Failure.MISSING
        if isinstance(item, PermissionError):
            return Failure.DENIED
        if isinstance(item, _connection_errors()):
            return Failure.TRANSIENT
    return Failure.PERMANENT


def is_transient(exc: Exception, sdk_failure: SdkFailure = _no_sdk_failure) -> bool:
    """Whether another try may help (our own errors are final)."""
    return not isinstance(exc, SealedResultsError) and classify(exc, sdk_failure) is (
        Failure.TRANSIENT
    )


def surely(probe: Callable[[], bool]) -> bool:
    """``probe()``, or False if the probe itself fails: that says nothing either way."""
    try:
        return probe()
    except Exception:
        return False


def error_for(failure: Failure) -> Exception:
    """Our error for ``failure``, with its fixed message."""
    if failure is Failure.MISSING:
        return ResultNotFound()
    if failure is Failure.EXISTS:
        return FileExistsError(EXISTS_MESSAGE)
    return StorageError(MESSAGES.get(failure, MESSAGES[Failure.PERMANENT]))


def as_ours(
    exc: BaseException,
    sdk_failure: SdkFailure = _no_sdk_failure,
    container_missing: Callable[[], bool] | None = None,
) -> Exception:
    """The error of ours to raise for ``exc`` (``raise as_ours(exc) from None``).

    Our own errors pass through unchanged. A not-found is asked ``container_missing`` once,
    since an object store may say "not found" for the bucket and the object alike.
    """
    if isinstance(exc, SealedResultsError):
        return exc
    failure = classify(exc, sdk_failure)
    if failure is Failure.MISSING and container_missing is not None and surely(container_missing):
        failure = Failure.NO_CONTAINER
    error = error_for(failure)
    error.__context__ = exc
    error.__suppress_context__ = True
    return error
