"""The plaintext inside a blob: which serializer wrote it, then its bytes.

    payload = name length (1 byte) || serializer name (ascii) || serialized bytes

The name travels encrypted, so storage does not learn the value's type, and a reader picks the
right serializer (and refuses pickle unless opted in) without being told.
"""

from __future__ import annotations

from sealed_results.errors import IntegrityError

__all__ = ["STREAM_SERIALIZER", "frame", "unframe"]

STREAM_SERIALIZER = "bytes"  # what write_stream stores: raw bytes, read back as bytes


def frame(serializer_name: str) -> bytes:
    name = serializer_name.encode("ascii")
    if not 1 <= len(name) <= 64:
        raise ValueError("serializer names are 1 to 64 ascii characters")
    return bytes([len(name)]) + name


def unframe(payload: bytearray | bytes) -> tuple[str, memoryview]:
    view = memoryview(payload)
    if not view or not 1 <= view[0] <= 64 or len(view) < 1 + view[0]:
        raise IntegrityError()
    try:
        name = bytes(view[1 : 1 + view[0]]).decode("ascii")
    except UnicodeDecodeError:
        raise IntegrityError() from None
    return name, view[1 + view[0] :]
