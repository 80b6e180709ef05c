"""MemoryHandler: results in fsspec's in-process memory filesystem (tests, notebooks)."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from typing import BinaryIO

from fsspec.implementations.memory import MemoryFile

from sealed_results.handlers.fsspec_core import FsspecHandler

__all__ = ["MemoryHandler"]

# fsspec's memory "xb" checks for the name and then creates it (two steps, racy across threads),
# and its files are visible in the store from the moment they are opened. One lock for the
# process, since every memory filesystem shares one store.
_COMMIT_LOCK = threading.Lock()


class MemoryHandler(FsspecHandler):
    """Results in ``memory://`` (gone with the process; shared by handlers in it).

    Nothing here is bounded in memory: the store is memory.
    """

    name = "memory"
    protocols = ("memory",)

    @contextlib.contextmanager
    def _create(self, name: str) -> Iterator[BinaryIO]:
        fs = self._fs
        path = fs._strip_protocol(self._path(name))
        sink = MemoryFile(fs, path)  # not in the store until committed below
        yield sink
        with _COMMIT_LOCK:
            if path in fs.store:
                raise FileExistsError("an object of that name exists")
            sink.commit()

    def _open_read(self, name: str) -> BinaryIO:
        # The store hands every reader the same file object (one shared position); a copy of
        # the bytes gives each reader its own.
        return io.BytesIO(self._read_bytes(name))
