"""GuardedStream: a store's open file whose errors leave as ours.

A part upload or a range read can fail long after ``open`` returned, with the SDK's message
(which names buckets and keys) or an OS error (which may name a path). Every store hands out
its files through this one wrapper, so those errors become ours like any other store error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["GuardedStream"]


class GuardedStream:
    """``file`` with its errors turned into ours by ``to_ours`` (see ``stores.failures``).

    A reader is closed by whoever opened it. A writer (``writer=True``) is committed or
    abandoned by the ``create`` block that made it, so its ``close`` does nothing: closing a
    store's writer early would commit it behind ``create``'s back, or lose a commit error.
    """

    # Present only when the file has it: segment readers look it up with getattr(), and read
    # into one reused buffer where it exists instead of allocating a bytes object per read.
    readinto: Callable[[Any], int]

    def __init__(
        self, file: Any, to_ours: Callable[[Exception], Exception], *, writer: bool = False
    ) -> None:
        self._file = file
        self._to_ours = to_ours
        self._writer = writer
        if hasattr(file, "readinto"):
            self.readinto = self._readinto

    def read(self, size: int = -1, /) -> bytes:
        try:
            return bytes(self._file.read(size))
        except Exception as exc:
            raise self._to_ours(exc) from None

    def _readinto(self, buffer: Any) -> int:
        try:
            return int(self._file.readinto(buffer) or 0)
        except Exception as exc:
            raise self._to_ours(exc) from None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return int(self._file.write(data))
        except Exception as exc:
            raise self._to_ours(exc) from None

    def flush(self) -> None:
        try:
            self._file.flush()
        except Exception as exc:
            raise self._to_ours(exc) from None

    def readable(self) -> bool:
        return not self._writer

    def writable(self) -> bool:
        return self._writer

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        try:
            return int(self._file.tell())
        except Exception as exc:
            raise self._to_ours(exc) from None

    @property
    def closed(self) -> bool:
        return bool(self._file.closed)

    def close(self) -> None:
        if self._writer:
            return
        # A reader's close can only fail in ways that no longer matter (a dropped connection
        # to a stream we are done with), and must not raise the SDK's message.
        with contextlib.suppress(Exception):
            self._file.close()

    def __enter__(self) -> GuardedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # The wrapped file's repr may name the path.
        return f"<{type(self).__name__}>"
