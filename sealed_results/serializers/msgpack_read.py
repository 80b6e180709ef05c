"""Reading msgpack payloads: extension values decoded, and nesting bounded without recursion
on the C stack.

Plain arrays and maps are unpacked by msgpack's own iterative C code. Extension values that
hold containers (tuples, sets, numpy and pandas encodings) are unpacked from ``ext_hook``, which
would nest a C-level ``unpackb`` per level and can crash a thread with a small stack: here they
go through reused ``Unpacker`` objects instead, and every value is checked against
``MAX_DEPTH`` before a set hashes its items.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
import zoneinfo
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import msgpack

from sealed_results.errors import SerializationError
from sealed_results.serializers import msgpack_ext
from sealed_results.serializers.base import MAX_DEPTH, too_deep
from sealed_results.serializers.msgpack_codes import (
    BIGINT,
    BYTEARRAY,
    COMPLEX,
    COMPLEX_STRUCT,
    DATE,
    DATETIME,
    DECIMAL,
    FROZENSET,
    NATIVE_LEAVES,
    PATH,
    PATH_DECODE,
    SET,
    TIME,
    TIMEDELTA,
    TUPLE,
    UUID,
)

__all__ = ["Reader"]


def _tz_from_native(spec: Any) -> dt.tzinfo | None:
    if spec is None:
        return None
    if spec[0] == 0:
        offset = dt.timedelta(microseconds=spec[1])
        return dt.timezone(offset) if spec[2] is None else dt.timezone(offset, spec[2])
    if spec[0] == 1:
        return zoneinfo.ZoneInfo(spec[1])
    raise ValueError("unknown tz kind")


def _decode_datetime(plain: Any) -> dt.datetime:
    year, month, day, hour, minute, second, microsecond, fold, tz = plain
    tzinfo = _tz_from_native(tz)
    return dt.datetime(year, month, day, hour, minute, second, microsecond, tzinfo, fold=fold)


def _decode_time(plain: Any) -> dt.time:
    hour, minute, second, microsecond, fold, tz = plain
    return dt.time(hour, minute, second, microsecond, _tz_from_native(tz), fold=fold)


def _decode_path(plain: Any) -> PurePath:
    kind, text = plain
    if type(kind) is not int or not 0 <= kind < len(PATH_DECODE) or type(text) is not str:
        raise TypeError("malformed path")
    return PATH_DECODE[kind](text)


def _decode_decimal(data: bytes) -> decimal.Decimal:
    # Decimal() parses surrounding whitespace and underscores too; our writer never emits them.
    if not data.isascii() or data != data.strip() or b"_" in data:
        raise ValueError("malformed decimal")
    return decimal.Decimal(data.decode("ascii"))


# Extension payloads that are raw bytes, not msgpack.
_RAW_DECODERS: dict[int, Callable[[bytes], Any]] = {
    BIGINT: lambda d: int.from_bytes(d, "big", signed=True),
    BYTEARRAY: bytearray,
    COMPLEX: lambda d: complex(*COMPLEX_STRUCT.unpack(d)),
    DECIMAL: _decode_decimal,
    UUID: lambda d: uuid.UUID(bytes=d),
}
# Extension payloads that are msgpack holding no extension values: decoding one cannot recurse.
_LEAF_DECODERS: dict[int, Callable[[Any], Any]] = {
    DATETIME: _decode_datetime,
    DATE: lambda p: dt.date(*p),
    TIME: _decode_time,
    TIMEDELTA: lambda p: dt.timedelta(*p),
    PATH: _decode_path,
    msgpack_ext.NDARRAY: lambda p: msgpack_ext.decode(msgpack_ext.NDARRAY, p),
    msgpack_ext.SCALAR: lambda p: msgpack_ext.decode(msgpack_ext.SCALAR, p),
}


# Extension payloads that may hold any values, extension values included.
def _pandas_decoder(code: int) -> Callable[[Any], Any]:
    return lambda plain: msgpack_ext.decode(code, plain)


_CONTAINER_DECODERS: dict[int, Callable[[Any], Any]] = {
    TUPLE: tuple,
    SET: set,
    FROZENSET: frozenset,
    **{
        code: _pandas_decoder(code)
        for code in msgpack_ext.CODES - {msgpack_ext.NDARRAY, msgpack_ext.SCALAR}
    },
}
# Codes whose values count as levels, exactly as _to_native counts them when writing.
_COUNTED = frozenset({*_CONTAINER_DECODERS, *msgpack_ext.CODES})
_POOLED_MAX = 1 << 20  # an unpacker that held a larger payload is dropped, freeing its buffer


def _no_extensions(code: int, data: bytes) -> Any:
    raise ValueError("an extension value where none belongs")


class Reader:
    """The state of one ``loads``: nesting so far, the depth of each value built from an
    extension, and unpackers to reuse (one per nesting level in use)."""

    __slots__ = ("free", "kept", "nesting")

    def __init__(self) -> None:
        self.nesting = 0
        # id -> (levels, value): the value is held so its id cannot be reused meanwhile.
        self.kept: dict[int, tuple[int, Any]] = {}
        self.free: list[msgpack.Unpacker] = []

    def height(self, value: Any, room: int = MAX_DEPTH) -> int:
        """How many levels ``value`` nests; too_deep as soon as it exceeds ``room``."""
        cls = type(value)
        if cls is list or cls is dict:
            if room == 0:
                raise too_deep("msgpack", reading=True)
            items: Any = value
            if cls is dict:
                if NATIVE_LEAVES.issuperset(map(type, value)):
                    items = value.values()
                else:
                    items = [*value, *value.values()]
            if NATIVE_LEAVES.issuperset(map(type, items)):
                return 1
            return 1 + max(self.height(item, room - 1) for item in items)
        kept = self.kept.get(id(value))
        if kept is None:
            return 0
        if kept[0] > room:
            raise too_deep("msgpack", reading=True)
        return kept[0]

    def ext_hook(self, code: int, data: bytes) -> Any:
        raw = _RAW_DECODERS.get(code)
        if raw is not None:
            return raw(data)
        leaf = _LEAF_DECODERS.get(code)
        if leaf is not None:
            # unpackb's context lives on the C stack, but here it cannot nest any further.
            plain = msgpack.unpackb(data, strict_map_key=False, ext_hook=_no_extensions, raw=False)
            if code not in _COUNTED:  # datetime & co: scalar fields, refused if anything else
                return leaf(plain)
            return self._keep(code, self.height(plain), leaf(plain))
        container = _CONTAINER_DECODERS.get(code)
        if container is None:
            raise SerializationError(
                "the msgpack payload uses an extension type this release does not know "
                "(written by a newer sealed-results?)"
            )
        plain = self._nested(data)
        levels = self.height(plain)  # before set() hashes items that might nest too deeply
        return self._keep(code, levels, container(plain))

    def _keep(self, code: int, levels: int, value: Any) -> Any:
        if code in _COUNTED:
            self.kept[id(value)] = (levels, value)
        return value

    def _nested(self, data: bytes) -> Any:
        self.nesting += 1
        try:
            if self.nesting > MAX_DEPTH:  # each nesting is a counted level of the value
                raise too_deep("msgpack", reading=True)
            if self.free:
                unpacker = self.free.pop()
            else:
                unpacker = msgpack.Unpacker(
                    ext_hook=self.ext_hook, strict_map_key=False, raw=False, max_buffer_size=0
                )
            start = unpacker.tell()
            unpacker.feed(data)
            plain = unpacker.unpack()
            if unpacker.tell() - start != len(data):
                raise ValueError("trailing data")
            # Only a cleanly finished unpacker is reused: a failed one may hold leftovers.
            if len(data) <= _POOLED_MAX:
                self.free.append(unpacker)
            return plain
        finally:
            self.nesting -= 1

    def close(self) -> None:
        self.free.clear()  # the unpackers refer back to ext_hook: break the cycle now
        self.kept.clear()
