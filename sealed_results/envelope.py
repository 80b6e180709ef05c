"""Blob format v1: a committed, segmented AES-256-GCM envelope (docs/format.md).

    fixed header (104 bytes)  magic, version, suite, segment size, object id, key id, salt,
                              key commitment
    key section               the wrapped data key, once per key provider (stanzas)
    segments                  AES-256-GCM, STREAM-style: nonce = 11-byte counter || final flag

Why this shape:
- The payload key and a 32-byte key commitment both come from HKDF-SHA256 over the data key
  with the header as ``info``: a wrong key, or any changed header byte, fails the commitment
  before a single plaintext byte is released, and one data key may safely serve many blobs.
- The key section sits outside the derivation so rotation can rewrap data keys (even inside
  Vault, without the plaintext key) and keep the payload bytes. Each stanza is an AEAD
  ciphertext of its own provider, bound to the key id, so it is authenticated where it is used.
- Every non-final segment holds exactly ``segment_size`` bytes and the final one fewer (maybe
  none), so a reader knows a segment is final from its length alone and truncation at any
  boundary is caught by the flag in the nonce.

This module is pure: bytes and file objects in, bytes out. It knows no storage and no provider.
"""

from __future__ import annotations

import hmac
import io
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealed_results.errors import IntegrityError, UnsupportedVersion
from sealed_results.keyproviders.base import Stanza

__all__ = [
    "BLOB_VERSION",
    "DEFAULT_SEGMENT_LOG2",
    "BlobHeader",
    "BlobReader",
    "BlobWriter",
    "decrypt_split",
    "open_blob",
    "read_header",
    "seal_blob",
]

MAGIC = b"\xf0SRB"
BLOB_VERSION = 1
SUITE_AES256GCM_HKDF_SHA256 = 1
MIN_SEGMENT_LOG2, MAX_SEGMENT_LOG2 = 16, 20  # 64 KiB .. 1 MiB
DEFAULT_SEGMENT_LOG2 = 20
TAG_SIZE = 16
MAX_STANZAS = 16
MAX_KIND_LEN = 32
MAX_WRAPPED_LEN = 4096

_FIXED = struct.Struct(">4sBBBB16s16s32s")  # everything before the commitment: 72 bytes
FIXED_SIZE = _FIXED.size
HEADER_SIZE = FIXED_SIZE + 32
_KDF_INFO = b"sealed-results blob v1"


class _Reader(Protocol):
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


def derive_keys(data_key: bytes, fixed: bytes) -> tuple[bytes, bytes]:
    """(payload key, key commitment) for a data key and the 72 fixed header bytes."""
    okm = HKDF(hashes.SHA256(), 64, salt=fixed[40:72], info=_KDF_INFO + fixed).derive(data_key)
    return okm[:32], okm[32:]


def encode_stanzas(stanzas: tuple[Stanza, ...]) -> bytes:
    if not 1 <= len(stanzas) <= MAX_STANZAS:
        raise ValueError("a blob carries 1 to 16 key stanzas")
    out = bytearray([len(stanzas)])
    for stanza in stanzas:
        kind = stanza.kind.encode("ascii")
        if not 1 <= len(kind) <= MAX_KIND_LEN or not 1 <= len(stanza.wrapped) <= MAX_WRAPPED_LEN:
            raise ValueError("stanza kind or wrapped key has an invalid length")
        out += bytes([len(kind)]) + kind + struct.pack(">H", len(stanza.wrapped)) + stanza.wrapped
    return bytes(out)


@dataclass(frozen=True)
class BlobHeader:
    """A parsed header. ``fixed`` is the 104 authenticated bytes; ``stanzas`` the key section."""

    object_id: bytes = field(repr=False)
    key_id: bytes = field(repr=False)
    segment_log2: int
    commitment: bytes = field(repr=False)
    fixed: bytes = field(repr=False)
    stanzas: tuple[Stanza, ...] = field(repr=False)

    @classmethod
    def new(
        cls,
        data_key: bytes,
        object_id: bytes,
        key_id: bytes,
        stanzas: tuple[Stanza, ...],
        *,
        segment_log2: int = DEFAULT_SEGMENT_LOG2,
        salt: bytes | None = None,
    ) -> tuple[BlobHeader, bytes]:
        """A header for a new blob and its payload key. ``salt`` is a test seam only."""
        if not MIN_SEGMENT_LOG2 <= segment_log2 <= MAX_SEGMENT_LOG2:
            raise ValueError("segment size must be 64 KiB to 1 MiB (log2 16..20)")
        if len(data_key) != 32 or len(object_id) != 16 or len(key_id) != 16:
            raise ValueError("data key is 32 bytes; object id and key id are 16 bytes")
        salt = os.urandom(32) if salt is None else salt
        fixed = _FIXED.pack(
            MAGIC,
            BLOB_VERSION,
            SUITE_AES256GCM_HKDF_SHA256,
            segment_log2,
            0,
            object_id,
            key_id,
            salt,
        )
        payload_key, commitment = derive_keys(data_key, fixed)
        header = cls(object_id, key_id, segment_log2, commitment, fixed + commitment, stanzas)
        return header, payload_key

    @property
    def segment_size(self) -> int:
        return 1 << self.segment_log2

    def encode(self) -> bytes:
        return self.fixed + encode_stanzas(self.stanzas)

    def with_stanzas(self, stanzas: tuple[Stanza, ...]) -> BlobHeader:
        """The same blob under new key wrappings (rotation): payload bytes stay valid."""
        return BlobHeader(
            self.object_id, self.key_id, self.segment_log2, self.commitment, self.fixed, stanzas
        )

    def payload_key(self, data_key: bytes) -> bytes:
        """Check the key commitment; only then hand out the payload key."""
        payload_key, commitment = derive_keys(data_key, self.fixed[:FIXED_SIZE])
        if not hmac.compare_digest(commitment, self.commitment):
            raise IntegrityError()
        return payload_key


def _read_exact(source: _Reader, n: int) -> bytes:
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


class _Segments:
    """A blob body read from a stream one segment (``step`` bytes, fewer at the end) at a time.

    Where the stream has ``readinto``, every segment lands in one reused buffer (``length``,
    the body's length when known, keeps it small for a small blob): a fresh buffer per segment
    means fresh pages, and first-touch page faults can cost more than AES-GCM itself. A segment
    returned is valid until the next call.
    """

    def __init__(self, source: _Reader, step: int, length: int | None = None) -> None:
        self._source = source
        self._step = step
        self._readinto: Callable[[memoryview], int | None] | None = getattr(
            source, "readinto", None
        )
        self._size = step if length is None else min(step, length)
        self._buffer: bytearray | None = None

    def next(self) -> bytes | memoryview:
        if self._readinto is None:
            return _read_exact(self._source, self._step)
        if self._buffer is None:
            self._buffer = _SPARES.take(self._size)
        view = memoryview(self._buffer)[: self._size]
        got = 0
        while got < self._size and (n := self._readinto(view[got:])):
            got += n
        return view[:got]

    def at_end(self) -> bool:
        return not _read_exact(self._source, 1)

    def release(self) -> None:
        """Done reading: the buffer goes back to the spares (no segment returned is used)."""
        _SPARES.give(self._buffer)
        self._buffer = None


def read_header(source: _Reader) -> BlobHeader:
    """Parse a header from the start of a stream. Malformed: IntegrityError; unknown version or
    suite: UnsupportedVersion (a subclass, since a reader cannot tell it from tampering)."""
    raw = _read_exact(source, HEADER_SIZE + 1)
    if len(raw) < HEADER_SIZE + 1 or raw[:4] != MAGIC:
        raise IntegrityError()
    _, version, suite, segment_log2, reserved, object_id, key_id, _salt = _FIXED.unpack_from(raw)
    if version != BLOB_VERSION or suite != SUITE_AES256GCM_HKDF_SHA256:
        raise UnsupportedVersion("this result was written by an unknown blob format version")
    if reserved != 0 or not MIN_SEGMENT_LOG2 <= segment_log2 <= MAX_SEGMENT_LOG2:
        raise IntegrityError()
    count = raw[HEADER_SIZE]
    if not 1 <= count <= MAX_STANZAS:
        raise IntegrityError()
    stanzas = []
    for _ in range(count):
        head = _read_exact(source, 1)
        if len(head) != 1 or not 1 <= head[0] <= MAX_KIND_LEN:
            raise IntegrityError()
        kind_and_len = _read_exact(source, head[0] + 2)
        if len(kind_and_len) != head[0] + 2:
            raise IntegrityError()
        (wrapped_len,) = struct.unpack(">H", kind_and_len[-2:])
        wrapped = _read_exact(source, wrapped_len)
        if not 1 <= wrapped_len <= MAX_WRAPPED_LEN or len(wrapped) != wrapped_len:
            raise IntegrityError()
        try:
            kind = kind_and_len[:-2].decode("ascii")
        except UnicodeDecodeError:
            raise IntegrityError() from None
        stanzas.append(Stanza(kind, wrapped))
    fixed = raw[:HEADER_SIZE]
    return BlobHeader(object_id, key_id, segment_log2, fixed[FIXED_SIZE:], fixed, tuple(stanzas))


class BlobWriter(io.RawIOBase):
    """Encrypts what is written to it into ``sink``, one segment at a time (bounded memory).

    ``close()`` writes the final segment; a writer that is never closed leaves a blob that no
    reader accepts, which is the point: an interrupted write cannot pass for a whole one.
    """

    def __init__(self, sink: BinaryIO, header: BlobHeader, payload_key: bytes) -> None:
        super().__init__()
        self._sink = sink
        self._aead = AESGCM(payload_key)
        self._aad = header.fixed
        self._size = header.segment_size
        # A partial segment waits in _buf[:_fill]. _buf only ever grows (to one segment at
        # most); the ciphertext buffer _out is taken from the spares on the first full
        # segment, so a small blob never pays for a 1 MiB buffer and a large one reuses one.
        self._buf = bytearray()
        self._fill = 0
        self._out: bytearray | None = None
        self._index = 0
        sink.write(header.encode())

    def writable(self) -> bool:
        return True

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

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
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
            self._emit(memoryview(self._buf)[: self._fill], final=True)
            _SPARES.give(self._out)
            self._buf, self._fill, self._out = bytearray(), 0, None
        super().close()


class BlobReader(io.RawIOBase):
    """A readable file object over a blob's segments that only ever yields authenticated bytes.

    A segment is released only after its tag verifies; a missing final segment, trailing bytes
    or a reordered segment raise IntegrityError from ``read``.
    """

    def __init__(self, source: _Reader, header: BlobHeader, payload_key: bytes) -> None:
        super().__init__()
        self._source = source
        self._segments = _Segments(source, header.segment_size + TAG_SIZE)
        self._aead = AESGCM(payload_key)
        self._aad = header.fixed
        self._size = header.segment_size
        self._index = 0
        self._done = False
        self._plain = memoryview(b"")  # what is left of the last segment, not yet read
        self._segment: bytearray | None = None  # reused for segments read in small pieces

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        if not self._plain:
            if self._done or not out:
                return 0
            chunk = self._segments.next()
            if len(chunk) < TAG_SIZE:
                raise IntegrityError()
            n = len(chunk) - TAG_SIZE
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
                if not self._segments.at_end():  # the final segment must end the object
                    raise IntegrityError()
                self._segments.release()
        except BaseException as exc:
            target[:] = bytes(len(target))
            self._plain = memoryview(b"")
            if isinstance(exc, InvalidTag):
                raise IntegrityError() from None
            raise

    def close(self) -> None:
        if not self.closed:
            self._segments.release()
            closer: Callable[[], object] | None = getattr(self._source, "close", None)
            if closer is not None:
                closer()
        super().close()


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
    source: _Reader,
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
    segments = _Segments(source, step, length)
    aead, aad = AESGCM(payload_key), header.fixed

    def chunk(index: int) -> bytes | memoryview:
        data = segments.next()
        if len(data) != min(step, length - index * step):  # the object changed under us
            raise IntegrityError()
        return data

    spare, first = None, memoryview(b"")
    try:
        if count == 1:
            whole = aead.decrypt(_segment_nonce(0, True), chunk(0), aad)
            at = min(max(cut(whole, plain_len), 0), len(whole))
            head, rest = whole[:at], whole[at:]
        else:  # a full first segment: decrypted into a spare buffer, copied on from there
            spare = _SPARES.take(size)
            first = memoryview(spare)
            _decrypt_into(aead, _segment_nonce(0, False), chunk(0), aad, first)
            at = min(max(cut(first, plain_len), 0), size)
            head = bytes(first[:at])
            # bytes(n) is calloc'd (no zeroing pass) and a BytesIO over the only reference to
            # a bytes object writes into it in place; getvalue() then returns that very object
            # (CPython; elsewhere it copies: slower, same bytes).
            buffer = io.BytesIO(bytes(plain_len - at))
            with buffer.getbuffer() as out:
                out[: size - at] = first[at:]
                for index in range(1, count):
                    data, start = chunk(index), index * size - at
                    nonce = _segment_nonce(index, index == count - 1)
                    # No name may keep a slice of ``out`` past the loop: it would pin it.
                    _decrypt_into(aead, nonce, data, aad, out[start : start + len(data) - TAG_SIZE])
            rest = buffer.getvalue()
        if not segments.at_end():
            raise IntegrityError()
    except InvalidTag:
        raise IntegrityError() from None
    finally:
        first.release()  # no view of the spare may outlive handing it back
        segments.release()
        _SPARES.give(spare)
    return head, rest


def seal_blob(
    payload: bytes,
    data_key: bytes,
    stanzas: tuple[Stanza, ...],
    *,
    object_id: bytes,
    key_id: bytes,
    segment_log2: int = DEFAULT_SEGMENT_LOG2,
    salt: bytes | None = None,
) -> bytes:
    """Seal a payload into blob bytes in one call (tests, vectors and small payloads)."""
    header, payload_key = BlobHeader.new(
        data_key, object_id, key_id, stanzas, segment_log2=segment_log2, salt=salt
    )
    sink = io.BytesIO()
    writer = BlobWriter(sink, header, payload_key)
    writer.write(payload)
    writer.close()
    return sink.getvalue()


def open_blob(
    blob: bytes,
    unwrap: Callable[[bytes, tuple[Stanza, ...]], bytes],
    *,
    object_id: bytes,
) -> bytearray:
    """Verify and decrypt blob bytes; ``unwrap(key_id, stanzas)`` returns the data key."""
    source = io.BytesIO(blob)
    header = read_header(source)
    if not hmac.compare_digest(header.object_id, object_id):
        raise IntegrityError()
    payload_key = header.payload_key(unwrap(header.key_id, header.stanzas))
    return decrypt_segments(memoryview(blob)[source.tell() :], header, payload_key)
