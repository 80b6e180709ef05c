"""The plaintext inside a blob: which serializer wrote it, then its bytes.

    payload = name length (1 byte) || serializer name (ascii) || serialized bytes

The name travels encrypted, so storage does not learn the value's type, and a reader picks the
right serializer (and refuses pickle unless opted in) without being told.

Large ``bytes`` values skip every copy on both sides. Writing, ``dump_parts`` hands the writer
msgpack's bin header and the caller's own buffer instead of a packed copy. Reading,
``split_point`` cuts the payload after that header, so ``envelope.decrypt_split`` decrypts the
value straight into the ``bytes`` object that ``read`` returns. The stored bytes are exactly
those of ``serializer.dumps(value)`` either way.
"""

from __future__ import annotations

from typing import Any

from sealed_results.errors import IntegrityError
from sealed_results.serializers import MsgpackSerializer, Serializer

__all__ = ["STREAM_SERIALIZER", "dump_parts", "frame", "load_parts", "split_point", "unframe"]

STREAM_SERIALIZER = "bytes"  # what write_stream stores: raw bytes, read back as bytes

_ZERO_COPY_MIN = 1 << 16  # below this a packed copy is cheaper than the extra bookkeeping
_BIN_WIDTHS = {0xC4: 1, 0xC5: 2, 0xC6: 4}  # msgpack bin 8/16/32: tag byte, then a length


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


def dump_parts(serializer: Serializer, value: Any) -> tuple[bytes, ...]:
    """``serializer.dumps(value)`` as parts that concatenate to exactly those bytes."""
    if (
        type(serializer) is MsgpackSerializer
        and type(value) is bytes
        and _ZERO_COPY_MIN <= len(value) < 1 << 32  # msgpack packs these as bin 32
    ):
        return b"\xc6" + len(value).to_bytes(4, "big"), value
    return (serializer.dumps(value),)


def _bin_header_size(head: bytes | memoryview, size: int) -> int:
    """The header length when ``head`` starts a msgpack bin value of exactly ``size`` bytes."""
    width = _BIN_WIDTHS.get(head[0]) if len(head) else None
    if width is None or len(head) < 1 + width:
        return 0
    length = int.from_bytes(head[1 : 1 + width], "big")
    return 1 + width if 1 + width + length == size else 0


def split_point(first: bytes | memoryview, total: int) -> int:
    """Where ``read`` cuts a payload of ``total`` bytes that starts with ``first``: after the
    framing, and after the bin header too when a msgpack payload is one ``bytes`` value.
    Malformed framing cuts at 0, and ``unframe`` refuses it once all is authenticated."""
    view = memoryview(first)  # slices of a view, not copies of a large first segment
    if not view or not 1 <= view[0] <= 64 or len(view) < 1 + view[0]:
        return 0
    at = 1 + view[0]
    if view[1:at].tobytes() == b"msgpack":
        at += _bin_header_size(view[at:], total - at)
    return at


def load_parts(serializer: Serializer, head: bytes | memoryview, data: bytes) -> Any:
    """``serializer.loads(head + data)``, where ``head`` is what ``split_point`` left after the
    framing: nothing, or the bin header of a msgpack ``bytes`` value, which is ``data``."""
    if not head:
        return serializer.loads(data)
    size = len(head) + len(data)
    if type(serializer) is MsgpackSerializer and _bin_header_size(head, size) == len(head):
        return data
    return serializer.loads(bytes(head) + data)
