"""FsspecHandler: the one storage core every built-in handler shares.

fsspec already speaks local disk, memory, S3, GCS and Azure with the credential and endpoint
forms users know, so ``storage_options`` pass straight through. A backend subclass adds only what
is its own: protocols, default options, how its store makes a write exclusive, and what its SDK's
errors mean (``_sdk_failure``, ``_container_missing``).

Errors leave as ours, with fixed messages (an SDK's names buckets and keys; it stays reachable as
``__cause__``): ``ResultNotFound``, ``StorageError``, or a path-free ``FileExistsError`` for a lost
exclusive create. Retries: the SDKs retry each request; idempotent whole operations are retried
once more by ``RetryPolicy`` if the error that escaped is still transient; writes never (the
caller's stream cannot be replayed). Pickles carry no secret storage options (``split_options``);
copies take credentials from ``credentials_from_env`` or the SDK's default chain. docs/stores.md
has the details per store.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, ClassVar, NoReturn, TypeVar

import fsspec
from fsspec.core import url_to_fs

from sealed_results._retry import RetryPolicy
from sealed_results.errors import ConfigError, ResultNotFound, SealedResultsError, StorageError
from sealed_results.handlers.base import ResultHandler
from sealed_results.keyproviders.base import KeyProvider

__all__ = ["Failure", "FsspecHandler", "failure_for_status", "split_options"]

T = TypeVar("T")

# -- which storage options are secret ----------------------------------------------------------
# Same rules as the config file's secret check: compared after lower-casing and "-" -> "_"; the
# last word of a name counts too (refresh_token, db_password); "key" is s3fs's access key id.
_SECRET_NAMES = frozenset({
    "account_key", "api_key", "aws_access_key_id", "aws_secret_access_key",
    "aws_session_token", "client_secret", "connection_string", "private_key", "sas_token",
    "secret_access_key", "secret_key", "session_token", "authorization", "sas",
})  # fmt: skip
_SECRET_WORDS = frozenset({
    "key", "token", "secret", "password", "passwd", "passphrase", "credential", "credentials",
})  # fmt: skip
# gcsfs takes ``token`` as a method name too; these say how to authenticate, not a secret.
_TOKEN_METHODS = frozenset({"anon", "google_default", "cache", "cloud", "browser"})


def is_secret_option(name: str, value: Any) -> bool:
    normalized = name.lower().replace("-", "_")
    if isinstance(value, str) and value in _TOKEN_METHODS:
        return False
    return normalized in _SECRET_NAMES or normalized.rsplit("_", 1)[-1] in _SECRET_WORDS


def _is_plain(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    return isinstance(value, str | int | float | bool | type(None))


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(travels, stays)``: options that may be pickled, and the ones that must not be, i.e.
    credentials (by name, at any depth) and live objects (sessions, credential objects)."""
    travels: dict[str, Any] = {}
    stays: dict[str, Any] = {}
    for name, value in options.items():
        if is_secret_option(name, value):
            stays[name] = value
        elif isinstance(value, Mapping):
            inner_travels, inner_stays = split_options(value)
            travels[name] = inner_travels
            if inner_stays:
                stays[name] = inner_stays
        elif _is_plain(value):
            travels[name] = value
        else:
            stays[name] = value
    return travels, stays


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = _merge(merged[name], value)
        else:
            merged[name] = value
    return merged


# -- what went wrong -----------------------------------------------------------------------------
class Failure(enum.Enum):
    MISSING = "missing"  # no such object
    EXISTS = "exists"  # an exclusive create found the name taken
    NO_CONTAINER = "no_container"  # no such bucket or container
    DENIED = "denied"
    TRANSIENT = "transient"  # throttled, 5xx, dropped connection, timeout
    PERMANENT = "permanent"


_MESSAGES = {
    Failure.NO_CONTAINER: "the bucket or container does not exist",
    Failure.DENIED: "the store denied access (check the credentials and permissions)",
    Failure.TRANSIENT: "the store kept failing with transient errors; gave up after retrying",
    Failure.PERMANENT: "the store failed",
}


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


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class FsspecHandler(ResultHandler):
    """A ResultHandler over any fsspec filesystem, rooted at ``root`` (a URL or path).

    ``storage_options`` go to the fsspec filesystem (endpoint, credentials, block sizes).
    ``credentials_from_env`` maps storage option names to environment variable names read each
    time the handler connects, e.g. ``{"secret": "AWS_SECRET_ACCESS_KEY"}``: that is how a
    handler unpickled in another process gets credentials that were not pickled. ``retry`` is
    the policy for retrying whole idempotent operations (``RetryPolicy(attempts=1)`` disables).
    """

    name = "fsspec"
    protocols: ClassVar[tuple[str, ...]] = ()  # accepted root protocols; empty accepts any
    default_storage_options: ClassVar[Mapping[str, Any]] = {}
    default_retry: ClassVar[RetryPolicy] = RetryPolicy(attempts=1)
    # Reads are sequential: read ahead one block, never a whole object (gcsfs's default
    # "adaptive" cache may prefetch up to 256 MiB).
    read_options: ClassVar[Mapping[str, Any]] = {"cache_type": "readahead"}
    extra: ClassVar[str | None] = None  # the package extra that installs this store's SDK

    def __init__(
        self,
        root: str,
        keyprovider: KeyProvider | list[KeyProvider] | tuple[KeyProvider, ...],
        *,
        storage_options: Mapping[str, Any] | None = None,
        credentials_from_env: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        **options: Any,
    ) -> None:
        super().__init__(root, keyprovider, **options)
        protocol = fsspec.core.split_protocol(self._root)[0] or "file"
        if self.protocols and protocol not in self.protocols:
            raise ConfigError(
                f"{type(self).__name__} needs a root of the form {self.protocols[0]}://..."
            )
        if credentials_from_env is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in credentials_from_env.items()
        ):
            raise ConfigError("credentials_from_env must map option names to variable names")
        self._options, self._private_options = split_options(storage_options or {})
        self._credentials_from_env = dict(credentials_from_env or {})
        self._retry = retry or self.default_retry
        self._fs_lock = threading.Lock()
        self._fs_cache: fsspec.AbstractFileSystem | None = None
        self._base = ""

    # -- connection ------------------------------------------------------------------------------
    def _connect_options(self) -> dict[str, Any]:
        options = _merge(_merge(self.default_storage_options, self._options), self._private_options)
        for option, variable in self._credentials_from_env.items():
            if option in self._private_options:
                continue  # given explicitly in this process
            value = os.environ.get(variable)
            if value is None:
                # Fail loudly rather than fall back to some other identity; names only.
                raise ConfigError(
                    f"credentials_from_env: environment variable {variable} for storage option "
                    f"{option} is not set"
                )
            options[option] = value
        # One filesystem per handler: fsspec's instance cache would share listing caches and
        # sessions between handlers with different roots or credentials.
        options["skip_instance_cache"] = True
        return options

    @property
    def _fs(self) -> fsspec.AbstractFileSystem:
        if self._fs_cache is None:
            with self._fs_lock:
                if self._fs_cache is None:
                    try:
                        fs, base = url_to_fs(self._root, **self._connect_options())
                    except ImportError as exc:
                        hint = (
                            f" (pip install 'sealed-results[{self.extra}]')" if self.extra else ""
                        )
                        raise ConfigError(f"{type(self).__name__} needs its SDK{hint}") from exc
                    except SealedResultsError:
                        raise
                    except Exception as exc:  # e.g. adlfs quoting a malformed connection string
                        failure = self._classify(exc)
                        message = _MESSAGES.get(failure, _MESSAGES[Failure.PERMANENT])
                        raise StorageError(message) from exc
                    self._base = base.rstrip("/")
                    self._fs_cache = fs
        return self._fs_cache

    def _path(self, name: str) -> str:
        self._fs  # noqa: B018 - resolving the filesystem sets the base path
        return f"{self._base}/{name}"

    def _settings(self) -> dict[str, Any]:
        # Secret options and live objects stay behind (see split_options).
        return {
            **super()._settings(),
            "storage_options": self._options,
            "credentials_from_env": self._credentials_from_env,
            "retry": self._retry,
        }

    # -- errors and retries ----------------------------------------------------------------------
    def _sdk_failure(self, exc: BaseException) -> Failure | None:
        """What one exception of the store's SDK means, if this backend knows it."""
        return None

    def _container_missing(self) -> bool:
        """Whether the root's bucket or container is missing (asked only after a not-found
        that did not say which was missing)."""
        return False

    def _classify(self, exc: BaseException) -> Failure:
        chain = list(_chain(exc))
        for item in chain:
            failure = self._sdk_failure(item)
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

    def _container_surely_missing(self) -> bool:
        try:
            return self._container_missing()
        except Exception:  # the probe failing says nothing either way
            return False

    def _is_transient(self, exc: Exception) -> bool:
        return not isinstance(exc, SealedResultsError) and self._classify(exc) is Failure.TRANSIENT

    def _raise_ours(self, exc: Exception) -> NoReturn:
        if isinstance(exc, SealedResultsError):
            raise exc
        failure = self._classify(exc)
        if failure is Failure.MISSING and self._container_surely_missing():
            failure = Failure.NO_CONTAINER
        if failure is Failure.MISSING:
            raise ResultNotFound() from exc
        if failure is Failure.EXISTS:
            raise FileExistsError("an object of that name exists") from exc
        raise StorageError(_MESSAGES[failure]) from exc

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Make whatever the block raises ours (for subclasses' own primitives)."""
        try:
            yield
        except Exception as exc:
            self._raise_ours(exc)

    def _run(self, fn: Callable[[], T], *, what: str, retry: bool = True) -> T:
        """Run a store operation: retried while transient if ``retry``, errors made ours."""
        try:
            if not retry:
                return fn()
            return self._retry.call(fn, is_transient=self._is_transient, what=what)
        except Exception as exc:
            self._raise_ours(exc)

    # -- primitives ------------------------------------------------------------------------------
    def _open_exclusive(self, path: str) -> Any:
        """A writable file that creates ``path`` on close and fails there if it exists."""
        return self._fs.open(path, "xb")

    @contextlib.contextmanager
    def _create(self, name: str) -> Iterator[BinaryIO]:
        path = self._path(name)
        sink = self._run(lambda: self._open_exclusive(path), what="open for writing")
        try:
            yield _Guarded(sink, self._raise_ours)  # type: ignore[misc]
            # Not retried here: a lost response could make a retry see its own object. The
            # SDK retries each request of the commit.
            self._run(sink.close, what="commit", retry=False)
        except BaseException:
            self._abandon(sink, path)
            raise

    def _abandon(self, sink: Any, path: str) -> None:
        """Drop an unfinished write so nothing partial stays readable: abort the multipart
        upload (S3), cancel the resumable session (GCS) or leave uncommitted blocks to expire
        (Azure), then mark the file closed so that its finalizer cannot commit it after all."""
        with contextlib.suppress(Exception):
            sink.discard()
        with contextlib.suppress(Exception):
            sink.closed = True

    def _read_bytes(self, name: str) -> bytes:
        path = self._path(name)
        return self._run(lambda: bytes(self._fs.cat_file(path)), what="read")

    def _open_read(self, name: str) -> BinaryIO:
        path = self._path(name)
        source = self._run(lambda: self._fs.open(path, "rb", **self.read_options), what="open")
        return _Guarded(source, self._raise_ours)  # type: ignore[return-value]

    def _only_object_missing(self, exc: Exception) -> None:
        """Return if ``exc`` says the object is missing; raise if it says anything else,
        including a not-found that turns out to be the bucket's."""
        if self._classify(exc) is not Failure.MISSING:
            raise exc
        if self._container_surely_missing():
            raise StorageError(_MESSAGES[Failure.NO_CONTAINER]) from exc

    def _info_exists(self, path: str) -> bool:
        # fs.exists() would turn every error (no bucket, access denied) into False.
        try:
            self._fs.info(path)
        except Exception as exc:
            self._only_object_missing(exc)
            return False
        return True

    def _exists(self, name: str) -> bool:
        path = self._path(name)
        return self._run(lambda: self._info_exists(path), what="exists")

    def _delete(self, name: str) -> None:
        path = self._path(name)
        tries = 0

        def delete() -> None:
            nonlocal tries
            tries += 1
            if not self._info_exists(path):
                if tries > 1:
                    return  # an earlier attempt may have deleted it and lost the answer
                raise FileNotFoundError
            self._fs.rm_file(path)

        self._run(delete, what="delete")

    def _replace(self, name: str, data: bytes) -> None:
        path = self._path(name)
        self._run(lambda: self._fs.pipe_file(path, data), what="replace")

    def _list_names(self) -> Iterator[str]:
        def listing() -> list[str]:
            try:
                return list(self._fs.ls(self._base, detail=False))
            except Exception as exc:
                self._only_object_missing(exc)
                return []  # an empty root: object stores have no directories

        for entry in self._run(listing, what="list"):
            yield entry.rstrip("/").rsplit("/", 1)[-1]


class _Guarded:
    """A store file whose errors leave as ours: a part upload or a range read that fails
    after the SDK's retries must not surface the SDK's message (it names buckets and keys)."""

    def __init__(self, file: Any, raise_ours: Callable[[Exception], NoReturn]) -> None:
        self._file = file
        self._raise_ours = raise_ours

    def write(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return int(self._file.write(data))
        except Exception as exc:
            self._raise_ours(exc)

    def read(self, n: int = -1, /) -> bytes:
        try:
            return bytes(self._file.read(n))
        except Exception as exc:
            self._raise_ours(exc)

    def readable(self) -> bool:
        return bool(self._file.readable())

    def close(self) -> None:  # for readers only: a writer is committed or abandoned by _create
        with contextlib.suppress(Exception):
            self._file.close()
