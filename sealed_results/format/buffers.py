"""Buffers shared by the segment code: exact reads from a stream, spare full-segment buffers
reused across blobs, and fresh result buffers that avoid first-touch page faults."""

from __future__ import annotations

import threading
from typing import Protocol

__all__ = ["EMPTY", "SPARES", "ByteSource", "fresh_bytes", "read_exact"]

EMPTY = memoryview(b"")


class ByteSource(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Spares(threading.local):
    """One spare buffer per thread and size, for the full-segment buffers of consecutive blobs.

    A fresh 1 MiB buffer per blob costs a zeroing pass and, where the allocator hands large
    blocks back to the system (glibc does, for sizes that vary a little), 256 first-touch
    page faults: on a VM that is more than encrypting the megabyte. A buffer is taken for the
    life of one writer, reader or ``read`` and given back after; one that is never given back
    is simply collected. Only full-segment buffers are pooled (a pool keyed by arbitrary sizes
    would keep one buffer per size forever). Buffers hold only transient segment bytes.
    """

    def __init__(self) -> None:
        self.buffers: dict[int, bytearray] = {}

    def take(self, size: int) -> bytearray:
        return self.buffers.pop(size, None) or bytearray(size)

    def give(self, buffer: bytearray | None) -> None:
        if buffer is not None:
            self.buffers[len(buffer)] = buffer


SPARES = _Spares()
_FRESH_MMAP = 32 << 20


def fresh_bytes(size: int) -> bytes:
    """A new ``bytes`` of ``size`` (> 1) bytes to be filled in place through a BytesIO.

    Below 32 MiB not ``bytes(size)``: that is calloc, which may hand out untouched pages, each
    then faulted in on first write (up to ~0.6 ms per MiB on a VM, more than AES-GCM over it);
    malloc plus a memset reuses the allocator's pages (~25 µs per MiB). From 32 MiB (glibc's
    largest mmap threshold) every block is fresh from the kernel anyway, and calloc spares
    the memset.
    """
    return b"\0" * size if size < _FRESH_MMAP else bytes(size)


def read_exact(source: ByteSource, n: int) -> bytes:
    """Read up to n bytes, looping over short reads (network streams return what they have)."""
    first = source.read(n)
    if first is None or len(first) == n or not first:
        return first or b""
    parts, got = [first], len(first)
    while got < n:
        more = source.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)
