"""The segments of a blob body: STREAM-style AES-256-GCM (docs/format.md).

    segment i = AES-256-GCM(payload key, nonce = i as 11 bytes || final flag, aad = header)

Every non-final segment holds exactly ``segment_size`` plaintext bytes and the final one fewer
(maybe none), so a reader knows a segment is final from its length alone and truncation at any
boundary is caught by the flag in the nonce. ``SegmentCipher`` is the one place that builds
nonces; ``BlobWriter`` is the one stream writer and ``BlobReader`` the one stream reader, and
``seal_segments``/``open_segments`` do the same for a body held in memory. Segments know only a
payload key, the authenticated header bytes (the AAD) and the segment size, never a header
object. Buffers are reused so that a large result costs its own size once.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealed_results.errors import IntegrityError
from sealed_results.format.buffers import EMPTY, SPARES, ByteSource, fresh_bytes, read_exact

__all__ = [
    "TAG_SIZE",
    "BlobReader",
    "BlobWriter",
    "ByteSource",
    "SegmentCipher",
    "open_segments",
    "read_exact",
    "seal_segments",
]

TAG_SIZE = 16
# The last nonce byte: 0 a segment that more follow, 1 the final segment, 2 the payload
# descriptor (format.payload), which is sealed under the same key and must never share a nonce.
_MORE, _FINAL, _DESCRIPTOR = b"\x00", b"\x01", b"\x02"

Buffer = bytes | bytearray | memoryview


class SegmentCipher:
    """AES-256-GCM under one payload key and header AAD; builds every nonce of a blob."""

    __slots__ = ("aad", "aead", "segment_size")

    def __init__(self, payload_key: bytes, aad: bytes, segment_size: int) -> None:
        self.aead = AESGCM(payload_key)
        self.aad = aad
        self.segment_size = segment_size

    @staticmethod
    def nonce(index: int, final: bool) -> bytes:
        return index.to_bytes(11, "big") + (_FINAL if final else _MORE)

    def encrypt(self, index: int, final: bool, data: Buffer) -> bytes:
        return self.aead.encrypt(self.nonce(index, final), data, self.aad)

    def encrypt_into(self, index: int, final: bool, data: Buffer, out: Buffer) -> None:
        _encrypt_into(self.aead, self.nonce(index, final), data, self.aad, out)

    def decrypt(self, index: int, final: bool, data: Buffer) -> bytes:
        try:
            return self.aead.decrypt(self.nonce(index, final), data, self.aad)
        except InvalidTag:
            raise IntegrityError() from None

    def decrypt_into(self, index: int, final: bool, data: Buffer, out: memoryview) -> None:
        """Decrypt into ``out``; on failure ``out`` is wiped: ``decrypt_into`` leaves
        unauthenticated plaintext there when the tag does not match, and ``out`` may be the
        caller's buffer."""
        try:
            _decrypt_into(self.aead, self.nonce(index, final), data, self.aad, out)
        except InvalidTag:
            out[:] = bytes(len(out))
            raise IntegrityError() from None

    def seal_descriptor(self, plaintext: bytes) -> bytes:
        return self.aead.encrypt(bytes(11) + _DESCRIPTOR, plaintext, self.aad)

    def open_descriptor(self, sealed: Buffer) -> bytes:
        try:
            return self.aead.decrypt(bytes(11) + _DESCRIPTOR, sealed, self.aad)
        except InvalidTag:
            raise IntegrityError() from None

    def body_length(self, length: int) -> tuple[int, int]:
        """``(segment count, plaintext length)`` of a body of ``length`` bytes; IntegrityError
        when no sequence of segments has that length."""
        step = self.segment_size + TAG_SIZE
        count = length // step + 1
        if length - (count - 1) * step < TAG_SIZE:  # no room for the final segment's tag
            raise IntegrityError()
        return count, length - count * TAG_SIZE


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


def _ends_here(source: ByteSource, eof: bool) -> bool:
    """Whether the stream ends after the final segment (it must end the object)."""
    return eof or not read_exact(source, 1)


class _SegmentSource:
    """Reads a body one whole segment at a time: ``segment_size + TAG_SIZE`` bytes, fewer only
    where the stream ends. Where the stream has ``readinto`` each segment lands in one reused
    full-segment spare (a fresh buffer per segment means fresh pages, and first-touch page
    faults can cost more than AES-GCM itself); the view returned is valid until the next call.
    """

    __slots__ = ("_buffer", "_readinto", "_source", "_step", "eof")

    def __init__(self, source: ByteSource, step: int) -> None:
        self._source = source
        self._step = step
        self._readinto: Callable[[memoryview], int | None] | None = getattr(
            source, "readinto", None
        )
        self._buffer: bytearray | None = None
        self.eof = False  # a read came back empty: the stream has ended, no read need check

    def next(self) -> bytes | memoryview:
        if self._readinto is None:
            data = read_exact(self._source, self._step)
            self.eof = len(data) < self._step  # read_exact stops short only after an empty read
            return data
        if self._buffer is None:
            self._buffer = SPARES.take(self._step)
        view, got = memoryview(self._buffer), 0
        while got < self._step:
            n = self._readinto(view[got:])
            if not n:
                self.eof = True
                return view[:got]
            got += n
        return view

    def ends_here(self) -> bool:
        return _ends_here(self._source, self.eof)

    def release(self) -> None:
        SPARES.give(self._buffer)
        self._buffer = None


class BlobWriter:
    """Encrypts what is written to it into ``sink``, one segment at a time (bounded memory).

    The caller has written the header (and descriptor) to ``sink`` already. ``close()`` writes
    the final segment; a writer that is never closed leaves a blob that no reader accepts,
    which is the point: an interrupted write cannot pass for a whole one. A plain class, not an
    ``io.RawIOBase``: it is made once per blob, and the io machinery costs more than all its
    own bookkeeping for a small blob.
    """

    __slots__ = ("_buf", "_cipher", "_fill", "_index", "_out", "_sink", "_size", "closed")

    def __init__(self, sink: BinaryIO, cipher: SegmentCipher) -> None:
        self._sink = sink
        self._cipher = cipher
        self._size = cipher.segment_size
        # A partial segment waits in _buf[:_fill]. _buf only ever grows (to one segment at
        # most); the ciphertext buffer _out is taken from the spares on the first full
        # segment, so a small blob never pays for a 1 MiB buffer and a large one reuses one.
        self._buf = bytearray()
        self._fill = 0
        self._out: bytearray | None = None
        self._index = 0
        self.closed = False

    def writable(self) -> bool:
        return True

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emit(self, plaintext: Buffer, final: bool) -> None:
        if len(plaintext) == self._size:
            if self._out is None:
                self._out = SPARES.take(self._size + TAG_SIZE)
            self._cipher.encrypt_into(self._index, final, plaintext, self._out)
            self._sink.write(self._out)
        else:
            self._sink.write(self._cipher.encrypt(self._index, final, plaintext))
        self._index += 1

    def write(self, data: Buffer) -> int:
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
            SPARES.give(self._out)
            self._buf, self._fill, self._out = bytearray(), 0, None


class BlobReader(io.RawIOBase):
    """A readable file object over a blob's segments that only ever yields authenticated bytes.

    A segment is released only after its tag verifies; a missing final segment, trailing bytes
    or a reordered segment raise IntegrityError from ``read``. Reads of whole segments (the
    usual 1 MiB reads of a 1 MiB-segment blob) are decrypted straight into the caller's buffer,
    or returned as the very ``bytes`` the decryption made: no copy either way.
    """

    def __init__(self, source: ByteSource, cipher: SegmentCipher) -> None:
        self._source = source
        self._segments = _SegmentSource(source, cipher.segment_size + TAG_SIZE)
        self._cipher = cipher
        self._size = cipher.segment_size
        self._index = 0
        self._done = False
        self._plain = EMPTY  # what is left of the last segment, not yet read
        self._segment: bytearray | None = None  # reused for segments read in small pieces

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> tuple[bytes | memoryview, int, bool]:
        chunk = self._segments.next()
        n = len(chunk) - TAG_SIZE
        if n < 0:
            raise IntegrityError()
        return chunk, n, len(chunk) < self._size + TAG_SIZE

    def _finish(self, final: bool) -> None:
        self._index += 1
        if final:
            self._done = True
            if not self._segments.ends_here():
                raise IntegrityError()
            self._segments.release()

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self._plain or self._done or size < self._size:
            return super().read(size) or b""
        # A whole segment wanted and nothing pending: the decryption's own output is returned.
        chunk, _, final = self._next_chunk()
        plain = self._cipher.decrypt(self._index, final, chunk)
        self._finish(final)
        return plain

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        if not self._plain:
            if self._done or not out:
                return 0
            chunk, n, final = self._next_chunk()
            if len(out) >= n:
                # The whole segment fits: decrypt straight into the caller's buffer, no copy.
                self._cipher.decrypt_into(self._index, final, chunk, out[:n])
                self._finish(final)
                return n
            if self._segment is None:
                self._segment = bytearray(self._size)
            plain = memoryview(self._segment)[:n]
            self._cipher.decrypt_into(self._index, final, chunk, plain)
            self._finish(final)
            self._plain = plain
        n = min(len(out), len(self._plain))
        out[:n] = self._plain[:n]
        self._plain = self._plain[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._segments.release()
            self._plain = EMPTY
            closer: Callable[[], object] | None = getattr(self._source, "close", None)
            if closer is not None:
                closer()
        super().close()


def seal_segments(payload: Buffer, cipher: SegmentCipher, prefix: bytes) -> bytes:
    """``prefix`` followed by the encrypted body of an in-memory payload, as one new ``bytes``:
    the same bytes a ``BlobWriter`` writes after that prefix, without a stream.

    A payload smaller than a segment is a single AES-GCM call (small results); a larger one is
    encrypted segment by segment straight into its place in the output, which is allocated
    once at its exact size.
    """
    view = memoryview(payload).cast("B")
    size = cipher.segment_size
    count = len(view) // size + 1
    if count == 1:
        return prefix + cipher.encrypt(0, True, view)
    # See open_segments: a BytesIO over the only reference to a bytes object fills it in place.
    buffer = io.BytesIO(fresh_bytes(len(prefix) + len(view) + count * TAG_SIZE))
    with buffer.getbuffer() as out:
        out[: len(prefix)] = prefix
        at = len(prefix)
        for index in range(count):
            chunk = view[index * size : index * size + size]
            end = at + len(chunk) + TAG_SIZE
            cipher.encrypt_into(index, index == count - 1, chunk, out[at:end])
            at = end
    return buffer.getvalue()


def open_segments(
    source: ByteSource,
    length: int,
    cipher: SegmentCipher,
    cut: Callable[[memoryview, int], int] | None = None,
) -> tuple[bytes, bytes]:
    """Decrypt a whole body of ``length`` bytes from ``source`` (the path of ``read``) as two
    ``bytes``: the plaintext before ``cut(first segment's plaintext, plaintext length)`` and
    the rest (``cut`` None: nothing before).

    The rest is decrypted straight into the ``bytes`` object returned, so a large value that is
    the tail of the payload (a msgpack ``bytes`` value) comes back without a copy, and the body
    passes through one reused segment buffer: a large result costs its own size in memory,
    once. ``cut`` only sees authenticated bytes and must not raise; nothing is returned before
    every segment is authenticated and the body is known to end where ``length`` says.
    """
    count, plain_len = cipher.body_length(length)
    size, step = cipher.segment_size, cipher.segment_size + TAG_SIZE
    if count == 1:  # a small result: one read, one decryption, no segment buffer
        data = read_exact(source, length)
        if len(data) != length or read_exact(source, 1):  # the object changed under us
            raise IntegrityError()
        whole = cipher.decrypt(0, True, data)
        at = min(max(cut(memoryview(whole), plain_len), 0), plain_len) if cut else 0
        return whole[:at], whole[at:] if at else whole
    segments = _SegmentSource(source, step)

    def chunk(index: int) -> bytes | memoryview:
        data = segments.next()
        if len(data) != min(step, length - index * step):  # the object changed under us
            raise IntegrityError()
        return data

    spare, first = None, memoryview(b"")
    try:
        # A full first segment: decrypted into a spare buffer, copied on from there.
        spare = SPARES.take(size)
        first = memoryview(spare)
        cipher.decrypt_into(0, False, chunk(0), first)
        at = min(max(cut(first, plain_len), 0), size) if cut else 0
        head = bytes(first[:at])
        # A BytesIO over the only reference to a bytes object writes into it in place, and
        # getvalue() then returns that very object (CPython; elsewhere it copies: slower,
        # same bytes). See _fresh for why it is not bytes(n).
        buffer = io.BytesIO(fresh_bytes(plain_len - at))
        with buffer.getbuffer() as out:
            out[: size - at] = first[at:]
            for index in range(1, count):
                segment, start = chunk(index), index * size - at
                # No name may keep a slice of ``out`` past the loop: it would pin it.
                cipher.decrypt_into(
                    index,
                    index == count - 1,
                    segment,
                    out[start : start + len(segment) - TAG_SIZE],
                )
        rest = buffer.getvalue()
        if not segments.ends_here():
            raise IntegrityError()
    finally:
        first.release()  # no view of the spare may outlive handing it back
        segments.release()
        SPARES.give(spare)
    return head, rest
