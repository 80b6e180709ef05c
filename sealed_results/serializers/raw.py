"""The ``bytes`` serializer: bytes stored as they are (what ``write_stream`` stores)."""

from __future__ import annotations

from typing import Any

from sealed_results.errors import SerializationError
from sealed_results.serializers.base import BytesLike, Serializer, type_name

__all__ = ["RawBytesSerializer"]


class RawBytesSerializer(Serializer):
    """Bytes stored as they are: bytes, bytearray or memoryview in, ``bytes`` out.

    The serialized bytes are the value itself: with no cut (``split_point`` 0) the reader's tail
    is all of it, and ``load_parts`` returns that ``bytes`` object without a copy."""

    name = "bytes"

    def dumps(self, value: Any) -> bytes:
        if type(value) is bytes:
            return value
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise SerializationError(
            f"the bytes serializer only accepts bytes, bytearray or memoryview, not "
            f"{type_name(value)!r}; choose serializer='msgpack' for other values"
        )

    def loads(self, data: BytesLike) -> bytes:
        return bytes(data)

    def load_parts(self, head: bytes | memoryview, rest: bytes) -> bytes:
        if not head and type(rest) is bytes:
            return rest
        return bytes(head) + rest
