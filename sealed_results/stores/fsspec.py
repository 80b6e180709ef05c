"""FsspecStore: the one storage core the cloud stores share.

fsspec already speaks S3, GCS and Azure with the credential and endpoint forms users know, so
``storage_options`` pass straight through. A backend subclass adds only what is its own:
protocols, default options, how its store makes a write exclusive (``_open_exclusive``), and
what its SDK's errors mean (``_sdk_failure``, ``_container_missing``).

Errors leave as ours with fixed messages (see ``stores.failures``; the SDK's error stays
reachable as ``__context__``). Retries: the SDKs retry each request; idempotent whole operations
are retried once more by ``RetryPolicy`` if the error that escaped is still transient; writes
never (the caller's stream cannot be replayed). Pickles carry no secret storage options
(``split_options``); copies take credentials from ``credentials_from_env`` or the SDK's default
chain. docs/stores.md has the details per store.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, ClassVar, TypeVar, cast

import fsspec
from fsspec.core import split_protocol, url_to_fs

from sealed_results.errors import ConfigError, SealedResultsError, StorageError
from sealed_results.options import split_options
from sealed_results.retry import RetryPolicy
from sealed_results.stores.base import Store
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


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = _merge(merged[name], value)
        else:
            merged[name] = value
    return merged


class FsspecStore(Store):
    """Objects under ``root`` (a URL) on any fsspec filesystem whose ``open(path, "xb")`` is
    atomic and exclusive (a subclass makes it so where the SDK's is not).

    ``storage_options`` go to the fsspec filesystem (endpoint, credentials, block sizes).
    ``credentials_from_env`` maps storage option names to environment variable names read each
    time the store connects, e.g. ``{"secret": "AWS_SECRET_ACCESS_KEY"}``: that is how a store
    unpickled in another process gets credentials that were not pickled. ``retry`` is the
    policy for retrying whole idempotent operations (``RetryPolicy(attempts=1)`` disables).
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
        *,
        storage_options: Mapping[str, Any] | None = None,
        credentials_from_env: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
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
        return as_ours(exc, self._sdk_failure, self._container_missing)

    def _is_transient(self, exc: Exception) -> bool:
        return is_transient(exc, self._sdk_failure)

    def _run(self, fn: Callable[[], T], *, what: str, retry: bool = True) -> T:
        """Run a store operation: retried while transient if ``retry``, errors made ours.
        ``what`` is a fixed word for debug logs (never a name or path)."""
        try:
            if not retry:
                return fn()
            return self._retry.call(fn, is_transient=self._is_transient, what=what)
        except Exception as exc:
            raise self._ours(exc) from None

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
        sink = self._run(lambda: self._open_exclusive(path), what="open for writing")
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

    def get(self, name: str) -> bytes:
        path = self._path(name)
        return self._run(lambda: bytes(self._fs.cat_file(path)), what="read")

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
