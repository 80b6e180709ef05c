"""Store: where sealed blobs live. Storage only: a store never sees a key or a plaintext byte.

A store holds flat objects by name under one root. Names are what the handler chooses (32 hex
characters for results, ``keyset`` for the token keyset); a store must accept any name of
ASCII letters, digits, ``-``, ``_`` and ``.`` up to 64 characters, and must not list anything
that is not an object it holds (temporary files, directory markers).

Errors: a missing object raises ``ResultNotFound``; a name taken by an exclusive write raises
``FileExistsError`` (with no name in its message); anything else that goes wrong raises
``StorageError``. Messages never name the root, a bucket or an object, since they may end up in
the orchestrator's cloud; nor may a formatted traceback, so an SDK's error is never chained as a
cause: raise ours ``from None`` inside the ``except`` block, which keeps the SDK's error as
``__context__`` for local debugging without printing it (``stores.failures.as_ours`` does the
classifying). A store plugin implements the abstract methods below and inherits the
rest; ``sealed_results.testing.StoreSuite`` checks it against this contract.

Bounded reads. ``get``, ``get_versioned`` and ``fetch`` take ``max_size``: an object larger than
that cannot be what was written (the caller knows the bound, e.g. a keyset's), so the store
raises ``IntegrityError`` without reading it whole (a size from ``fstat`` or the response
headers, or a read of at most ``max_size + 1`` bytes).

Compare-and-swap. ``get_versioned`` returns an object's bytes with an opaque version tag taken
atomically with them, and ``swap`` replaces the object only if its version is still that tag
(``None``: only if the object does not exist), else raises ``StoreConflict``. That makes every
read-modify-write of key material safe under concurrency: read, change, swap, and on
``StoreConflict`` read again and redo the change. ``atomic_swap`` says whether the store
enforces the condition atomically (server-side, or under a lock); the defaults here, for stores
that do not override them, compare and then replace, which is not atomic. A ``StoreConflict``
can also follow a swap that did land, when a response was lost and the SDK retried the request:
make the change idempotent (redo it only if the re-read object lacks it).

Metadata and upkeep. ``info`` gives an object's size and, where the store keeps one, its
last-modified time (``ObjectInfo``), without reading the object whole; ``sweep`` removes what
interrupted writes of the store itself may have left behind (never an object).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import hashlib
import inspect
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, ClassVar

from sealed_results.errors import IntegrityError, ResultNotFound, StoreConflict
from sealed_results.pickling import Rebuildable

__all__ = ["HeadEdit", "ObjectInfo", "Store"]

#: ``rewrite_head``'s edit: reads an object from its start, returns ``(new_head, consumed)``.
HeadEdit = Callable[[BinaryIO], tuple[bytes, int] | None]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What ``Store.info`` tells of one object: its size in bytes and its last-modified time
    (an aware UTC datetime), or None where the store keeps no time."""

    size: int
    modified: datetime | None = None


class Store(Rebuildable, abc.ABC):
    """Flat named objects under a root. Thread-safe; picklable through ``settings()``."""

    #: The plugin name of the handler over this store (``"local"``, ``"s3"``...).
    name: ClassVar[str]
    #: Whether ``swap`` is atomic: the store itself refuses a write whose version condition
    #: does not hold (S3 If-Match, GCS generation match, Azure ETag, a lock on local disk).
    #: False for the default ``swap`` below, which compares and then replaces.
    atomic_swap: ClassVar[bool] = False

    @abc.abstractmethod
    def create(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A writable file that becomes object ``name`` when the block exits cleanly, atomically
        and never over an existing object (``FileExistsError`` then). If the block raises,
        nothing readable is left under ``name``."""

    def put(self, name: str, data: bytes) -> None:
        """``create`` for a whole object already in memory (small results); a store overrides
        it where one call is cheaper than a file object."""
        with self.create(name) as sink:
            sink.write(data)

    @abc.abstractmethod
    def get(self, name: str, *, max_size: int | None = None) -> bytes:
        """The whole object. Larger than ``max_size`` bytes: ``IntegrityError``, raised without
        reading the object whole."""

    @abc.abstractmethod
    def open(self, name: str) -> BinaryIO:
        """A readable stream of the object, for reading in bounded memory."""

    def fetch(self, name: str, *, max_size: int | None = None) -> tuple[BinaryIO, int]:
        """The object for one sequential pass, with its length in bytes. By default it is read
        whole first (one request to a remote store); a store that can stream with a known
        length (local files) saves holding a large object twice. ``max_size`` as for ``get``."""
        data = self._get_bounded(name, max_size)
        return io.BytesIO(data), len(data)

    def get_versioned(self, name: str, *, max_size: int | None = None) -> tuple[bytes, str]:
        """The whole object and an opaque version tag taken atomically with it, for ``swap``
        (``ResultNotFound`` if missing; ``max_size`` as for ``get``).

        The default tag is a digest of the bytes, so the pair is consistent by construction;
        a store with its own versions (ETags, generations) overrides this."""
        data = self._get_bounded(name, max_size)
        return data, _digest(data)

    def swap(self, name: str, data: bytes, version: str | None) -> None:
        """Replace the object with ``data`` only if its version is still ``version`` (from
        ``get_versioned``); ``None``: create it only if it does not exist. Otherwise raise
        ``StoreConflict`` and change nothing.

        This default creates exclusively with ``put`` (atomic where ``put`` is), but for a
        replacement it compares and then calls ``replace``: another writer can slip in between,
        which is why ``atomic_swap`` is False unless a store overrides both methods."""
        if version is None:
            try:
                self.put(name, data)
            except FileExistsError:
                raise StoreConflict() from None
            return
        try:
            current = self.get_versioned(name)[1]
        except ResultNotFound:
            raise StoreConflict() from None
        if current != version:
            raise StoreConflict()
        self.replace(name, data)

    def _get_bounded(self, name: str, max_size: int | None) -> bytes:
        """``get(name, max_size=max_size)``; for a store whose ``get`` predates ``max_size``,
        the first ``max_size + 1`` bytes of ``open(name)`` (bounded all the same)."""
        if max_size is None:
            return self.get(name)
        if _get_takes_max_size(type(self)):
            return self.get(name, max_size=max_size)
        with self.open(name) as stream:
            data = _read_up_to(stream, max_size + 1)
        if len(data) > max_size:
            raise IntegrityError()
        return data

    @abc.abstractmethod
    def exists(self, name: str) -> bool:
        """Whether the object exists. Errors other than "missing" raise, never read as False."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove the object (``ResultNotFound`` if it is missing)."""

    @abc.abstractmethod
    def replace(self, name: str, data: bytes) -> None:
        """Create or overwrite the object atomically: a reader sees the old bytes or the new
        ones, never a mix or nothing."""

    @abc.abstractmethod
    def list(self) -> Iterator[str]:
        """Names of every object under the root, in no particular order; an empty or not yet
        created root lists nothing."""

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this store in another process, without secrets."""

    # -- metadata and upkeep ---------------------------------------------------------------------
    def info(self, name: str) -> ObjectInfo:
        """The object's size and last-modified time (``ResultNotFound`` if it is missing).

        This default knows no time (``modified`` is None) and takes the size from ``open``:
        the end of a seekable stream, else a count of the bytes read through a small buffer
        (bounded memory, but a whole read). A store with metadata overrides it with one call."""
        with self.open(name) as stream:
            if _seekable(stream):
                return ObjectInfo(size=stream.seek(0, os.SEEK_END))
            size = 0
            while chunk := stream.read(1 << 20):
                size += len(chunk)
            return ObjectInfo(size=size)

    def sweep(self, older_than: float) -> int:
        """Remove litter of this store's own writes (temporary files an interrupted process
        left) unchanged for more than ``older_than`` seconds; never an object. Returns how
        many were removed. Nothing to do by default: a store whose writes are atomic on the
        service leaves no litter (uncommitted uploads expire by the service's rules)."""
        return 0

    # -- rewriting an object's head (key rotation) ----------------------------------------------
    def rewrite_head(self, name: str, edit: HeadEdit) -> bool:
        """Replace the first bytes of object ``name`` and keep the rest, by compare-and-swap.

        ``edit(stream)`` reads the object from its start and returns ``(new_head, consumed)``:
        the object's first ``consumed`` bytes become ``new_head`` and every byte after them is
        kept as it is; or None to leave the object alone (then False is returned). The new
        object replaces the old one atomically, and only if it is still the object ``edit``
        read (``StoreConflict`` otherwise; ``ResultNotFound`` when it is missing).

        This default reads the object whole and calls ``swap``. A store that can do better
        overrides it: ``LocalStore`` copies the rest in the kernel (bounded memory), ``S3Store``
        copies it server-side (UploadPartCopy) for large objects."""
        data, version = self.get_versioned(name)
        result = edit(io.BytesIO(data))
        if result is None:
            return False
        head, consumed = result
        if not 0 <= consumed <= len(data):
            raise ValueError("edit consumed more than the object holds")
        view = memoryview(data)[consumed:]
        try:
            self.swap(name, bytes(head) + view, version)
        finally:
            view.release()
        return True

    def __repr__(self) -> str:
        # The root names a bucket or a path: it must not reach the orchestrator through a log.
        return f"<{type(self).__name__}>"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@functools.cache
def _get_takes_max_size(cls: type[Store]) -> bool:
    try:
        return "max_size" in inspect.signature(cls.get).parameters
    except (TypeError, ValueError):  # pragma: no cover - a get without a signature
        return False


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _read_up_to(stream: BinaryIO, limit: int) -> bytes:
    parts, got = [], 0
    while got < limit and (chunk := stream.read(limit - got)):
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)
