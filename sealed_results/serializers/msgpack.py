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
import uuid
import zoneinfo
from collections.abc import Callable
from pathlib import PurePath
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
from sealed_results.serializers.msgpack_codes import (
    BIGINT,
    BYTEARRAY,
    COMPLEX,
    COMPLEX_STRUCT,
    DATE,
    DATETIME,
    DECIMAL,
    FROZENSET,
    INT_MAX,
    INT_MIN,
    NATIVE_LEAVES,
    PATH,
    PATH_KINDS,
    SET,
    TIME,
    TIMEDELTA,
    TUPLE,
    UUID,
)
from sealed_results.serializers.msgpack_read import Reader

__all__ = ["MALFORMED", "MsgpackSerializer"]

MALFORMED = "the payload is not valid msgpack for this format"

# Zero-copy bytes: below this a packed copy is cheaper than the extra bookkeeping.
_ZERO_COPY_MIN = 1 << 16
_BIN_WIDTHS = {0xC4: 1, 0xC5: 2, 0xC6: 4}  # msgpack bin 8/16/32: tag byte, then a length

# -- writing ---------------------------------------------------------------------------------


def _pack(native: Any) -> bytes:
    # strict_types: a subclass (IntEnum, a str subclass, OrderedDict...) must not pass as its
    # base type and lose its identity silently; everything reaching the packer is already
    # native, so ``default`` only fires for an int out of msgpack's range (which _to_native
    # may leave in place, see NATIVE_LEAVES) or what _to_native let through by mistake.
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
    return msgpack.ExtType(BIGINT, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _datetime(value: dt.datetime) -> msgpack.ExtType:
    fields = [value.year, value.month, value.day, value.hour, value.minute, value.second]
    tz = _tz_to_native(value.tzinfo, value)
    return _ext(DATETIME, [*fields, value.microsecond, value.fold, tz])


def _time(value: dt.time) -> msgpack.ExtType:
    tz = _tz_to_native(value.tzinfo, value)
    fields = [value.hour, value.minute, value.second, value.microsecond, value.fold, tz]
    return _ext(TIME, fields)


def _path(value: PurePath) -> msgpack.ExtType:
    return _ext(PATH, [PATH_KINDS.index(type(value)), str(value)])


# Values that are one extension value each and do not nest (no depth of their own).
_SCALAR_ENCODERS: dict[type, Callable[[Any], msgpack.ExtType]] = {
    bytearray: lambda v: msgpack.ExtType(BYTEARRAY, bytes(v)),
    complex: lambda v: msgpack.ExtType(COMPLEX, COMPLEX_STRUCT.pack(v.real, v.imag)),
    dt.datetime: _datetime,
    dt.date: lambda v: _ext(DATE, [v.year, v.month, v.day]),
    dt.time: _time,
    dt.timedelta: lambda v: _ext(TIMEDELTA, [v.days, v.seconds, v.microseconds]),
    decimal.Decimal: lambda v: msgpack.ExtType(DECIMAL, str(v).encode("ascii")),
    uuid.UUID: lambda v: msgpack.ExtType(UUID, v.bytes),
    **dict.fromkeys(PATH_KINDS, _path),
}
_COLLECTION_CODES: dict[type, int] = {tuple: TUPLE, set: SET, frozenset: FROZENSET}


def _items(values: Any, room: int) -> list[Any]:
    items = list(values)
    if NATIVE_LEAVES.issuperset(map(type, items)):
        return items
    return [item if type(item) in NATIVE_LEAVES else _to_native(item, room) for item in items]


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
        return value if INT_MIN <= value <= INT_MAX else _bigint(value)
    if cls is list or cls is dict or cls in _COLLECTION_CODES:
        if room == 0:  # a self-reference ends here too, instead of in a RecursionError
            raise too_deep("msgpack", reading=False)
        if cls is list:
            return value if NATIVE_LEAVES.issuperset(map(type, value)) else _items(value, room - 1)
        if cls is dict:
            if NATIVE_LEAVES.issuperset(map(type, value)):  # the usual case: str keys
                if NATIVE_LEAVES.issuperset(map(type, value.values())):
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
        reader = Reader()
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
