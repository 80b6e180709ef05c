"""MemoryStore: objects in fsspec's in-process memory filesystem (tests, notebooks).

The objects live where ``fsspec.filesystem("memory")`` sees them, so tests can reach the raw
bytes (to tamper with them) the way they would on any other filesystem. Every memory store of a
process shares that filesystem: a store pickled and unpickled in the same process finds what the
original wrote; another process starts empty. Nothing here is bounded in memory: the store is
memory.

fsspec's own exclusive ``open(path, "xb")`` checks for the name and then creates it (two steps,
racy across threads), and its files are visible from the moment they are opened; so this store
writes whole objects under one lock, after checking the name under that same lock. ``swap``
compares and replaces under that lock too; an object's version is a number from a process-wide
counter, attached to the file object that holds its bytes (every write makes a new one).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO, cast

from sealed_results.errors import ConfigError, IntegrityError, ResultNotFound, StoreConflict
from sealed_results.stores.base import ObjectInfo, Store
from sealed_results.stores.failures import EXISTS_MESSAGE, as_ours
from sealed_results.stores.streams import GuardedStream

__all__ = ["MemoryStore"]

_PREFIX = "memory://"
# One lock for the process, since every memory filesystem shares one store.
_LOCK = threading.Lock()
_VERSIONS = itertools.count(1)
_VERSION_ATTRIBUTE = "_sealed_results_version"


class MemoryStore(Store):
    """Objects under ``memory://<root>`` in this process.

    ``storage_options`` is accepted for the constructor's sake (handlers pass the same keyword
    arguments to every fsspec-style store) and must be empty: memory has nothing to configure.
    """

    name = "memory"
    atomic_swap = True

    def __init__(self, root: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
        if not root.startswith(_PREFIX):
            raise ConfigError(f"MemoryStore needs a root of the form {_PREFIX}...")
        if storage_options:
            raise ConfigError("MemoryStore takes no storage_options")
        # Imported here rather than at the top: fsspec is not needed until a memory store is.
        from fsspec.core import url_to_fs

        self._root = root
        self._fs, base = url_to_fs(root)  # every instance shares the process-wide store
        self._base = str(base).rstrip("/")

    def settings(self) -> dict[str, Any]:
        return {"root": self._root}

    def _path(self, name: str) -> str:
        return f"{self._base}/{name}"

    @contextlib.contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:
        sink = io.BytesIO()  # not in the store until the block exits cleanly
        yield cast(BinaryIO, GuardedStream(sink, as_ours, writer=True))
        self.put(name, sink.getvalue())

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        with _LOCK:
            if self._fs.exists(path):
                raise FileExistsError(EXISTS_MESSAGE)
            self._fs.pipe_file(path, bytes(data))

    def get(self, name: str, *, max_size: int | None = None) -> bytes:
        if max_size is not None:
            return self.get_versioned(name, max_size=max_size)[0]
        try:
            return bytes(self._fs.cat_file(self._path(name)))
        except FileNotFoundError:
            raise ResultNotFound() from None

    def _file(self, name: str) -> Any:
        """The file object holding the object's bytes, or None. Call under _LOCK."""
        return self._fs.store.get(self._fs._strip_protocol(self._path(name)))

    def _version(self, file: Any) -> str:
        """The version of ``file`` (a new one for a file written behind the store's back,
        e.g. by a test through fsspec). Call under _LOCK."""
        version = getattr(file, _VERSION_ATTRIBUTE, None)
        if version is None:
            version = str(next(_VERSIONS))
            setattr(file, _VERSION_ATTRIBUTE, version)
        return str(version)

    def get_versioned(self, name: str, *, max_size: int | None = None) -> tuple[bytes, str]:
        with _LOCK:
            file = self._file(name)
            if file is None:
                raise ResultNotFound()
            if max_size is not None and len(file.getbuffer()) > max_size:
                raise IntegrityError()
            return bytes(file.getvalue()), self._version(file)

    def swap(self, name: str, data: bytes, version: str | None) -> None:
        with _LOCK:
            file = self._file(name)
            current = None if file is None else self._version(file)
            if current != version:
                raise StoreConflict()
            path = self._path(name)
            self._fs.pipe_file(path, bytes(data))
            self._version(self._file(name))

    def open(self, name: str) -> BinaryIO:
        # The filesystem hands every reader the same file object (one shared position); a
        # stream over the bytes gives each reader its own.
        return io.BytesIO(self.get(name))

    def exists(self, name: str) -> bool:
        return bool(self._fs.isfile(self._path(name)))

    def info(self, name: str) -> ObjectInfo:
        # fsspec's memory file keeps the time it was made, and every write makes a new one.
        with _LOCK:
            file = self._file(name)
            if file is None:
                raise ResultNotFound()
            size = len(file.getbuffer())
            modified = getattr(file, "modified", None)
        if isinstance(modified, datetime):
            modified = modified.astimezone(UTC) if modified.tzinfo else modified.replace(tzinfo=UTC)
        else:
            modified = None
        return ObjectInfo(size, modified)

    def delete(self, name: str) -> None:
        with _LOCK:
            try:
                self._fs.rm_file(self._path(name))
            except FileNotFoundError:
                raise ResultNotFound() from None

    def replace(self, name: str, data: bytes) -> None:
        with _LOCK:  # pipe_file swaps in a whole new file object: readers see old or new
            self._fs.pipe_file(self._path(name), bytes(data))

    def list(self) -> Iterator[str]:
        try:
            entries = self._fs.ls(self._base, detail=True)
        except FileNotFoundError:
            return iter(())
        return iter([str(e["name"]).rsplit("/", 1)[-1] for e in entries if e.get("type") == "file"])
