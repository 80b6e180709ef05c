"""Serializers: how a value becomes the plaintext bytes that get sealed, and back.

Every sealed payload records the ``name`` of the serializer that wrote it, so a reader picks the
right one without being told. ``msgpack`` is the default; ``json`` is for interop; ``bytes``
stores bytes as they are; ``pickle`` runs code on load and is only used on explicit opt-in.

Errors never quote the value (it may be secret plaintext): a refusal names the value's type,
and a decoding failure says only that the bytes do not decode.

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
the msgpack spec. The numpy and pandas encodings are described in ``_msgpack_ext``.
"""

from __future__ import annotations

import abc
import datetime as dt
import decimal
import json
import os
import pickle
import struct
import uuid
import zoneinfo
from collections.abc import Callable
from pathlib import PosixPath, PurePath, PurePosixPath, PureWindowsPath, WindowsPath
from typing import Any, ClassVar

import msgpack

from sealed_results import _msgpack_ext
from sealed_results.errors import SerializationError

__all__ = [
    "BUILTIN_SERIALIZERS",
    "JsonSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "RawBytesSerializer",
    "Serializer",
    "get_serializer",
]

BytesLike = bytes | bytearray | memoryview

_PICKLE_HINT = "choose serializer='pickle' (explicit opt-in, trusted readers only)"


def _type_name(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _refusal(format_name: str, value: Any) -> SerializationError:
    return SerializationError(
        f"{format_name} cannot encode values of type {_type_name(value)!r}; "
        f"convert it to supported types, or {_PICKLE_HINT}"
    )


class Serializer(abc.ABC):
    """Turns a value into bytes and back.

    ``name`` is stored inside every sealed payload, so it is a short ascii id that must never
    change once payloads exist. ``loads`` gets any bytes-like object (readers pass a
    ``memoryview`` of the decrypted plaintext to avoid a copy).
    """

    name: ClassVar[str]
    requires_opt_in: ClassVar[bool] = False

    @abc.abstractmethod
    def dumps(self, value: Any) -> bytes:
        """The bytes of ``value``; SerializationError if this serializer refuses it."""

    @abc.abstractmethod
    def loads(self, data: BytesLike) -> Any:
        """The value encoded in ``data``; SerializationError if it does not decode."""


# -- msgpack ---------------------------------------------------------------------------------

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
    raise _refusal("msgpack", value)


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
        f"{_type_name(tz)!r}; use datetime.timezone or zoneinfo.ZoneInfo, or {_PICKLE_HINT}"
    )


def _tz_from_native(spec: Any) -> dt.tzinfo | None:
    if spec is None:
        return None
    if spec[0] == 0:
        offset = dt.timedelta(microseconds=spec[1])
        return dt.timezone(offset) if spec[2] is None else dt.timezone(offset, spec[2])
    if spec[0] == 1:
        return zoneinfo.ZoneInfo(spec[1])
    raise ValueError("unknown tz kind")


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


_ENCODERS: dict[type, Callable[[Any], msgpack.ExtType]] = {
    tuple: lambda v: _ext(_TUPLE, [_to_native(x) for x in v]),
    set: lambda v: _ext(_SET, [_to_native(x) for x in v]),
    frozenset: lambda v: _ext(_FROZENSET, [_to_native(x) for x in v]),
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


# Types the packer takes as they are, exactly as _to_native would leave them: a list or dict
# holding only these needs no rebuilt copy. (An int out of range reaches _backstop, which
# makes the same extension value _to_native would.) Checked with map(type, ...) at C speed.
_NATIVE_LEAVES = frozenset({str, float, bool, bytes, int, type(None)})


def _to_native(value: Any) -> Any:
    """``value`` rebuilt from msgpack-native types and ExtTypes only.

    The packer's ``default`` hook cannot do this job alone: msgpack packs bytearray and
    memoryview natively, even with strict_types, so they would come back as bytes.
    """
    cls = type(value)
    if cls is str or cls is float or cls is bool or cls is bytes or value is None:
        return value
    if cls is int:
        return value if _INT_MIN <= value <= _INT_MAX else _bigint(value)
    if cls is list:
        if _NATIVE_LEAVES.issuperset(map(type, value)):
            return value
        return [item if type(item) in _NATIVE_LEAVES else _to_native(item) for item in value]
    if cls is dict:
        if _NATIVE_LEAVES.issuperset(map(type, value)):  # the usual case: str keys
            if _NATIVE_LEAVES.issuperset(map(type, value.values())):
                return value
            return {
                key: item if type(item) in _NATIVE_LEAVES else _to_native(item)
                for key, item in value.items()
            }
        return {_to_native(key): _to_native(item) for key, item in value.items()}
    encoder = _ENCODERS.get(cls)
    if encoder is not None:
        return encoder(value)
    extension = _msgpack_ext.encode(value)
    if extension is not None:
        code, native = extension
        return _ext(code, _to_native(native))
    raise _refusal("msgpack", value)


def _unpack(data: BytesLike) -> Any:
    return msgpack.unpackb(data, strict_map_key=False, ext_hook=_ext_hook, raw=False)


def _decode_datetime(data: bytes) -> dt.datetime:
    year, month, day, hour, minute, second, microsecond, fold, tz = _unpack(data)
    tzinfo = _tz_from_native(tz)
    return dt.datetime(year, month, day, hour, minute, second, microsecond, tzinfo, fold=fold)


def _decode_time(data: bytes) -> dt.time:
    hour, minute, second, microsecond, fold, tz = _unpack(data)
    return dt.time(hour, minute, second, microsecond, _tz_from_native(tz), fold=fold)


def _decode_path(data: bytes) -> PurePath:
    kind, text = _unpack(data)
    if type(kind) is not int or not 0 <= kind < len(_PATH_DECODE) or type(text) is not str:
        raise TypeError("malformed path")
    return _PATH_DECODE[kind](text)


def _decode_decimal(data: bytes) -> decimal.Decimal:
    # Decimal() parses surrounding whitespace and underscores too; our writer never emits them.
    if not data.isascii() or data != data.strip() or b"_" in data:
        raise ValueError("malformed decimal")
    return decimal.Decimal(data.decode("ascii"))


_DECODERS: dict[int, Callable[[bytes], Any]] = {
    _BIGINT: lambda d: int.from_bytes(d, "big", signed=True),
    _TUPLE: lambda d: tuple(_unpack(d)),
    _SET: lambda d: set(_unpack(d)),
    _FROZENSET: lambda d: frozenset(_unpack(d)),
    _BYTEARRAY: bytearray,
    _COMPLEX: lambda d: complex(*_COMPLEX_STRUCT.unpack(d)),
    _DATETIME: _decode_datetime,
    _DATE: lambda d: dt.date(*_unpack(d)),
    _TIME: _decode_time,
    _TIMEDELTA: lambda d: dt.timedelta(*_unpack(d)),
    _DECIMAL: _decode_decimal,
    _UUID: lambda d: uuid.UUID(bytes=d),
    _PATH: _decode_path,
}


def _ext_hook(code: int, data: bytes) -> Any:
    decoder = _DECODERS.get(code)
    if decoder is not None:
        return decoder(data)
    if code in _msgpack_ext.CODES:
        return _msgpack_ext.decode(code, _unpack(data))
    raise SerializationError(
        "the msgpack payload uses an extension type this release does not know "
        "(written by a newer sealed-results?)"
    )


def _encode_failure(exc: Exception, value: Any) -> str:
    if isinstance(exc, UnicodeEncodeError):
        return f"msgpack cannot encode str values with lone surrogates; {_PICKLE_HINT}"
    if isinstance(exc, RecursionError | ValueError):  # ValueError: the packer's own limits
        return "msgpack cannot encode values nested this deeply or parts of 4 GiB or more"
    return f"msgpack failed to encode a value of type {_type_name(value)!r}"


class MsgpackSerializer(Serializer):
    """Compact and exact: values come back with the same types, containers included.

    Supported: None, bool, int (any size), float, str, bytes, bytearray, list, tuple, dict
    (any supported hashable keys), set, frozenset, complex, datetime/date/time/timedelta
    (naive, ``datetime.timezone`` or ``zoneinfo.ZoneInfo``), Decimal, UUID, pathlib paths, and
    numpy arrays and scalars and pandas DataFrame/Series/Index when those are installed. Exact
    types only: subclasses (IntEnum, OrderedDict, NamedTuple...) are refused rather than
    silently turned into their base type. str values with lone surrogates are refused (msgpack
    strings are UTF-8).
    """

    name = "msgpack"

    def dumps(self, value: Any) -> bytes:
        try:
            return _pack(_to_native(value))
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(_encode_failure(exc, value)) from exc

    def loads(self, data: BytesLike) -> Any:
        try:
            return _unpack(data)
        except SerializationError:
            raise
        except Exception as exc:  # malformed input surfaces as many exception types
            raise SerializationError("the payload is not valid msgpack for this format") from exc


# -- json, pickle, raw bytes -----------------------------------------------------------------


def _refuse_json(value: Any) -> Any:
    raise _refusal("JSON", value)


def _reject_constant(_: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


class JsonSerializer(Serializer):
    """Strict, compact UTF-8 JSON for readers in other languages.

    Only what JSON can say: None, bool, int, float (finite), str, list and dict. Lossy the way
    ``json`` always is: tuples come back as lists, and int/float/bool/None dict keys come back
    as str. NaN and infinities are refused, as is any other type (subclasses of the types above
    are written as their base type, like ``json`` does).
    """

    name = "json"

    def dumps(self, value: Any) -> bytes:
        try:
            text = json.dumps(
                value,
                allow_nan=False,
                separators=(",", ":"),
                ensure_ascii=False,
                default=_refuse_json,
            )
            return text.encode("utf-8")
        except SerializationError:
            raise
        except TypeError as exc:  # raised by json only for dict keys of other types
            raise SerializationError(
                f"JSON object keys must be str, int, float, bool or None; {_PICKLE_HINT}"
            ) from exc
        except RecursionError as exc:
            raise SerializationError("JSON cannot encode a value nested this deeply") from exc
        except UnicodeEncodeError as exc:
            raise SerializationError("JSON cannot encode str values with lone surrogates") from exc
        except ValueError as exc:
            # json's messages quote the offending float; only our fixed text goes out.
            reason = str(exc).lower()
            if "circular" in reason:
                message = "JSON cannot encode a value that contains itself"
            elif "float" in reason:
                message = "JSON cannot encode NaN or infinite floats; use serializer='msgpack'"
            else:
                message = "JSON cannot encode ints this large; use serializer='msgpack'"
            raise SerializationError(message) from exc

    def loads(self, data: BytesLike) -> Any:
        try:
            return json.loads(str(data, "utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise SerializationError("the payload is not valid UTF-8 JSON") from exc


class PickleSerializer(Serializer):
    """Any picklable value, via ``pickle`` protocol 5.

    Unpickling runs code chosen by whoever wrote the bytes, so this serializer is only used when
    the user opts in explicitly (``requires_opt_in``), and sealed-results only ever unpickles
    payloads that have been decrypted and authenticated with the user's key: a store or an
    orchestrator cannot substitute bytes of its own. Only opt in when every writer is trusted.
    """

    name = "pickle"
    requires_opt_in = True

    def dumps(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=5)
        except Exception as exc:  # pickle raises PicklingError, TypeError, AttributeError...
            raise SerializationError(
                f"pickle cannot encode this value of type {_type_name(value)!r} (or something "
                "inside it); the chained exception names the part that failed"
            ) from exc

    def loads(self, data: BytesLike) -> Any:
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise SerializationError("the payload is not a loadable pickle") from exc


class RawBytesSerializer(Serializer):
    """Bytes stored as they are: bytes, bytearray or memoryview in, ``bytes`` out."""

    name = "bytes"

    def dumps(self, value: Any) -> bytes:
        if type(value) is bytes:
            return value
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise SerializationError(
            f"the bytes serializer only accepts bytes, bytearray or memoryview, not "
            f"{_type_name(value)!r}; choose serializer='msgpack' for other values"
        )

    def loads(self, data: BytesLike) -> bytes:
        return bytes(data)


BUILTIN_SERIALIZERS: dict[str, type[Serializer]] = {
    "msgpack": MsgpackSerializer,
    "json": JsonSerializer,
    "pickle": PickleSerializer,
    "bytes": RawBytesSerializer,
}


def get_serializer(name_or_instance: str | Serializer) -> Serializer:
    """The serializer for a name in BUILTIN_SERIALIZERS, or the instance itself."""
    if isinstance(name_or_instance, Serializer):
        return name_or_instance
    cls = BUILTIN_SERIALIZERS.get(name_or_instance) if isinstance(name_or_instance, str) else None
    if cls is None:
        # The unknown name itself is not echoed: it may come from a payload or a setting.
        known = ", ".join(sorted(BUILTIN_SERIALIZERS))
        raise SerializationError(f"unknown serializer; the known serializers are: {known}")
    return cls()
