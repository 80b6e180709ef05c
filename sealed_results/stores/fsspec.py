"""FsspecStore: the one storage core the cloud stores share.

fsspec already speaks S3, GCS and Azure with the credential and endpoint forms users know, so
``storage_options`` pass straight through. A backend subclass adds only what is its own:
protocols, default options, how its store makes a write exclusive (``_open_exclusive``), and
what its SDK's errors mean (``_sdk_failure``, ``_container_missing``).

Errors leave as ours with fixed messages (see ``stores.failures``; the SDK's error stays
reachable as ``__context__``). Retries: the SDKs retry each request; idempotent whole operations
are retried once more by ``RetryPolicy`` if the error that escaped is still transient; writes
never (the caller's stream cannot be replayed), and neither is a conditional write (``swap``).
Pickles carry no secret storage options (``split_options``); copies take credentials from
``credentials_from_env`` or the SDK's default chain. A copy remembers the *names* of the secret
options that stayed behind, so that when it is refused access before anything worked, its
error says so (``ConfigError``) instead of a bare "denied". docs/stores.md has the details per
store.

Compare-and-swap: a backend reads an object with its version in one request
(``_read_versioned``: S3 ETag, GCS generation, Azure ETag) and writes under the matching
precondition (``_write_conditional``) with ``atomic_swap = True``. The generic store keeps the
base class's digest versions and non-atomic swap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO, ClassVar, TypeVar, cast

import fsspec
from fsspec.core import split_protocol, url_to_fs

from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    ResultNotFound,
    SealedResultsError,
    StorageError,
    StoreConflict,
)
from sealed_results.options import split_options
from sealed_results.retry import RetryPolicy
from sealed_results.stores.base import ObjectInfo, Store
from sealed_results.stores.failures import (
    MESSAGES,
    Failure,
    as_ours,
    classify,
    is_transient,
    surely,
)
from sealed_results.stores.streams import GuardedStream

__all__ = ["FsspecStore"]

T = TypeVar("T")


def _option_names(options: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of every leaf option (``s3_additional_kwargs.SSECustomerKey``)."""
    names: list[str] = []
    for name, value in options.items():
        if isinstance(value, Mapping) and value:
            names.extend(_option_names(value, f"{prefix}{name}."))
        else:
            names.append(f"{prefix}{name}")
    return names


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = _merge(merged[name], value)
        else:
            merged[name] = value
    return merged


def _utc(value: Any) -> datetime | None:
    """A time from an fsspec ``info``, as an aware UTC datetime (naive ones are taken as UTC,
    which botocore, gcsfs and adlfs all give); None if it is not a time."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str) and value:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class FsspecStore(Store):
    """Objects under ``root`` (a URL) on any fsspec filesystem whose ``open(path, "xb")`` is
    atomic and exclusive (a subclass makes it so where the SDK's is not).

    ``storage_options`` go to the fsspec filesystem (endpoint, credentials, block sizes).
    ``credentials_from_env`` maps storage option names to environment variable names read each
    time the store connects, e.g. ``{"secret": "AWS_SECRET_ACCESS_KEY"}``: that is how a store
    unpickled in another process gets credentials that were not pickled. ``retry`` is the
    policy for retrying whole idempotent operations (``RetryPolicy(attempts=1)`` disables).
    ``withheld_options`` is set by unpickling: the names (never values) of the secret options
    the original store had and did not pickle.
    """

    name = "fsspec"
    protocols: ClassVar[tuple[str, ...]] = ()  # accepted root protocols; empty accepts any
    default_storage_options: ClassVar[Mapping[str, Any]] = {}
    default_retry: ClassVar[RetryPolicy] = RetryPolicy(attempts=1)
    # Reads are sequential: read ahead one block, never a whole object (gcsfs's default
    # "adaptive" cache may prefetch up to 256 MiB).
    read_options: ClassVar[Mapping[str, Any]] = {"cache_type": "readahead"}
    extra: ClassVar[str | None] = None  # the package extra that installs this store's SDK
    #: Keys of the filesystem's ``info`` that hold an object's last-modified time, first found
    #: wins (a backend names its own: S3 ``LastModified``, GCS ``updated``, Azure
    #: ``last_modified``).
    time_keys: ClassVar[tuple[str, ...]] = ("mtime", "LastModified", "last_modified", "updated")

    def __init__(
        self,
        root: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        credentials_from_env: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        withheld_options: Sequence[str] = (),
    ) -> None:
        self._root = str(root)
        protocol = split_protocol(self._root)[0] or "file"
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
        given = set(_option_names(self._private_options))
        self._withheld = tuple(sorted(given.union(withheld_options)))
        # Withheld and not given again here, directly or through credentials_from_env.
        self._missing = tuple(
            name
            for name in self._withheld
            if name not in given and name.split(".")[0] not in self._credentials_from_env
        )
        self._proven = False  # an operation has succeeded: the credentials work
        self._retry = retry or self.default_retry
        self._fs_lock = threading.Lock()
        self._fs_cache: fsspec.AbstractFileSystem | None = None
        self._base = ""

    def settings(self) -> dict[str, Any]:
        # Secret options and live objects stay behind (see split_options).
        return {
            "root": self._root,
            "storage_options": self._options,
            "credentials_from_env": self._credentials_from_env,
            "retry": self._retry,
            "withheld_options": list(self._withheld),
        }

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
        # One filesystem per store: fsspec's instance cache would share listing caches and
        # sessions between stores with different roots or credentials.
        options["skip_instance_cache"] = True
        return options

    @property
    def _fs(self) -> fsspec.AbstractFileSystem:
        if self._fs_cache is None:
            with self._fs_lock:
                if self._fs_cache is None:
                    self._fs_cache = self._connect()
        return self._fs_cache

    def _connect(self) -> fsspec.AbstractFileSystem:
        try:
            fs, base = url_to_fs(self._root, **self._connect_options())
        except ImportError as exc:
            hint = f" (pip install 'sealed-results[{self.extra}]')" if self.extra else ""
            # Chained: an import error names packages only, and says what is broken.
            raise ConfigError(f"{type(self).__name__} needs its SDK{hint}") from exc
        except SealedResultsError:
            raise
        except Exception as exc:  # e.g. adlfs quoting a malformed connection string
            if self._missing:
                raise self._withheld_error(exc) from None
            raise as_ours(exc, self._sdk_failure) from None
        self._base = base.rstrip("/")
        return cast(fsspec.AbstractFileSystem, fs)

    def _path(self, name: str) -> str:
        self._fs  # noqa: B018 - resolving the filesystem sets the base path
        return f"{self._base}/{name}"

    # -- errors and retries ----------------------------------------------------------------------
    def _sdk_failure(self, exc: BaseException) -> Failure | None:
        """What one exception of the store's SDK means, if this backend knows it."""
        return None

    def _container_missing(self) -> bool:
        """Whether the root's bucket or container is missing (asked only after a not-found
        that did not say which was missing)."""
        return False

    def _classify(self, exc: BaseException) -> Failure:
        return classify(exc, self._sdk_failure)

    def _ours(self, exc: Exception) -> Exception:
        if (
            self._missing
            and not self._proven
            and not isinstance(exc, SealedResultsError)
            and self._classify(exc) is Failure.DENIED
        ):
            return self._withheld_error(exc)
        return as_ours(exc, self._sdk_failure, self._container_missing)

    def _withheld_error(self, exc: BaseException) -> ConfigError:
        """The store was refused (or could not connect) in a copy that lacks secret options the
        original had: say so, by option names only."""
        error = ConfigError(
            f"this store was pickled without its secret storage options "
            f"({', '.join(self._missing)}), which never travel, and it could not connect or was "
            f"refused access without them: give them to copies in other processes through "
            f"credentials_from_env (storage option name -> environment variable name), or "
            f"rely on the SDK's default credential chain there"
        )
        error.__context__ = exc
        error.__suppress_context__ = True
        return error

    def _is_transient(self, exc: Exception) -> bool:
        return is_transient(exc, self._sdk_failure)

    def _run(self, fn: Callable[[], T], *, what: str, retry: bool = True, proves: bool = True) -> T:
        """Run a store operation: retried while transient if ``retry``, errors made ours.
        ``what`` is a fixed word for debug logs (never a name or path). ``proves``: success
        means the service answered (opening a file for writing may not ask it anything)."""
        try:
            if retry:
                result = self._retry.call(fn, is_transient=self._is_transient, what=what)
            else:
                result = fn()
        except Exception as exc:
            raise self._ours(exc) from None
        if proves:
            self._proven = True
        return result

    def _only_object_missing(self, exc: Exception) -> None:
        """Return if ``exc`` says the object is missing; raise if it says anything else,
        including a not-found that turns out to be the bucket's. Call inside ``except``."""
        if self._classify(exc) is not Failure.MISSING:
            raise exc
        if surely(self._container_missing):
            raise StorageError(MESSAGES[Failure.NO_CONTAINER]) from None

    # -- the Store methods -----------------------------------------------------------------------
    def _open_exclusive(self, path: str) -> Any:
        """A writable file that creates ``path`` on close and fails there if it exists."""
        return self._fs.open(path, "xb")

    @contextlib.contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:
        path = self._path(name)
        sink = self._run(lambda: self._open_exclusive(path), what="open for writing", proves=False)
        try:
            yield cast(BinaryIO, GuardedStream(sink, self._ours, writer=True))
            # Not retried here: a lost response could make a retry see its own object. The
            # SDK retries each request of the commit.
            self._run(sink.close, what="commit", retry=False)
        except BaseException:
            self._abandon(sink)
            raise

    def _abandon(self, sink: Any) -> None:
        """Drop an unfinished write so nothing partial stays readable: abort the multipart
        upload (S3), cancel the resumable session (GCS) or leave uncommitted blocks to expire
        (Azure), then mark the file closed so that its finalizer cannot commit it after all."""
        with contextlib.suppress(Exception):
            sink.discard()
        with contextlib.suppress(Exception):
            sink.closed = True

    def get(self, name: str, *, max_size: int | None = None) -> bytes:
        path = self._path(name)
        if max_size is None:
            return self._run(lambda: bytes(self._fs.cat_file(path)), what="read")
        return self._run(lambda: self._read_versioned(path, max_size), what="read")[0]

    def get_versioned(self, name: str, *, max_size: int | None = None) -> tuple[bytes, str]:
        path = self._path(name)
        return self._run(lambda: self._read_versioned(path, max_size), what="read")

    def _read_versioned(self, path: str, max_size: int | None) -> tuple[bytes, str]:
        """The object's bytes and version, in one request where the backend allows; larger
        than ``max_size``: IntegrityError, after reading at most ``max_size + 1`` bytes. This
        generic one reads a range and versions by digest (see ``Store.get_versioned``)."""
        if max_size is None:
            data = bytes(self._fs.cat_file(path))
        else:
            data = bytes(self._fs.cat_file(path, start=0, end=max_size + 1))
            if len(data) > max_size:
                raise IntegrityError()
        return data, "sha256:" + hashlib.sha256(data).hexdigest()

    def swap(self, name: str, data: bytes, version: str | None) -> None:
        if not self.atomic_swap:
            super().swap(name, data, version)
            return
        path = self._path(name)
        try:
            # Never retried by us: a retry after a lost answer would meet its own write.
            self._write_conditional(path, bytes(data), version)
        except Exception as exc:
            raise self._swap_error(exc) from None
        self._proven = True

    def _write_conditional(self, path: str, data: bytes, version: str | None) -> None:
        """Write ``data`` at ``path`` on the condition that the object's version is
        ``version`` (None: that there is none), checked by the service."""
        raise NotImplementedError  # pragma: no cover - only where atomic_swap is True

    def _swap_error(self, exc: Exception) -> Exception:
        """Ours for a failed conditional write: a failed precondition (or an object that
        vanished since it was read) is a ``StoreConflict``."""
        if isinstance(exc, SealedResultsError):
            return exc
        failure = self._classify(exc)
        if failure is Failure.EXISTS or (
            failure is Failure.MISSING and not surely(self._container_missing)
        ):
            error = StoreConflict()
            error.__context__ = exc
            error.__suppress_context__ = True
            return error
        return self._ours(exc)

    def open(self, name: str) -> BinaryIO:
        path = self._path(name)
        source = self._run(lambda: self._fs.open(path, "rb", **self.read_options), what="open")
        return cast(BinaryIO, GuardedStream(source, self._ours))

    def _info_exists(self, path: str) -> bool:
        # fs.exists() would turn every error (no bucket, access denied) into False.
        try:
            self._fs.info(path)
        except Exception as exc:
            self._only_object_missing(exc)
            return False
        return True

    def exists(self, name: str) -> bool:
        path = self._path(name)
        return self._run(lambda: self._info_exists(path), what="exists")

    def info(self, name: str) -> ObjectInfo:
        """Size and last-modified time from one ``info`` (a HEAD or metadata request)."""
        path = self._path(name)
        details = self._run(lambda: self._fs.info(path), what="info")
        if details.get("type", "file") != "file":
            raise ResultNotFound()  # a prefix ("directory"): no object of that name
        modified = None
        for key in self.time_keys:
            modified = _utc(details.get(key))
            if modified is not None:
                break
        return ObjectInfo(int(details.get("size") or 0), modified)

    def delete(self, name: str) -> None:
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

    def replace(self, name: str, data: bytes) -> None:
        path = self._path(name)
        self._run(lambda: self._fs.pipe_file(path, data), what="replace")

    def list(self) -> Iterator[str]:
        self._fs  # noqa: B018 - resolving the filesystem sets the base path

        def listing() -> list[dict[str, Any]]:
            try:
                return list(self._fs.ls(self._base, detail=True))
            except Exception as exc:
                self._only_object_missing(exc)
                return []  # an empty root: object stores have no directories

        names = []
        for entry in self._run(listing, what="list"):
            path = str(entry["name"]).rstrip("/")
            # Prefixes ("directories") and a marker object for the root itself are not ours.
            if entry.get("type") == "file" and path != self._base:
                names.append(path.rsplit("/", 1)[-1])
        return iter(names)
