"""Blob format v1, the segments: STREAM-style AES-256-GCM over a blob body (docs/format.md).

    segment i = AES-256-GCM(payload key, nonce = i as 11 bytes || final flag, aad = header)

Every non-final segment holds exactly ``segment_size`` plaintext bytes and the final one
fewer (maybe none), so a reader knows a segment is final from its length alone and truncation
at any boundary is caught by the flag in the nonce. The header (``envelope``) supplies the
payload key, the segment size and the authenticated header bytes; this module only moves
segments, with buffers reused so that large results cost their own size once.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealed_results.errors import IntegrityError

if TYPE_CHECKING:
    from sealed_results.envelope import BlobHeader

__all__ = [
    "TAG_SIZE",
    "BlobReader",
    "BlobWriter",
    "decrypt_segments",
    "decrypt_split",
    "encrypt_segments",
]

TAG_SIZE = 16


class ByteSource(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def _segment_nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


Buffer = bytes | bytearray | memoryview

if hasattr(AESGCM, "encrypt_into"):
    # Into a caller's buffer: no allocation per segment (newer cryptography releases).
    def _encrypt_into(aead: AESGCM, nonce: bytes, data: Buffer, aad: bytes, out: Buffer) -> None:
        aead.encrypt_into(nonce, data, aad, out)

    def _decrypt_into(aead: AESGCM, nonce: bytes, data: Buffer, aad: bytes, out: Buffer) -> None:
        aead.decrypt_into(nonce, data, aad, out)

else:  # pragma: no cover - older cryptography: the same bytes, one more copy

    def _encrypt_into(aead: AESGCM, nonce: bytes, data: Buffer, aad: bytes, out: Buffer) -> None:
        memoryview(out)[:] = aead.encrypt(nonce, data, aad)

    def _decrypt_into(aead: AESGCM, nonce: bytes, data: Buffer, aad: bytes, out: Buffer) -> None:
        memoryview(out)[:] = aead.decrypt(nonce, data, aad)


class _Spares(threading.local):
    """One spare buffer per thread and size, for the full-segment buffers of consecutive blobs.

    A fresh 1 MiB buffer per blob costs a zeroing pass and, where the allocator hands large
    blocks back to the system (glibc does, for sizes that vary a little), 256 first-touch
    page faults: on a VM that is more than encrypting the megabyte. A buffer is taken for the
    life of one writer, reader or ``read`` and given back after; one that is never given back
    is simply collected. Buffers hold only transient segment bytes, never handed to callers.
    """

    def __init__(self) -> None:
        self.buffers: dict[int, bytearray] = {}

    def take(self, size: int) -> bytearray:
        return self.buffers.pop(size, None) or bytearray(size)

    def give(self, buffer: bytearray | None) -> None:
        if buffer is not None:
            self.buffers[len(buffer)] = buffer


_SPARES = _Spares()
_EMPTY = memoryview(b"")
_FRESH_MMAP = 32 << 20


def _fresh(size: int) -> bytes:
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


def _read_segment(
    source: ByteSource,
    readinto: Callable[[memoryview], int | None] | None,
    buffer: bytearray | None,
    step: int,
) -> tuple[bytes | memoryview, bool]:
    """The next segment of a blob body: ``step`` bytes, fewer only where the stream ends, and
    whether a read came back empty (the stream has ended: no further read need check).

    Where the stream has ``readinto`` the segment lands in ``buffer``, one reused full-segment
    spare (small blobs never come here: ``decrypt_split`` reads them whole); a fresh buffer per
    segment means fresh pages, and first-touch page faults can cost more than AES-GCM itself.
    The view returned is valid until the next call.
    """
    if readinto is None or buffer is None:
        data = read_exact(source, step)
        return data, len(data) < step  # read_exact stops short only after an empty read
    view = memoryview(buffer)
    got = 0
    while got < step:
        n = readinto(view[got:])
        if not n:
            return view[:got], True
        got += n
    return view, False


def _ends_here(source: ByteSource, eof: bool) -> bool:
    """Whether the stream ends after the final segment (it must end the object)."""
    return eof or not read_exact(source, 1)


class BlobWriter:
    """Encrypts what is written to it into ``sink``, one segment at a time (bounded memory).

    ``close()`` writes the final segment; a writer that is never closed leaves a blob that no
    reader accepts, which is the point: an interrupted write cannot pass for a whole one.
    A plain class, not an ``io.RawIOBase``: it is made once per blob, and the io machinery
    cost more than all its own bookkeeping for a small blob.
    """

    __slots__ = ("_aad", "_aead", "_buf", "_fill", "_index", "_out", "_sink", "_size", "closed")

    def __init__(self, sink: BinaryIO, header: BlobHeader, payload_key: bytes) -> None:
        self._sink = sink
        self._aead = AESGCM(payload_key)
        self._aad = header.fixed
        self._size = 1 << header.segment_log2
        # A partial segment waits in _buf[:_fill]. _buf only ever grows (to one segment at
        # most); the ciphertext buffer _out is taken from the spares on the first full
        # segment, so a small blob never pays for a 1 MiB buffer and a large one reuses one.
        self._buf = bytearray()
        self._fill = 0
        self._out: bytearray | None = None
        self._index = 0
        self.closed = False
        sink.write(header.encode())

    def writable(self) -> bool:
        return True

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emit(self, plaintext: bytes | bytearray | memoryview, final: bool) -> None:
        nonce = _segment_nonce(self._index, final)
        if len(plaintext) == self._size:
            if self._out is None:
                self._out = _SPARES.take(self._size + TAG_SIZE)
            _encrypt_into(self._aead, nonce, plaintext, self._aad, self._out)
            self._sink.write(self._out)
        else:
            self._sink.write(self._aead.encrypt(nonce, plaintext, self._aad))
        self._index += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a closed BlobWriter")
        view = memoryview(data).cast("B")
        n, size = len(view), self._size
        if self._fill:
            take = min(n, size - self._fill)
            self._buf[self._fill : self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == size:
                self._emit(self._buf, final=False)
                self._fill = 0
        # Whole segments straight from the caller's buffer: no copy of large payloads.
        while len(view) >= size:
            self._emit(view[:size], final=False)
            view = view[size:]
        if len(view):
            self._buf[: len(view)] = view
            self._fill = len(view)
        return n

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._emit(memoryview(self._buf)[: self._fill], final=True)
            _SPARES.give(self._out)
            self._buf, self._fill, self._out = bytearray(), 0, None


class BlobReader(io.RawIOBase):
    """A readable file object over a blob's segments that only ever yields authenticated bytes.

    A segment is released only after its tag verifies; a missing final segment, trailing bytes
    or a reordered segment raise IntegrityError from ``read``.
    """

    def __init__(self, source: ByteSource, header: BlobHeader, payload_key: bytes) -> None:
        size = 1 << header.segment_log2
        self._source = source
        self._readinto: Callable[[memoryview], int | None] | None = getattr(
            source, "readinto", None
        )
        self._aead = AESGCM(payload_key)
        self._aad = header.fixed
        self._size = size
        self._index = 0
        self._done = False
        self._eof = False  # a read of the source came back empty
        self._buffer: bytearray | None = None  # a spare the segments are read into
        self._plain = _EMPTY  # what is left of the last segment, not yet read
        self._segment: bytearray | None = None  # reused for segments read in small pieces

    def readable(self) -> bool:
        return True

    def _next(self) -> bytes | memoryview:
        step = self._size + TAG_SIZE
        if self._buffer is None and self._readinto is not None:
            self._buffer = _SPARES.take(step)
        chunk, self._eof = _read_segment(self._source, self._readinto, self._buffer, step)
        return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        if not self._plain:
            if self._done or not out:
                return 0
            chunk = self._next()
            n = len(chunk) - TAG_SIZE
            if n < 0:
                raise IntegrityError()
            if len(out) >= n:
                # The whole segment fits: decrypt straight into the caller's buffer, no copy.
                self._decrypt(chunk, out[:n])
                return n
            if self._segment is None:
                self._segment = bytearray(self._size)
            self._plain = memoryview(self._segment)[:n]
            self._decrypt(chunk, self._plain)
        n = min(len(out), len(self._plain))
        out[:n] = self._plain[:n]
        self._plain = self._plain[n:]
        return n

    def _decrypt(self, chunk: bytes | memoryview, target: memoryview) -> None:
        """Decrypt the next segment into ``target``. On failure ``target`` is wiped:
        ``decrypt_into`` leaves unauthenticated plaintext there when the tag does not match,
        and ``target`` may be the caller's buffer."""
        final = len(chunk) < self._size + TAG_SIZE
        try:
            _decrypt_into(self._aead, _segment_nonce(self._index, final), chunk, self._aad, target)
            self._index += 1
            if final:
                self._done = True
                if not _ends_here(self._source, self._eof):
                    raise IntegrityError()
                self._release()
        except BaseException as exc:
            target[:] = bytes(len(target))
            self._plain = _EMPTY
            if isinstance(exc, InvalidTag):
                raise IntegrityError() from None
            raise

    def _release(self) -> None:
        if self._buffer is not None:
            _SPARES.give(self._buffer)
            self._buffer = None

    def close(self) -> None:
        if not self.closed:
            self._release()
            closer: Callable[[], object] | None = getattr(self._source, "close", None)
            if closer is not None:
                closer()
        super().close()


def encrypt_segments(
    payload: Buffer, header: BlobHeader, payload_key: bytes, prefix: bytes
) -> bytes:
    """``prefix`` (the encoded header) followed by the encrypted body of an in-memory payload,
    as one new ``bytes``: the same bytes a ``BlobWriter`` writes, without a stream.

    A payload smaller than a segment is a single AES-GCM call (small results); a larger one is
    encrypted segment by segment straight into its place in the output, which is allocated
    once at its exact size.
    """
    view = memoryview(payload).cast("B")
    size = header.segment_size
    count = len(view) // size + 1
    aead, aad = AESGCM(payload_key), header.fixed
    if count == 1:
        return prefix + aead.encrypt(_segment_nonce(0, True), view, aad)
    # See decrypt_split: a BytesIO over the only reference to a bytes object fills it in place.
    buffer = io.BytesIO(_fresh(len(prefix) + len(view) + count * TAG_SIZE))
    with buffer.getbuffer() as out:
        out[: len(prefix)] = prefix
        at = len(prefix)
        for index in range(count):
            chunk = view[index * size : index * size + size]
            end = at + len(chunk) + TAG_SIZE
            nonce = _segment_nonce(index, index == count - 1)
            _encrypt_into(aead, nonce, chunk, aad, out[at:end])
            at = end
    return buffer.getvalue()


def decrypt_segments(body: memoryview, header: BlobHeader, payload_key: bytes) -> bytearray:
    """Decrypt a whole in-memory blob body into one buffer."""
    size, step = header.segment_size, header.segment_size + TAG_SIZE
    count = len(body) // step + 1
    if len(body) - (count - 1) * step < TAG_SIZE:  # no room for the final segment's tag
        raise IntegrityError()
    plain_len = len(body) - count * TAG_SIZE
    out = bytearray(plain_len)
    view = memoryview(out)
    aead, aad = AESGCM(payload_key), header.fixed
    try:
        for index in range(count):
            final = index == count - 1
            chunk = body[index * step : index * step + step]
            start = index * size
            target = view[start : start + len(chunk) - TAG_SIZE]
            _decrypt_into(aead, _segment_nonce(index, final), chunk, aad, target)
    except InvalidTag:
        raise IntegrityError() from None
    return out


def decrypt_split(
    source: ByteSource,
    length: int,
    header: BlobHeader,
    payload_key: bytes,
    cut: Callable[[bytes | memoryview, int], int],
) -> tuple[bytes, bytes]:
    """Decrypt a whole blob body of ``length`` bytes from ``source`` (the path of ``read``)
    as two ``bytes``: the plaintext before ``cut(first segment's plaintext, plaintext length)``
    and the rest.

    The rest is decrypted straight into the ``bytes`` object returned, so a large value that is
    the tail of the payload (a msgpack ``bytes`` value) comes back without a copy, and the body
    passes through one reused segment buffer: a large result costs its own size in memory,
    once. ``cut`` only sees authenticated bytes and must not raise; nothing is returned before
    every segment is authenticated and the body is known to end where ``length`` says.
    """
    size, step = header.segment_size, header.segment_size + TAG_SIZE
    count = length // step + 1
    if length - (count - 1) * step < TAG_SIZE:  # no room for the final segment's tag
        raise IntegrityError()
    plain_len = length - count * TAG_SIZE
    aead, aad = AESGCM(payload_key), header.fixed
    if count == 1:  # a small result: one read, one decryption, no segment buffer
        data = read_exact(source, length)
        if len(data) != length or read_exact(source, 1):  # the object changed under us
            raise IntegrityError()
        try:
            whole = aead.decrypt(_segment_nonce(0, True), data, aad)
        except InvalidTag:
            raise IntegrityError() from None
        at = min(max(cut(whole, plain_len), 0), len(whole))
        return whole[:at], whole[at:]
    readinto: Callable[[memoryview], int | None] | None = getattr(source, "readinto", None)
    segment_buffer = _SPARES.take(step) if readinto is not None else None
    eof = False

    def chunk(index: int) -> bytes | memoryview:
        nonlocal eof
        data, eof = _read_segment(source, readinto, segment_buffer, step)
        if len(data) != min(step, length - index * step):  # the object changed under us
            raise IntegrityError()
        return data

    spare, first = None, memoryview(b"")
    try:
        # A full first segment: decrypted into a spare buffer, copied on from there.
        spare = _SPARES.take(size)
        first = memoryview(spare)
        _decrypt_into(aead, _segment_nonce(0, False), chunk(0), aad, first)
        at = min(max(cut(first, plain_len), 0), size)
        head = bytes(first[:at])
        # A BytesIO over the only reference to a bytes object writes into it in place, and
        # getvalue() then returns that very object (CPython; elsewhere it copies: slower,
        # same bytes). See _fresh for why it is not bytes(n).
        buffer = io.BytesIO(_fresh(plain_len - at))
        with buffer.getbuffer() as out:
            out[: size - at] = first[at:]
            for index in range(1, count):
                segment, start = chunk(index), index * size - at
                nonce = _segment_nonce(index, index == count - 1)
                # No name may keep a slice of ``out`` past the loop: it would pin it.
                _decrypt_into(
                    aead, nonce, segment, aad, out[start : start + len(segment) - TAG_SIZE]
                )
        rest = buffer.getvalue()
        if not _ends_here(source, eof):
            raise IntegrityError()
    except InvalidTag:
        raise IntegrityError() from None
    finally:
        first.release()  # no view of the spare may outlive handing it back
        _SPARES.give(segment_buffer)
        _SPARES.give(spare)
    return head, rest
