"""Serializers: exact round trips, strict refusals, and errors that never quote the value."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import math
import os
import pickle
import string
import subprocess
import sys
import threading
import uuid
from collections import OrderedDict
from pathlib import Path, PosixPath, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import msgpack
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst
from hypothesis.extra import pandas as pdst

from sealed_results.errors import PluginNotFound, SerializationError
from sealed_results.serializers import (
    BUILTIN_SERIALIZERS,
    MAX_DEPTH,
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    RawBytesSerializer,
    Serializer,
    get_serializer,
    resolve,
)

MARKER = "SECRET-PLAINTEXT-MARKER"
MSGPACK = MsgpackSerializer()
JSON = JsonSerializer()
PICKLE = PickleSerializer()
RAW = RawBytesSerializer()
MALFORMED_MESSAGE = "the payload is not valid msgpack for this format"


@pytest.fixture(autouse=True)
def _marker_is_a_secret(leak_scan: Any) -> None:
    # The suite-wide scan then also checks every error built here for the marker.
    leak_scan.add_secret(MARKER)


def roundtrip(value: Any) -> Any:
    return MSGPACK.loads(MSGPACK.dumps(value))


# -- a comparison stricter than ==: same type at every level, NaN equal to NaN, -0.0 kept ------


def _tz_identity(tz: dt.tzinfo | None) -> Any:
    if isinstance(tz, ZoneInfo):
        return ("zone", tz.key)
    if isinstance(tz, dt.timezone):
        return ("fixed", tz.utcoffset(None), tz.tzname(None))
    assert tz is None
    return None


def _same_float(a: float, b: float) -> bool:
    if math.isnan(a):
        return math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def assert_same(a: Any, b: Any) -> None:
    assert type(a) is type(b), f"{type(a)} != {type(b)}"
    if isinstance(a, float):
        assert _same_float(a, b)
    elif isinstance(a, complex):
        assert _same_float(a.real, b.real) and _same_float(a.imag, b.imag)
    elif isinstance(a, decimal.Decimal):
        assert str(a) == str(b)  # keeps NaN payloads, signs, exponents; == would hide them
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert len(a) == len(b)
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
            assert_same(ka, kb)
            assert_same(va, vb)
    elif isinstance(a, set | frozenset):
        assert len(a) == len(b)
        by_value = {item: item for item in b}  # finds b's member equal to each member of a
        for item in a:
            assert_same(item, by_value[item])
    elif isinstance(a, dt.datetime | dt.time):
        assert a.replace(tzinfo=None) == b.replace(tzinfo=None)
        assert a.fold == b.fold
        assert _tz_identity(a.tzinfo) == _tz_identity(b.tzinfo)
    elif isinstance(a, np.ndarray):
        assert (a.dtype.str, a.shape) == (b.dtype.str, b.shape)
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, np.generic):
        assert a.dtype.str == b.dtype.str and a.tobytes() == b.tobytes()
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(
            a, b, check_exact=True, check_index_type=True, check_column_type=True
        )
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True, check_index_type=True)
    elif isinstance(a, pd.Index):
        pd.testing.assert_index_equal(a, b, exact=True, check_exact=True)
    else:
        assert a == b


# -- strategies ---------------------------------------------------------------------------------

fixed_offsets = st.builds(
    dt.timezone,
    st.timedeltas(
        min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)
    ),
) | st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-12), max_value=dt.timedelta(hours=12)),
    st.text(string.ascii_letters, min_size=1, max_size=5),
)
any_tz = st.none() | fixed_offsets | st.timezones()
path_parts = st.lists(
    st.text(string.ascii_letters + string.digits + "._- ", min_size=1), max_size=4
)
paths = st.builds(
    lambda cls, parts: cls(*parts),
    st.sampled_from([PurePosixPath, PureWindowsPath, Path]),
    path_parts,
)

# Members of sets and dict keys: hashable, and without NaN (a decoded NaN is a new object that
# set membership cannot find).
hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64),
    st.integers(max_value=-(2**63) - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.complex_numbers(allow_nan=False),
    st.datetimes(timezones=any_tz),
    st.dates(),
    st.times(timezones=any_tz),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
    paths,
)
hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
scalars = (
    hashable_scalars
    | st.floats()
    | st.complex_numbers()
    | st.decimals()
    | st.binary().map(bytearray)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=12,
)


# -- msgpack: round trips -----------------------------------------------------------------------


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_msgpack_round_trips_nested_values_exactly(value: Any) -> None:
    assert_same(value, roundtrip(value))


@settings(max_examples=100)
@given(st.datetimes(timezones=st.timezones()))
def test_msgpack_keeps_zoneinfo_key_and_fold(value: dt.datetime) -> None:
    back = roundtrip(value)
    assert_same(value, back)
    assert back.tzinfo is value.tzinfo  # ZoneInfo(key) is cached: the very same zone object
    assert back.utcoffset() == value.utcoffset()


@settings(max_examples=50)
@given(st.integers(min_value=2**64) | st.integers(max_value=-(2**63) - 1))
def test_msgpack_ints_beyond_64_bits(value: int) -> None:
    assert_same(value, roundtrip(value))


@pytest.mark.parametrize(
    "value",
    [2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**100, -(10**100), 2**4000, -(2**4000) + 1],
)
def test_msgpack_int_boundaries(value: int) -> None:
    assert_same(value, roundtrip(value))
    if -(2**63) <= value < 2**64:  # stays a native msgpack int, readable anywhere
        assert MSGPACK.dumps(value) == msgpack.packb(value)


def test_msgpack_keeps_bool_and_int_apart() -> None:
    back = roundtrip([True, 1, False, 0, {True: 1, 0: False}])
    assert_same([True, 1, False, 0, {True: 1, 0: False}], back)


@pytest.mark.parametrize(
    "value",
    ["", b"", bytearray(), [], (), {}, set(), frozenset(), [[]], ((),), {(): frozenset()}],
)
def test_msgpack_empty_values(value: Any) -> None:
    assert_same(value, roundtrip(value))


@pytest.mark.parametrize(
    "value",
    [
        math.inf,
        -math.inf,
        math.nan,
        -0.0,
        complex(math.nan, -0.0),
        decimal.Decimal("NaN"),
        decimal.Decimal("-sNaN42"),
        decimal.Decimal("-Infinity"),
        decimal.Decimal("-0"),
        decimal.Decimal("1.50E+7"),
        decimal.Decimal("0.000"),
    ],
    ids=repr,
)
def test_msgpack_special_numbers(value: Any) -> None:
    assert_same(value, roundtrip(value))


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
        dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, microseconds=7), "X")),
        dt.datetime.max,
        dt.datetime.min,
        dt.time(23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        dt.time(1, fold=1),
        dt.timedelta.min,
        dt.timedelta.max,
        dt.date.max,
    ],
    ids=repr,
)
def test_msgpack_date_time_edges(value: Any) -> None:
    assert_same(value, roundtrip(value))


@settings(max_examples=50)
@given(paths)
def test_msgpack_paths_keep_their_class(value: Any) -> None:
    assert_same(value, roundtrip(value))


@pytest.mark.skipif(os.name == "nt", reason="a WindowsPath is concrete on Windows")
def test_msgpack_windows_path_read_on_posix_is_pure() -> None:
    payload = msgpack.packb(msgpack.ExtType(13, msgpack.packb([3, "C:\\data\\x.csv"])))
    back = MSGPACK.loads(payload)
    assert type(back) is PureWindowsPath
    assert str(back) == "C:\\data\\x.csv"
    assert type(roundtrip(PosixPath("/tmp/x"))) is PosixPath


def test_msgpack_loads_accepts_memoryview() -> None:
    value = {"a": (1, 2.5), "b": bytearray(b"x")}
    assert_same(value, MSGPACK.loads(memoryview(b"\x00" + MSGPACK.dumps(value))[1:]))


# The ext codes are a stored format: these bytes must keep decoding the same way forever.
GOLDEN = [
    ((1, 2), "c7030292 0102"),
    ({3}, "d5039103"),
    (frozenset({4}), "d5049104"),
    (bytearray(b"ab"), "d5056162"),
    (2**64, "c709010100000000 00000000"),
    (-(2**63) - 1, "c70901ff7fffffff ffffffff"),
    (complex(1, 2), "d806000000000000 f03f0000000000000040"),
    (dt.date(2024, 2, 29), "c7060893cd07e8021d"),
    (dt.timedelta(1, 2, 3), "d60a93010203"),
    (decimal.Decimal("1.5"), "c7030b312e35"),
    (uuid.UUID(int=1), "d80c" + "00" * 15 + "01"),
    (PurePosixPath("/a"), "c7050d9200a22f61"),
    (
        dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=ZoneInfo("UTC")),
        "c7110799cd07e80102030405060092 01a3555443",
    ),
    (np.array([1, 2], dtype="<i2"), "c70d2093a33c693291 02c40401000200"),
    (np.float32(1.5), "c70b2192a33c6634c4040000c03f"),
]


@pytest.mark.parametrize(("value", "hex_bytes"), GOLDEN, ids=lambda v: type(v).__name__)
def test_msgpack_ext_codes_are_stable(value: Any, hex_bytes: str) -> None:
    stored = bytes.fromhex(hex_bytes.replace(" ", ""))
    assert MSGPACK.dumps(value) == stored
    assert_same(value, MSGPACK.loads(stored))


# -- msgpack: numpy and pandas ------------------------------------------------------------------

array_dtypes = st.one_of(
    npst.boolean_dtypes(),
    npst.integer_dtypes(endianness="?"),
    npst.unsigned_integer_dtypes(endianness="?"),
    npst.floating_dtypes(endianness="?", sizes=(16, 32, 64, 128)),
    npst.complex_number_dtypes(endianness="?"),
    npst.datetime64_dtypes(endianness="?"),
    npst.timedelta64_dtypes(endianness="?"),
    npst.byte_string_dtypes(endianness="?", max_len=6),
    npst.unicode_string_dtypes(endianness="?", max_len=6),
)
arrays = npst.arrays(
    array_dtypes, npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
)


@settings(max_examples=100, deadline=None)
@given(arrays)
def test_msgpack_numpy_arrays(array: np.ndarray) -> None:
    back = roundtrip(array)
    assert_same(array, back)
    assert back.flags.writeable and back.flags.c_contiguous


@settings(max_examples=30, deadline=None)
@given(npst.arrays(array_dtypes, npst.array_shapes(min_dims=2, max_dims=3, min_side=2)))
def test_msgpack_numpy_non_contiguous_views(array: np.ndarray) -> None:
    for view in (array.T, array[::2], array[..., ::-1]):
        assert_same(np.ascontiguousarray(view), roundtrip(view))


@pytest.mark.parametrize(
    "scalar",
    [
        np.float32(1.5),
        np.float16(-0.0),
        np.longdouble(1) / 3,
        np.int8(-7),
        np.uint64(2**64 - 1),
        np.bool_(True),
        np.complex64(1 - 2j),
        np.float64(math.nan),
        np.datetime64("2024-02-29T12:00", "m"),
        np.timedelta64(5, "us"),
        np.str_("héllo"),
        np.str_(""),
        np.bytes_(b"ab"),
    ],
    ids=repr,
)
def test_msgpack_numpy_scalars_keep_their_type(scalar: np.generic) -> None:
    assert_same(scalar, roundtrip(scalar))


def test_msgpack_numpy_inside_containers() -> None:
    value = {"w": (np.arange(6.0).reshape(2, 3), np.int64(3)), np.int16(2): [np.zeros(0, "?")]}
    assert_same(value, roundtrip(value))


frames = pdst.data_frames(
    columns=[
        pdst.column("i", dtype=np.int64),
        pdst.column("f", dtype=float),
        pdst.column("b", dtype=bool),
        pdst.column("t", dtype="datetime64[ns]"),
        pdst.column("o", elements=st.text(max_size=5) | st.none() | st.integers(), dtype=object),
        pdst.column("c", dtype=complex),
    ],
    index=pdst.range_indexes(max_size=6) | pdst.indexes(dtype=np.int32, max_size=6),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_msgpack_pandas_frames(frame: pd.DataFrame) -> None:
    assert_same(frame, roundtrip(frame))
    as_strings = frame.astype({"o": "str"})  # pandas' own string dtype, with its NaN missing
    assert_same(as_strings, roundtrip(as_strings))


def test_msgpack_pandas_frame_of_many_dtypes() -> None:
    frame = pd.DataFrame(
        {
            "int": [1, 2, 3],
            "float": [1.5, np.nan, -0.0],
            "str": ["a", None, "ç"],
            "object": pd.Series([1, "x", (1, 2)], dtype=object),
            "category": pd.Categorical(["x", "y", "x"], categories=["y", "x"], ordered=True),
            "paris": pd.date_range("2020-03-29", periods=3, freq="h", tz="Europe/Paris"),
            "utc": pd.date_range("2020", periods=3, tz="UTC", unit="ns"),
            "Int64": pd.array([1, None, 3], dtype="Int64"),
            "boolean": pd.array([True, None, False], dtype="boolean"),
            "Float32": pd.array([0.5, None, 2], dtype="Float32"),
            "string": pd.array(["a", None, "b"], dtype="string"),
            "delta": pd.to_timedelta([1, 2, 3], unit="s"),
            "u8": np.array([1, 2, 255], dtype=np.uint8),
        },
        index=pd.date_range("2021-01-01", periods=3, freq="D", name="day"),
    )
    frame.columns.name = "field"
    assert_same(frame, roundtrip(frame))


@pytest.mark.parametrize(
    "value",
    [
        pd.DataFrame(),
        pd.DataFrame(index=[1, 2]),
        pd.DataFrame(columns=["a", "b"]),
        pd.DataFrame([[1, 2.5]], columns=["a", "a"], index=["only"]),
        pd.DataFrame({(1, "x"): [1], 7: [2]}),
        pd.DataFrame(
            {"v": [1.0, 2.0]},
            index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", None]),
        ),
        pd.Series([], dtype=float),
        pd.Series([1, 1], index=["x", "x"], name=("a", 1)),
        pd.Series(pd.Categorical([None, "b"])),
        pd.Index([3, 1], name="n"),
        pd.RangeIndex(3, 10, 2, name="r"),
        pd.CategoricalIndex(["a", "b", "a"]),
        pd.timedelta_range("1s", periods=3, freq="s"),
        pd.Series([[1, 2], None, {"a": (1,)}, "s"], dtype=object, name=np.int64(4)),
        pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")])),
        pd.Series(
            pd.to_datetime(["2020-01-01", None]).tz_localize(dt.timezone(dt.timedelta(hours=2)))
        ),
    ],
    ids=lambda v: type(v).__name__,
)
def test_msgpack_pandas_shapes(value: Any) -> None:
    assert_same(value, roundtrip(value))


# -- msgpack: refusals --------------------------------------------------------------------------


class Secret:
    def __repr__(self) -> str:
        return MARKER

    __str__ = __repr__


class SecretStr(str):
    pass


class SecretInt(enum.IntEnum):
    A = 1


@dataclasses.dataclass
class Record:
    payload: str = MARKER


class Pair(NamedTuple):
    left: str
    right: str


class SecretZone(dt.tzinfo):
    def utcoffset(self, when: Any) -> dt.timedelta:
        return dt.timedelta(0)

    def dst(self, when: Any) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, when: Any) -> str:
        return MARKER

    def __repr__(self) -> str:
        return MARKER


REFUSED = [
    (Secret(), "Secret"),
    (SecretStr(MARKER), "SecretStr"),
    (SecretInt.A, "SecretInt"),
    (Record(), "Record"),
    (Pair(MARKER, MARKER), "Pair"),
    (OrderedDict(k=MARKER), "OrderedDict"),
    (memoryview(MARKER.encode()), "memoryview"),
    (dt.datetime(2020, 1, 1, tzinfo=SecretZone()), "SecretZone"),
    (np.array([MARKER], dtype=object), "numpy.ndarray"),
    (pd.Series([Secret()], dtype=object), "Secret"),
    (pd.Series(pd.period_range("2020", periods=2, freq="D")), "period"),
]


@pytest.mark.parametrize(("value", "type_name"), REFUSED, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("nest", [False, True], ids=["top", "nested"])
def test_msgpack_refusal_names_type_never_value(value: Any, type_name: str, nest: bool) -> None:
    with pytest.raises(SerializationError) as info:
        MSGPACK.dumps([1, {"k": (value,)}] if nest else value)
    message = str(info.value)
    assert type_name in message
    assert MARKER not in message and MARKER not in repr(info.value)
    assert "msgpack cannot encode" in message


def test_msgpack_refusal_message_gives_the_way_out() -> None:
    with pytest.raises(SerializationError) as info:
        MSGPACK.dumps(Secret())
    assert str(info.value) == (
        f"msgpack cannot encode values of type '{__name__}.Secret'; convert it to supported "
        "types, or choose serializer='pickle' (explicit opt-in, trusted readers only)"
    )


def test_msgpack_refuses_self_reference_and_lone_surrogates() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="nested"):
        MSGPACK.dumps(loop)
    with pytest.raises(SerializationError, match="surrogates") as info:
        MSGPACK.dumps("\udc80" + MARKER)
    assert MARKER not in str(info.value)


# -- msgpack: malformed input -------------------------------------------------------------------


def _ext(code: int, payload: Any) -> bytes:
    data = payload if isinstance(payload, bytes) else msgpack.packb(payload)
    packed: bytes = msgpack.packb(msgpack.ExtType(code, data))
    return packed


MALFORMED = [
    b"",
    b"\xc1",
    b"\x92\x01",  # truncated array
    b"\x01\x02",  # trailing data
    b"\x81\x90\x01",  # a list as a map key
    _ext(2, b"\xc1"),
    _ext(12, b"abc"),
    _ext(11, b" 1"),
    _ext(11, b"1_000"),
    _ext(13, [7, "x"]),
    _ext(7, [2020, 13, 1, 0, 0, 0, 0, 0, None]),
    _ext(7, [2020, 1, 1, 0, 0, 0, 0, 0, [1, "No/Such_Zone"]]),
    _ext(32, ["|O", [1], b"\x00" * 8]),
    _ext(32, ["<f8", [2], b"\x00" * 8]),
    _ext(32, ["<f8", [-1], b""]),
    _ext(33, ["<f8", b"\x00"]),
    _ext(34, [["range", 0, 2, 1, None], ["range", 0, 1, 1, None], []]),
    _ext(36, ["nope"]),
]


@pytest.mark.parametrize("data", MALFORMED, ids=lambda d: d.hex()[:24])
def test_msgpack_malformed_input(data: bytes) -> None:
    with pytest.raises(SerializationError) as info:
        MSGPACK.loads(data)
    assert str(info.value) == MALFORMED_MESSAGE


def test_msgpack_unknown_ext_code_says_so() -> None:
    with pytest.raises(SerializationError, match="extension type this release does not know"):
        MSGPACK.loads(_ext(99, b"anything"))


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_msgpack_random_bytes_decode_or_raise_serialization_error(data: bytes) -> None:
    with contextlib.suppress(SerializationError):
        MSGPACK.loads(data)


RICH = MSGPACK.dumps(
    [
        (1, 2**70, {3}, frozenset({4}), bytearray(b"5"), 6j, uuid.UUID(int=7), PurePosixPath("8")),
        dt.datetime(2020, 1, 1, tzinfo=ZoneInfo("Europe/Paris")),
        dt.time(1, tzinfo=dt.UTC),
        dt.date(2020, 1, 1),
        dt.timedelta(9),
        decimal.Decimal("1.0"),
        np.arange(4, dtype=">i4").reshape(2, 2),
        pd.DataFrame({"a": [1.5], "s": ["x"]}),
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_msgpack_corrupted_payloads_decode_or_raise_serialization_error(data: Any) -> None:
    position = data.draw(st.integers(0, len(RICH) - 1))
    if data.draw(st.booleans()):
        corrupted = RICH[:position]
    else:
        corrupted = RICH[:position] + bytes([data.draw(st.integers(0, 255))]) + RICH[position + 1 :]
    with contextlib.suppress(SerializationError):
        MSGPACK.loads(corrupted)


# -- msgpack: packaging -------------------------------------------------------------------------


def test_msgpack_module_imports_without_numpy_or_pandas() -> None:
    code = (
        "import sys, sealed_results.serializers as s;"
        "s.MsgpackSerializer().loads(s.MsgpackSerializer().dumps([(1,), {2}]));"
        "assert 'numpy' not in sys.modules and 'pandas' not in sys.modules"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=60)


# -- JSON -------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=80)
@given(json_values)
def test_json_round_trips_json_values(value: Any) -> None:
    assert_same(value, JSON.loads(JSON.dumps(value)))


def test_json_is_compact_utf8_and_turns_tuples_into_lists() -> None:
    assert JSON.dumps({"a": (1, "é"), "b": None}) == '{"a":[1,"é"],"b":null}'.encode()
    assert JSON.loads(memoryview(b'{"a":[1,"\xc3\xa9"]}')) == {"a": [1, "é"]}


@pytest.mark.parametrize(
    "value",
    [math.nan, [math.inf], {"x": -math.inf}, {3}, b"x", Secret(), [Record()], decimal.Decimal(1)],
    ids=repr,
)
def test_json_is_strict(value: Any) -> None:
    with pytest.raises(SerializationError) as info:
        JSON.dumps(value)
    assert MARKER not in str(info.value)


def test_json_refusal_names_type_never_value() -> None:
    with pytest.raises(SerializationError, match=r"\.Secret'"):
        JSON.dumps({"k": [Secret()]})
    with pytest.raises(SerializationError, match="keys") as info:
        JSON.dumps({(MARKER,): 1})
    assert MARKER not in str(info.value)
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(SerializationError, match="contains itself"):
        JSON.dumps(loop)


@pytest.mark.parametrize(
    "data", [b"", b"{", b"NaN", b"[Infinity]", b"\xff", b'"a" "b"', b"\xef\xbb\xbf{}"], ids=repr
)
def test_json_malformed_input(data: bytes) -> None:
    with pytest.raises(SerializationError, match="not valid UTF-8 JSON"):
        JSON.loads(data)


# -- pickle, raw bytes, lookup ------------------------------------------------------------------


def test_pickle_round_trip_and_opt_in_flag() -> None:
    value = {"record": Record("x"), "pair": Pair("a", "b"), "ordered": OrderedDict(a=1)}
    assert PICKLE.loads(PICKLE.dumps(value)) == value
    assert pickle.loads(PICKLE.dumps(value)) == value
    assert PickleSerializer.requires_opt_in
    others = [cls for name, cls in BUILTIN_SERIALIZERS.items() if name != "pickle"]
    assert not any(cls.requires_opt_in for cls in others)


def test_pickle_refusal_and_malformed_input() -> None:
    with pytest.raises(SerializationError, match="function"):
        PICKLE.dumps(lambda: MARKER)
    with pytest.raises(SerializationError, match="not a loadable pickle"):
        PICKLE.loads(b"\x80\x05garbage")


@pytest.mark.parametrize("value", [b"abc", bytearray(b"abc"), memoryview(b"xabc")[1:]])
def test_raw_bytes_round_trip(value: Any) -> None:
    data = RAW.dumps(value)
    assert type(data) is bytes and data == b"abc"
    back = RAW.loads(memoryview(data))
    assert type(back) is bytes and back == b"abc"


@pytest.mark.parametrize("value", [MARKER, 1, [b"x"], None])
def test_raw_bytes_refuses_other_types(value: Any) -> None:
    with pytest.raises(SerializationError, match=type(value).__qualname__) as info:
        RAW.dumps(value)
    assert MARKER not in str(info.value)


def test_resolve() -> None:
    assert get_serializer is resolve  # the earlier name
    assert set(BUILTIN_SERIALIZERS) == {"msgpack", "json", "pickle", "bytes"}
    for name, cls in BUILTIN_SERIALIZERS.items():
        serializer = resolve(name)
        assert type(serializer) is cls and serializer.name == name and name.isascii()
        assert isinstance(pickle.loads(pickle.dumps(serializer)), cls)  # handlers get pickled
    custom = JsonSerializer()
    assert resolve(custom) is custom
    assert isinstance(custom, Serializer)
    with pytest.raises(PluginNotFound) as info:
        resolve("yaml-" + MARKER)
    message = str(info.value)
    assert MARKER not in message and "pip install" in message
    assert all(name in message for name in BUILTIN_SERIALIZERS)


# -- zero-copy hooks ----------------------------------------------------------------------------

BIG = os.urandom(1 << 16)


class Plain(Serializer):
    """A serializer that overrides nothing but dumps/loads: the hooks' defaults."""

    name = "plain-test"

    def dumps(self, value: Any) -> bytes:
        return JSON.dumps(value)

    def loads(self, data: Any) -> Any:
        return JSON.loads(data)


@pytest.mark.parametrize("serializer", [MSGPACK, JSON, PICKLE, RAW, Plain()], ids=lambda s: s.name)
@pytest.mark.parametrize("value", [b"", b"abc", BIG, BIG + b"x", b"y" * 300], ids=len)
def test_hooks_agree_with_dumps_and_loads(serializer: Serializer, value: bytes) -> None:
    if isinstance(serializer, JsonSerializer | Plain):
        value = value.hex()  # type: ignore[assignment]
    serialized = serializer.dumps(value)
    parts = serializer.dump_parts(value)
    assert b"".join(parts) == serialized
    segment = 1 << 16
    for first_size in (segment, 1, 0, len(serialized)):
        first = memoryview(serialized)[:first_size]
        cut = serializer.split_point(first, len(serialized))
        assert 0 <= cut <= len(serialized)
        head, rest = serialized[:cut], serialized[cut:]
        assert serializer.load_parts(memoryview(head), rest) == value


def test_msgpack_large_bytes_skip_every_copy() -> None:
    parts = MSGPACK.dump_parts(BIG)
    assert parts == (b"\xc6" + len(BIG).to_bytes(4, "big"), BIG) and parts[1] is BIG
    serialized = MSGPACK.dumps(BIG)
    assert MSGPACK.split_point(memoryview(serialized)[: 1 << 16], len(serialized)) == 5
    rest = serialized[5:]
    assert MSGPACK.load_parts(serialized[:5], rest) is rest  # the reader's buffer, no copy
    small = MSGPACK.dumps(b"abc")  # bin 8 below the zero-copy size: still one bin value
    assert MSGPACK.dump_parts(b"abc") == (small,)
    assert MSGPACK.split_point(memoryview(small), len(small)) == 2


@pytest.mark.parametrize(
    "value",
    [[BIG], {"k": BIG}, (BIG,), bytearray(BIG), "s" * 70000, 7],
    ids=lambda v: type(v).__name__,
)
def test_msgpack_split_point_is_zero_unless_one_bin_value(value: Any) -> None:
    serialized = MSGPACK.dumps(value)
    assert MSGPACK.dump_parts(value) == (serialized,)
    assert MSGPACK.split_point(memoryview(serialized)[: 1 << 16], len(serialized)) == 0


@settings(max_examples=300)
@given(st.binary(max_size=12), st.integers(0, 1 << 33))
def test_split_point_never_raises(first: bytes, total: int) -> None:
    for serializer in (MSGPACK, JSON, PICKLE, RAW):
        assert 0 <= serializer.split_point(memoryview(first), total) <= max(total, len(first))


def test_msgpack_load_parts_refuses_a_header_that_does_not_span() -> None:
    header = b"\xc6" + (10).to_bytes(4, "big")
    with pytest.raises(SerializationError):
        MSGPACK.load_parts(header, b"short")  # 5 bytes where the header says 10


# -- nesting bound: writers refuse, readers refuse before recursing -----------------------------


def nested(kind: str, levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"list": [value], "tuple": (value,), "dict": {"k": value}}[kind]
        value = frozenset({value}) if kind == "frozenset" else value
    return value


def _deep_msgpack(kind: str, levels: int) -> bytes:
    """A payload no writer of ours makes: ``levels`` of nesting, bottom up."""
    data = msgpack.packb(1)
    for _ in range(levels):
        if kind == "array":
            data = b"\x91" + data
        elif kind == "map":
            data = b"\x81\xa1k" + data
        else:  # a tuple extension value around the payload so far, in a one-item array
            data = msgpack.packb(msgpack.ExtType(2, b"\x91" + data))
    return data


DEEP_MSGPACK = {
    "arrays": _deep_msgpack("array", 10_000),
    "maps": _deep_msgpack("map", 10_000),
    "tuples": _deep_msgpack("tuple", 10_000),
    "tuples-then-arrays": msgpack.packb(
        msgpack.ExtType(2, b"\x91" + msgpack.packb(msgpack.ExtType(2, _deep_msgpack("array", 900))))
    ),
    "arrays-65": _deep_msgpack("array", MAX_DEPTH + 1),
    "tuples-65": _deep_msgpack("tuple", MAX_DEPTH + 1),
}


@pytest.mark.parametrize("kind", ["list", "tuple", "dict"])
def test_depth_bound_on_write_and_read(kind: str) -> None:
    deepest = nested(kind, MAX_DEPTH)
    assert_same(deepest, roundtrip(deepest))
    assert JSON.loads(JSON.dumps(deepest)) == JSON.loads(JSON.dumps(deepest))
    for serializer in (MSGPACK, JSON):
        with pytest.raises(SerializationError, match=f"more than {MAX_DEPTH} levels") as info:
            serializer.dumps([MARKER, nested(kind, MAX_DEPTH)])
        assert MARKER not in str(info.value)


@pytest.mark.parametrize(
    "leaf",
    [
        np.zeros(2),
        np.float32(1),
        pd.DataFrame({"t": pd.date_range("2020", periods=2, tz="Europe/Paris"), "o": [[1], (2,)]}),
        pd.Series([1, 2], index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)])),
        dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    ],
    ids=lambda v: type(v).__name__,
)
def test_depth_counts_extension_values_as_written(leaf: Any) -> None:
    # numpy and pandas values take levels of their own (their encodings hold lists); the reader
    # counts them exactly as the writer does, so the deepest value written still reads back.
    value, written = leaf, 0
    while True:
        try:
            data = MSGPACK.dumps((value,))
        except SerializationError:
            break
        value, written = (value,), written + 1
    assert MAX_DEPTH - 10 <= written <= MAX_DEPTH
    assert_same(value, MSGPACK.loads(MSGPACK.dumps(value)))
    assert data


def test_self_reference_is_refused() -> None:
    loop: list[Any] = [MARKER]
    loop.append(loop)
    for serializer in (MSGPACK, JSON):
        with pytest.raises(SerializationError) as info:
            serializer.dumps(loop)
        assert MARKER not in str(info.value)


READ_DEPTH = f"nests values more than {MAX_DEPTH} levels deep"


@pytest.mark.parametrize("name", DEEP_MSGPACK)
def test_msgpack_deep_payload_is_refused(name: str) -> None:
    with pytest.raises(SerializationError, match=READ_DEPTH):
        MSGPACK.loads(DEEP_MSGPACK[name])


DEEP_JSON = {
    "arrays": b"[" * 10_000 + b"]" * 10_000,
    "objects": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "arrays-65": b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
}


@pytest.mark.parametrize("name", DEEP_JSON)
def test_json_deep_payload_is_refused(name: str) -> None:
    with pytest.raises(SerializationError, match=READ_DEPTH):
        JSON.loads(DEEP_JSON[name])
    # Brackets inside strings are text, not nesting.
    assert JSON.loads(b'["' + b"[" * 10_000 + b'"]') == ["[" * 10_000]


def test_json_unbalanced_deep_payload_is_malformed() -> None:
    with pytest.raises(SerializationError, match="not valid UTF-8 JSON"):
        JSON.loads(b"[" * 100_000)


def _load_everything_deep() -> list[str]:
    outcomes = []
    for payloads, serializer in ((DEEP_MSGPACK, MSGPACK), (DEEP_JSON, JSON)):
        for data in payloads.values():
            try:
                serializer.loads(data)
                outcomes.append("loaded")
            except SerializationError:
                outcomes.append("refused")
    return outcomes


def test_deep_payloads_are_refused_in_a_thread_with_a_small_stack() -> None:
    outcomes: list[Any] = []
    previous = threading.stack_size(256 * 1024)
    try:
        thread = threading.Thread(target=lambda: outcomes.extend(_load_everything_deep()))
        thread.start()
    finally:
        threading.stack_size(previous)
    thread.join(60)
    assert outcomes == ["refused"] * (len(DEEP_MSGPACK) + len(DEEP_JSON))


def test_deep_payloads_do_not_crash_a_reader_process() -> None:
    # A crash would be a signal (rc -11), not an exception: only a child process can show it.
    code = (
        "import threading, tests.test_serializers as t\n"
        "threading.stack_size(256 * 1024)\n"
        "out = []\n"
        "th = threading.Thread(target=lambda: out.extend(t._load_everything_deep()))\n"
        "th.start(); th.join()\n"
        "assert set(t._load_everything_deep()) == set(out) == {'refused'}, out\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, timeout=120, capture_output=True)
    assert done.returncode == 0, done.stderr[-2000:]
