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
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
from collections.abc import Iterator
from typing import Any, BinaryIO, ClassVar

from sealed_results.errors import ResultNotFound, StoreConflict
from sealed_results.pickling import Rebuildable

__all__ = ["Store"]


class Store(Rebuildable, abc.ABC):
    """Flat named objects under a root. Thread-safe; picklable through ``settings()``."""

    #: The plugin name of the handler over this store (``"local"``, ``"s3"``...).
    name: ClassVar[str]

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
    def get(self, name: str) -> bytes:
        """The whole object."""

    @abc.abstractmethod
    def open(self, name: str) -> BinaryIO:
        """A readable stream of the object, for reading in bounded memory."""

    def fetch(self, name: str) -> tuple[BinaryIO, int]:
        """The object for one sequential pass, with its length in bytes. By default it is read
        whole first (one request to a remote store); a store that can stream with a known
        length (local files) saves holding a large object twice."""
        data = self.get(name)
        return io.BytesIO(data), len(data)

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

    # Compare-and-swap (defaults, NOT atomic: a store overrides both and sets atomic_swap).
    atomic_swap: ClassVar[bool] = False

    def get_versioned(self, name: str, *, max_size: int | None = None) -> tuple[bytes, str]:
        """The object's bytes and an opaque version tag (``swap`` compares it)."""
        data = self.get(name)
        return data, hashlib.sha256(data).hexdigest()

    def swap(self, name: str, data: bytes, version: str | None) -> None:
        """Replace the object only if its version is still ``version`` (None: only if it does
        not exist); otherwise ``StoreConflict``."""
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

    @abc.abstractmethod
    def list(self) -> Iterator[str]:
        """Names of every object under the root, in no particular order; an empty or not yet
        created root lists nothing."""

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this store in another process, without secrets."""

    def __repr__(self) -> str:
        # The root names a bucket or a path: it must not reach the orchestrator through a log.
        return f"<{type(self).__name__}>"
