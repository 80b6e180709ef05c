"""Blob format v1: the header of a committed, segmented AES-256-GCM envelope (docs/format.md).

    fixed header (104 bytes)  magic, version, suite, segment size, object id, key id, salt,
                              key commitment
    key section               the wrapped data key, once per key provider (stanzas)
    descriptor (81 bytes)     the serializer's name, sealed (format.payload)
    segments                  AES-256-GCM, STREAM-style (format.segments)

Why this shape:
- The payload key and a 32-byte key commitment both come from HKDF-SHA256 over the data key
  with the header as ``info``: a wrong key, or any changed header byte, fails the commitment
  before a single plaintext byte is released, and one data key may safely serve many blobs.
- The key section sits outside the derivation so rotation can rewrap data keys (even inside
  Vault, without the plaintext key) and keep the payload bytes. Each stanza is an AEAD
  ciphertext of its own provider, bound to the key id, so it is authenticated where it is used.

This module is pure: bytes and file objects in, bytes out. It knows no storage and no provider.
"""

from __future__ import annotations

import hmac
import io
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealed_results.errors import IntegrityError, UnsupportedVersion
from sealed_results.format.payload import (
    DESCRIPTOR_SIZE,
    STREAM_SERIALIZER,
    open_descriptor,
    seal_descriptor,
)
from sealed_results.format.segments import (
    ByteSource,
    SegmentCipher,
    open_segments,
    read_exact,
    seal_segments,
)
from sealed_results.format.stanza import (
    MAX_KIND_LEN,
    MAX_STANZAS,
    MAX_WRAPPED_LEN,
    Stanza,
    encode_stanzas,
)

__all__ = [
    "BLOB_VERSION",
    "DEFAULT_SEGMENT_LOG2",
    "HEADER_SIZE",
    "MAX_SEGMENT_LOG2",
    "MIN_SEGMENT_LOG2",
    "BlobHeader",
    "open_blob",
    "read_header",
    "seal_blob",
]

MAGIC = b"\xf0SRB"
BLOB_VERSION = 1
SUITE_AES256GCM_HKDF_SHA256 = 1
MIN_SEGMENT_LOG2, MAX_SEGMENT_LOG2 = 16, 20  # 64 KiB .. 1 MiB
DEFAULT_SEGMENT_LOG2 = 20

_FIXED = struct.Struct(">4sBBBB16s16s32s")  # everything before the commitment: 72 bytes
FIXED_SIZE = _FIXED.size
HEADER_SIZE = FIXED_SIZE + 32
_KDF_INFO = b"sealed-results blob v1"


def derive_keys(data_key: bytes, fixed: bytes) -> tuple[bytes, bytes]:
    """(payload key, key commitment) for a data key and the 72 fixed header bytes."""
    okm = HKDF(hashes.SHA256(), 64, salt=fixed[40:72], info=_KDF_INFO + fixed).derive(data_key)
    return okm[:32], okm[32:]


@dataclass(frozen=True, slots=True)
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

    def cipher(self, payload_key: bytes) -> SegmentCipher:
        """The cipher of this blob's descriptor and segments."""
        return SegmentCipher(payload_key, self.fixed, 1 << self.segment_log2)


def read_header(source: ByteSource) -> BlobHeader:
    """Parse a header from the start of a stream. Malformed: IntegrityError; unknown version or
    suite: UnsupportedVersion (a subclass, since a reader cannot tell it from tampering)."""
    # Each read also takes the next field's length byte (the stanza count and the first kind
    # length here, the next kind length after a wrapped key): two reads per stanza, not three.
    # It never reads past the header: a key section has at least one stanza.
    raw = read_exact(source, HEADER_SIZE + 2)
    if len(raw) < HEADER_SIZE + 2 or raw[:4] != MAGIC:
        raise IntegrityError()
    _, version, suite, segment_log2, reserved, object_id, key_id, _salt = _FIXED.unpack_from(raw)
    if version != BLOB_VERSION or suite != SUITE_AES256GCM_HKDF_SHA256:
        raise UnsupportedVersion("this result was written by an unknown blob format version")
    if reserved != 0 or not MIN_SEGMENT_LOG2 <= segment_log2 <= MAX_SEGMENT_LOG2:
        raise IntegrityError()
    count, kind_len = raw[HEADER_SIZE], raw[HEADER_SIZE + 1]
    if not 1 <= count <= MAX_STANZAS:
        raise IntegrityError()
    stanzas = []
    for index in range(count):
        if not 1 <= kind_len <= MAX_KIND_LEN:
            raise IntegrityError()
        kind_and_len = read_exact(source, kind_len + 2)
        if len(kind_and_len) != kind_len + 2:
            raise IntegrityError()
        wrapped_len = int.from_bytes(kind_and_len[-2:], "big")
        if not 1 <= wrapped_len <= MAX_WRAPPED_LEN:
            raise IntegrityError()
        more = 1 if index + 1 < count else 0
        wrapped = read_exact(source, wrapped_len + more)
        if len(wrapped) != wrapped_len + more:
            raise IntegrityError()
        if more:
            kind_len, wrapped = wrapped[-1], wrapped[:-1]
        try:
            kind = kind_and_len[:-2].decode("ascii")
        except UnicodeDecodeError:
            raise IntegrityError() from None
        stanzas.append(Stanza(kind, bytes(wrapped)))
    fixed = bytes(raw[:HEADER_SIZE])
    return BlobHeader(object_id, key_id, segment_log2, fixed[FIXED_SIZE:], fixed, tuple(stanzas))


def seal_blob(
    payload: bytes,
    data_key: bytes,
    stanzas: tuple[Stanza, ...],
    *,
    object_id: bytes,
    key_id: bytes,
    serializer: str = STREAM_SERIALIZER,
    segment_log2: int = DEFAULT_SEGMENT_LOG2,
    salt: bytes | None = None,
) -> bytes:
    """Seal a payload into blob bytes in one call (tests, vectors, the keyset)."""
    header, payload_key = BlobHeader.new(
        data_key, object_id, key_id, stanzas, segment_log2=segment_log2, salt=salt
    )
    cipher = header.cipher(payload_key)
    return seal_segments(payload, cipher, header.encode() + seal_descriptor(cipher, serializer))


def open_blob(
    blob: bytes,
    unwrap: Callable[[bytes, tuple[Stanza, ...]], bytes],
    *,
    object_id: bytes,
) -> tuple[str, bytes]:
    """Verify and decrypt blob bytes: ``(serializer name, payload)``. ``unwrap(key_id,
    stanzas)`` returns the data key."""
    source = io.BytesIO(blob)
    header = read_header(source)
    if not hmac.compare_digest(header.object_id, object_id):
        raise IntegrityError()
    cipher = header.cipher(header.payload_key(unwrap(header.key_id, header.stanzas)))
    name = open_descriptor(cipher, read_exact(source, DESCRIPTOR_SIZE))
    _, payload = open_segments(source, len(blob) - source.tell(), cipher)
    return name, payload
