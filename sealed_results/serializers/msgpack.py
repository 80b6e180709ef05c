"""The msgpack serializer (the default): compact, exact, and with extension types.

msgpack extension codes
-----------------------
Values msgpack has no native type for travel as extension types. The codes are part of the
stored format: payloads written by any release must stay readable, so a code is never
renumbered or reused. Add new types under new codes.

====  =========================================  ==============================================
code  type                                       payload
====  =========================================  ==============================================
1     int outside [-2**63, 2**64)                big-endian two's complement, minimal length
2     tuple                                      msgpack array of the items
3     set                                        msgpack array of the items
4     frozenset                                  msgpack array of the items
5     bytearray                                  the raw bytes
6     complex                                    little-endian float64 real, float64 imag
7     datetime.datetime                          [year, month, day, hour, minute, second,
                                                 microsecond, fold, tz]
8     datetime.date                              [year, month, day]
9     datetime.time                              [hour, minute, second, microsecond, fold, tz]
10    datetime.timedelta                         [days, seconds, microseconds]
11    decimal.Decimal                            ascii ``str(value)`` (keeps NaN, -0, exponent)
12    uuid.UUID                                  the 16 bytes
13    pathlib paths                              [kind, str(path)]; kind 0 PurePosixPath,
                                                 1 PureWindowsPath, 2 PosixPath, 3 WindowsPath
32    numpy.ndarray                              [dtype.str, shape, C-order bytes]
33    numpy scalar (numpy.generic)               [dtype.str, bytes]
34    pandas.DataFrame                           [index, columns, [column, ...]]
35    pandas.Series                              [index, name, column]
36    pandas.Index (any subclass pandas makes)   index
====  =========================================  ==============================================

``[...]`` is a msgpack array packed as the payload; its items may be extension values in turn.
``tz`` is None (naive), ``[0, utc offset in microseconds, name or None]`` for a fixed-offset
``datetime.timezone``, or ``[1, key]`` for a ``zoneinfo.ZoneInfo``. Codes 14-31 are reserved
for more standard-library types and 37-63 for more third-party ones; negative codes belong to
the msgpack spec. The numpy and pandas encodings are described in ``msgpack_ext``.

Reading is bounded: values nest at most ``MAX_DEPTH`` levels (see ``base``), checked before a
set is hashed or a nested payload is decoded, and nested extension payloads are decoded by
heap-allocated unpackers rather than by ``msgpack.unpackb``, whose 40 KiB context sits on the C
stack: one call per level would crash a reader in a thread with a small stack.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import struct
import uuid
import zoneinfo
from collections.abc import Callable
from pathlib import PosixPath, PurePath, PurePosixPath, PureWindowsPath, WindowsPath
from typing import Any

import msgpack

from sealed_results.errors import SerializationError
from sealed_results.serializers import msgpack_ext
from sealed_results.serializers.base import (
    MAX_DEPTH,
    PICKLE_HINT,
    BytesLike,
    Serializer,
    refusal,
    too_deep,
    type_name,
)

__all__ = ["MALFORMED", "MsgpackSerializer"]

MALFORMED = "the payload is not valid msgpack for this format"

_BIGINT, _TUPLE, _SET, _FROZENSET, _BYTEARRAY, _COMPLEX = 1, 2, 3, 4, 5, 6
_DATETIME, _DATE, _TIME, _TIMEDELTA, _DECIMAL, _UUID, _PATH = 7, 8, 9, 10, 11, 12, 13

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_COMPLEX_STRUCT = struct.Struct("<dd")
_PathTypes = tuple[type[PurePath], ...]
_PATH_KINDS: _PathTypes = (PurePosixPath, PureWindowsPath, PosixPath, WindowsPath)
# A concrete path of the other OS cannot be instantiated here; its pure twin keeps the text.
_PATH_DECODE: _PathTypes = (PurePosixPath, PureWindowsPath, PosixPath, PureWindowsPath)
if os.name == "nt":
    _PATH_DECODE = (PurePosixPath, PureWindowsPath, PurePosixPath, WindowsPath)

# Zero-copy bytes: below this a packed copy is cheaper than the extra bookkeeping.
_ZERO_COPY_MIN = 1 << 16
_BIN_WIDTHS = {0xC4: 1, 0xC5: 2, 0xC6: 4}  # msgpack bin 8/16/32: tag byte, then a length

# Types the packer takes as they are, exactly as _to_native would leave them, and the only
# leaves the unpacker makes: a list or dict holding only these needs no rebuilt copy and no
# depth walk. (An int out of range reaches _backstop, which makes the same extension value
# _to_native would.) Checked with map(type, ...) at C speed.
_NATIVE_LEAVES = frozenset({str, float, bool, bytes, int, type(None)})


# -- writing ---------------------------------------------------------------------------------


def _pack(native: Any) -> bytes:
    # strict_types: a subclass (IntEnum, a str subclass, OrderedDict...) must not pass as its
    # base type and lose its identity silently; everything reaching the packer is already
    # native, so ``default`` only fires for an int out of msgpack's range (which _to_native
    # may leave in place, see _NATIVE_LEAVES) or what _to_native let through by mistake.
    packer = msgpack.Packer(strict_types=True, datetime=False, default=_backstop)
    packed: bytes = packer.pack(native)
    return packed


def _backstop(value: Any) -> Any:
    if type(value) is int:  # out of msgpack's range: the same extension _to_native makes
        return _bigint(value)
    raise refusal("msgpack", value)


def _tz_to_native(tz: dt.tzinfo | None, owner: Any) -> Any:
    if tz is None:
        return None
    if type(tz) is dt.timezone:
        offset = tz.utcoffset(None)
        name = tz.tzname(None)
        # Only an explicit name is kept: the default one is derived from the offset anyway.
        explicit = None if name == dt.timezone(offset).tzname(None) else name
        return [0, offset // dt.timedelta(microseconds=1), explicit]
    if type(tz) is zoneinfo.ZoneInfo and tz.key is not None:
        return [1, tz.key]
    raise SerializationError(
        f"msgpack cannot encode {type(owner).__name__} values whose tzinfo is of type "
        f"{type_name(tz)!r}; use datetime.timezone or zoneinfo.ZoneInfo, or {PICKLE_HINT}"
    )


def _ext(code: int, native: Any) -> msgpack.ExtType:
    return msgpack.ExtType(code, _pack(native))


def _bigint(value: int) -> msgpack.ExtType:
    return msgpack.ExtType(_BIGINT, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _datetime(value: dt.datetime) -> msgpack.ExtType:
    fields = [value.year, value.month, value.day, value.hour, value.minute, value.second]
    tz = _tz_to_native(value.tzinfo, value)
    return _ext(_DATETIME, [*fields, value.microsecond, value.fold, tz])


def _time(value: dt.time) -> msgpack.ExtType:
    tz = _tz_to_native(value.tzinfo, value)
    fields = [value.hour, value.minute, value.second, value.microsecond, value.fold, tz]
    return _ext(_TIME, fields)


def _path(value: PurePath) -> msgpack.ExtType:
    return _ext(_PATH, [_PATH_KINDS.index(type(value)), str(value)])


# Values that are one extension value each and do not nest (no depth of their own).
_SCALAR_ENCODERS: dict[type, Callable[[Any], msgpack.ExtType]] = {
    bytearray: lambda v: msgpack.ExtType(_BYTEARRAY, bytes(v)),
    complex: lambda v: msgpack.ExtType(_COMPLEX, _COMPLEX_STRUCT.pack(v.real, v.imag)),
    dt.datetime: _datetime,
    dt.date: lambda v: _ext(_DATE, [v.year, v.month, v.day]),
    dt.time: _time,
    dt.timedelta: lambda v: _ext(_TIMEDELTA, [v.days, v.seconds, v.microseconds]),
    decimal.Decimal: lambda v: msgpack.ExtType(_DECIMAL, str(v).encode("ascii")),
    uuid.UUID: lambda v: msgpack.ExtType(_UUID, v.bytes),
    **dict.fromkeys(_PATH_KINDS, _path),
}
_COLLECTION_CODES: dict[type, int] = {tuple: _TUPLE, set: _SET, frozenset: _FROZENSET}


def _items(values: Any, room: int) -> list[Any]:
    items = list(values)
    if _NATIVE_LEAVES.issuperset(map(type, items)):
        return items
    return [item if type(item) in _NATIVE_LEAVES else _to_native(item, room) for item in items]


def _to_native(value: Any, room: int) -> Any:
    """``value`` rebuilt from msgpack-native types and ExtTypes only, nesting at most ``room``
    more levels.

    The packer's ``default`` hook cannot do this job alone: msgpack packs bytearray and
    memoryview natively, even with strict_types, so they would come back as bytes.
    """
    cls = type(value)
    if cls is str or cls is float or cls is bool or cls is bytes or value is None:
        return value
    if cls is int:
        return value if _INT_MIN <= value <= _INT_MAX else _bigint(value)
    if cls is list or cls is dict or cls in _COLLECTION_CODES:
        if room == 0:  # a self-reference ends here too, instead of in a RecursionError
            raise too_deep("msgpack", reading=False)
        if cls is list:
            return value if _NATIVE_LEAVES.issuperset(map(type, value)) else _items(value, room - 1)
        if cls is dict:
            if _NATIVE_LEAVES.issuperset(map(type, value)):  # the usual case: str keys
                if _NATIVE_LEAVES.issuperset(map(type, value.values())):
                    return value
                return dict(zip(value, _items(value.values(), room - 1), strict=True))
            return {
                _to_native(key, room - 1): _to_native(item, room - 1) for key, item in value.items()
            }
        return _ext(_COLLECTION_CODES[cls], _items(value, room - 1))
    encoder = _SCALAR_ENCODERS.get(cls)
    if encoder is not None:
        return encoder(value)
    extension = msgpack_ext.encode(value)
    if extension is not None:
        code, native = extension
        return _ext(code, _to_native(native, room))  # ``native`` is a list: it takes a level
    raise refusal("msgpack", value)


def _encode_failure(exc: Exception, value: Any) -> str:
    if isinstance(exc, UnicodeEncodeError):
        return f"msgpack cannot encode str values with lone surrogates; {PICKLE_HINT}"
    if isinstance(exc, ValueError):  # the packer's own limits
        return "msgpack cannot encode parts of 4 GiB or more"
    return f"msgpack failed to encode a value of type {type_name(value)!r}"


# -- reading ---------------------------------------------------------------------------------


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
    if type(kind) is not int or not 0 <= kind < len(_PATH_DECODE) or type(text) is not str:
        raise TypeError("malformed path")
    return _PATH_DECODE[kind](text)


def _decode_decimal(data: bytes) -> decimal.Decimal:
    # Decimal() parses surrounding whitespace and underscores too; our writer never emits them.
    if not data.isascii() or data != data.strip() or b"_" in data:
        raise ValueError("malformed decimal")
    return decimal.Decimal(data.decode("ascii"))


# Extension payloads that are raw bytes, not msgpack.
_RAW_DECODERS: dict[int, Callable[[bytes], Any]] = {
    _BIGINT: lambda d: int.from_bytes(d, "big", signed=True),
    _BYTEARRAY: bytearray,
    _COMPLEX: lambda d: complex(*_COMPLEX_STRUCT.unpack(d)),
    _DECIMAL: _decode_decimal,
    _UUID: lambda d: uuid.UUID(bytes=d),
}
# Extension payloads that are msgpack holding no extension values: decoding one cannot recurse.
_LEAF_DECODERS: dict[int, Callable[[Any], Any]] = {
    _DATETIME: _decode_datetime,
    _DATE: lambda p: dt.date(*p),
    _TIME: _decode_time,
    _TIMEDELTA: lambda p: dt.timedelta(*p),
    _PATH: _decode_path,
    msgpack_ext.NDARRAY: lambda p: msgpack_ext.decode(msgpack_ext.NDARRAY, p),
    msgpack_ext.SCALAR: lambda p: msgpack_ext.decode(msgpack_ext.SCALAR, p),
}


# Extension payloads that may hold any values, extension values included.
def _pandas_decoder(code: int) -> Callable[[Any], Any]:
    return lambda plain: msgpack_ext.decode(code, plain)


_CONTAINER_DECODERS: dict[int, Callable[[Any], Any]] = {
    _TUPLE: tuple,
    _SET: set,
    _FROZENSET: frozenset,
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


class _Reader:
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
                if _NATIVE_LEAVES.issuperset(map(type, value)):
                    items = value.values()
                else:
                    items = [*value, *value.values()]
            if _NATIVE_LEAVES.issuperset(map(type, items)):
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


def _bin_header_size(head: bytes | memoryview, size: int) -> int:
    """The header length when ``head`` starts a msgpack bin value of exactly ``size`` bytes."""
    width = _BIN_WIDTHS.get(head[0]) if len(head) else None
    if width is None or len(head) < 1 + width:
        return 0
    length = int.from_bytes(head[1 : 1 + width], "big")
    return 1 + width if 1 + width + length == size else 0


class MsgpackSerializer(Serializer):
    """Compact and exact: values come back with the same types, containers included.

    Supported: None, bool, int (any size), float, str, bytes, bytearray, list, tuple, dict
    (any supported hashable keys), set, frozenset, complex, datetime/date/time/timedelta
    (naive, ``datetime.timezone`` or ``zoneinfo.ZoneInfo``), Decimal, UUID, pathlib paths, and
    numpy arrays and scalars and pandas DataFrame/Series/Index when those are installed. Exact
    types only: subclasses (IntEnum, OrderedDict, NamedTuple...) are refused rather than
    silently turned into their base type. str values with lone surrogates are refused (msgpack
    strings are UTF-8). Values nest at most ``MAX_DEPTH`` levels.

    A large ``bytes`` value skips every copy: ``dump_parts`` hands the writer msgpack's bin
    header and the caller's own buffer, and ``split_point``/``load_parts`` let the reader
    decrypt the value straight into the ``bytes`` object it returns.
    """

    name = "msgpack"

    def dumps(self, value: Any) -> bytes:
        try:
            return _pack(_to_native(value, MAX_DEPTH))
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(_encode_failure(exc, value)) from exc

    def loads(self, data: BytesLike) -> Any:
        reader = _Reader()
        try:
            value = msgpack.unpackb(data, strict_map_key=False, ext_hook=reader.ext_hook, raw=False)
            reader.height(value)
            return value
        except SerializationError:
            raise
        except msgpack.StackError as exc:  # arrays and maps nested over 1024 deep
            raise too_deep("msgpack", reading=True) from exc
        except Exception as exc:  # malformed input surfaces as many exception types
            raise SerializationError(MALFORMED) from exc
        finally:
            reader.close()

    def dump_parts(self, value: Any) -> tuple[bytes | memoryview, ...]:
        if type(value) is bytes and _ZERO_COPY_MIN <= len(value) < 1 << 32:
            return b"\xc6" + len(value).to_bytes(4, "big"), value  # bin 32 header, then value
        return (self.dumps(value),)

    def split_point(self, first: memoryview, total: int) -> int:
        # The header only: the tail is then the bytes value itself, decrypted in place.
        return _bin_header_size(first, total)

    def load_parts(self, head: bytes | memoryview, rest: bytes) -> Any:
        size = len(head) + len(rest)
        if head and type(rest) is bytes and _bin_header_size(head, size) == len(head):
            return rest  # head is exactly a bin header and rest is all of the value
        return super().load_parts(head, rest)
