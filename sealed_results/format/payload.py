"""The payload descriptor: which serializer wrote a blob's payload.

    descriptor = AES-256-GCM(payload key, nonce = 0 (11 bytes) || 0x02, aad = header,
                             name length (1) || serializer name (ascii) || zero padding)
                 -- 65 bytes of plaintext, 81 stored

It sits between the key section and the segments, sealed under the payload key with a nonce no
segment uses. The name travels encrypted, so storage does not learn the value's type, and a
reader picks the right serializer (and refuses pickle unless opted in) before it decrypts a
byte of payload. Keeping it out of the segments lines the payload up with them: a reader's
segment-sized reads are whole segments, decrypted in place with no copy.
"""

from __future__ import annotations

from sealed_results.errors import IntegrityError
from sealed_results.format.segments import TAG_SIZE, SegmentCipher

__all__ = [
    "DESCRIPTOR_SIZE",
    "MAX_NAME_LEN",
    "STREAM_SERIALIZER",
    "open_descriptor",
    "seal_descriptor",
]

MAX_NAME_LEN = 64
_PLAIN_SIZE = 1 + MAX_NAME_LEN
DESCRIPTOR_SIZE = _PLAIN_SIZE + TAG_SIZE
STREAM_SERIALIZER = "bytes"  # what write_stream stores: raw bytes, read back as bytes


def seal_descriptor(cipher: SegmentCipher, serializer_name: str) -> bytes:
    name = serializer_name.encode("ascii")
    if not 1 <= len(name) <= MAX_NAME_LEN:
        raise ValueError("serializer names are 1 to 64 ascii characters")
    plain = bytes([len(name)]) + name
    return cipher.seal_descriptor(plain + bytes(_PLAIN_SIZE - len(plain)))


def open_descriptor(cipher: SegmentCipher, sealed: bytes) -> str:
    """The serializer name; IntegrityError for anything that does not verify or parse."""
    if len(sealed) != DESCRIPTOR_SIZE:
        raise IntegrityError()
    plain = cipher.open_descriptor(sealed)
    length = plain[0]
    if not 1 <= length <= MAX_NAME_LEN or any(plain[1 + length :]):
        raise IntegrityError()
    try:
        return plain[1 : 1 + length].decode("ascii")
    except UnicodeDecodeError:
        raise IntegrityError() from None
