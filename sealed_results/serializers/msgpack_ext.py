"""numpy and pandas values for the msgpack serializer (ext codes 32-36).

numpy and pandas are imported only when such a value is being encoded (then they are already in
``sys.modules``) or decoded, so ``sealed_results`` imports fast without them.

``encode`` turns a value into ``(code, plain)`` where ``plain`` is built from types the msgpack
serializer already handles (lists, str, bytes, ints, numpy arrays...); the serializer packs it
as the extension payload. ``decode`` gets that plain value back, already unpacked, and rebuilds
the object. Column data always travels as numpy arrays or lists of plain values, never pickle.

Layouts (stable: old payloads must stay readable)::

    32 ndarray    [dtype.str, shape, C-order bytes]   dtype.str keeps the byte order
    33 scalar     [dtype.str, bytes]
    34 DataFrame  [index, columns, [column, ...]]     columns in position order
    35 Series     [index, name, column]
    36 Index      index

    index   ["range", start, stop, step, name]
            ["multi", [level index, ...], [codes ndarray, ...], [name, ...]]
            ["index", column, name, freq or None]
    column  ["numpy", ndarray]                        any non-object numpy dtype
            ["object", [value, ...]]                  each value encoded like any other
            ["category", categories index, codes ndarray, ordered]
            ["datetimetz", unit, time(tzinfo=tz), UTC datetime64 ndarray]
            ["string", storage, na is NaN, [str or None, ...]]
            ["masked", dtype name, data ndarray, mask ndarray]   Int64, Float64, boolean...
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from typing import Any

from sealed_results.errors import SerializationError
from sealed_results.serializers.base import PICKLE_HINT

__all__ = ["CODES", "decode", "encode"]

NDARRAY, SCALAR, DATAFRAME, SERIES, INDEX = 32, 33, 34, 35, 36
CODES = frozenset({NDARRAY, SCALAR, DATAFRAME, SERIES, INDEX})

# Fixed-width kinds whose bytes are the whole value; object/void would need pickle.
_ARRAY_KINDS = frozenset("biufcmMSU")


def _refuse(what: str) -> SerializationError:
    return SerializationError(f"msgpack cannot encode {what}; convert it, or {PICKLE_HINT}")


def encode(value: Any) -> tuple[int, Any] | None:
    """``(code, plain)`` for a numpy or pandas value, None for anything else."""
    np = sys.modules.get("numpy")
    if np is None:  # pandas needs numpy, so neither kind of value can exist
        return None
    cls = type(value)
    if cls is np.ndarray:
        return NDARRAY, [
            _dtype_str(value.dtype, "numpy.ndarray"),
            list(value.shape),
            value.tobytes(),
        ]
    if isinstance(value, np.generic) and cls.__module__ == "numpy":
        return SCALAR, [_dtype_str(value.dtype, f"numpy.{cls.__name__}"), value.tobytes()]
    pd = sys.modules.get("pandas")
    if pd is None:
        return None
    if cls is pd.DataFrame:
        columns = [_column(pd, np, value.iloc[:, i]) for i in range(value.shape[1])]
        return DATAFRAME, [_index(pd, np, value.index), _index(pd, np, value.columns), columns]
    if cls is pd.Series:
        return SERIES, [_index(pd, np, value.index), value.name, _column(pd, np, value)]
    if isinstance(value, pd.Index) and cls.__module__.split(".")[0] == "pandas":
        return INDEX, _index(pd, np, value)
    return None


def _dtype_str(dtype: Any, owner: str) -> str:
    if dtype.kind not in _ARRAY_KINDS or (dtype.itemsize == 0 and owner == "numpy.ndarray"):
        raise _refuse(f"{owner} values of dtype {str(dtype)!r}")
    return str(dtype.str)


def _index(pd: Any, np: Any, index: Any) -> list[Any]:
    if type(index) is pd.RangeIndex:
        return ["range", index.start, index.stop, index.step, index.name]
    if type(index) is pd.MultiIndex:
        levels = [_index(pd, np, level) for level in index.levels]
        return ["multi", levels, [np.asarray(codes) for codes in index.codes], list(index.names)]
    # A DatetimeIndex from date_range carries its frequency; assert_*_equal compares it.
    freq = index.freqstr if isinstance(index, pd.DatetimeIndex | pd.TimedeltaIndex) else None
    return ["index", _column(pd, np, index), index.name, freq]


def _column(pd: Any, np: Any, values: Any) -> list[Any]:
    """Series or Index data (``.dtype``, ``.array``, ``.to_numpy()`` are shared by both)."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind == "O":
            return ["object", list(values.to_numpy())]
        return ["numpy", values.to_numpy()]
    array = values.array
    if isinstance(dtype, pd.CategoricalDtype):
        categories = _index(pd, np, dtype.categories)
        return ["category", categories, np.asarray(array.codes), bool(dtype.ordered)]
    if isinstance(dtype, pd.DatetimeTZDtype):
        utc = np.asarray(array.tz_convert("UTC").tz_localize(None))
        # The tz rides in a time so the serializer's tzinfo rules (and refusals) apply.
        return ["datetimetz", dtype.unit, dt.time(tzinfo=dtype.tz), utc]
    if isinstance(dtype, pd.StringDtype):
        na_is_nan = _is_nan(getattr(dtype, "na_value", None))
        items = [
            None if missing else str(item)
            for item, missing in zip(array.to_numpy(dtype=object), array.isna(), strict=True)
        ]
        return ["string", dtype.storage, na_is_nan, items]
    if isinstance(array, _masked_types(pd)):
        data = array.to_numpy(dtype=dtype.numpy_dtype, na_value=dtype.numpy_dtype.type(0))
        return ["masked", dtype.name, data, np.asarray(array.isna())]
    raise _refuse(f"pandas data of dtype {str(dtype)!r}")


def _is_nan(value: Any) -> bool:
    return type(value) is float and math.isnan(value)


def _masked_types(pd: Any) -> tuple[Any, ...]:
    arrays = pd.arrays
    return (arrays.IntegerArray, arrays.FloatingArray, arrays.BooleanArray)


def decode(code: int, plain: Any) -> Any:
    """The numpy or pandas value for an ext ``code`` whose payload unpacked to ``plain``."""
    import numpy as np

    if code == NDARRAY:
        dtype_str, shape, data = plain
        dtype = _dtype(np, dtype_str)
        shape = tuple(shape)
        if not all(type(n) is int and n >= 0 for n in shape) or dtype.itemsize == 0:
            raise ValueError("malformed array")
        if math.prod(shape) * dtype.itemsize != len(data):
            raise ValueError("array data does not match its shape")
        # frombuffer is a read-only view of the payload; callers get an array of their own.
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if code == SCALAR:
        dtype_str, data = plain
        dtype = _dtype(np, dtype_str)
        if dtype.itemsize == 0:  # np.str_("") and np.bytes_(b"") have 0-width dtypes
            return dtype.type()
        if len(data) != dtype.itemsize:
            raise ValueError("scalar data does not match its dtype")
        return np.frombuffer(data, dtype=dtype)[0]

    import pandas as pd

    if code == DATAFRAME:
        index = _index_from(pd, np, plain[0])
        columns = _index_from(pd, np, plain[1])
        arrays = [_array_from(pd, np, column) for column in plain[2]]
        if len(arrays) != len(columns):
            raise ValueError("column count does not match the columns index")
        # Series with an explicit dtype: a bare object ndarray would be re-inferred as str.
        series = {
            i: pd.Series(array, index=index, dtype=array.dtype, copy=False)
            for i, array in enumerate(arrays)
        }
        frame = pd.DataFrame(series, index=index)
        frame.columns = columns
        return frame
    if code == SERIES:
        index_plain, name, column = plain
        array = _array_from(pd, np, column)
        index = _index_from(pd, np, index_plain)
        return pd.Series(array, index=index, name=name, dtype=array.dtype, copy=False)
    return _index_from(pd, np, plain)


def _dtype(np: Any, dtype_str: Any) -> Any:
    if type(dtype_str) is not str:
        raise TypeError("malformed dtype")
    dtype = np.dtype(dtype_str)
    if dtype.kind not in _ARRAY_KINDS:
        raise ValueError("dtype not allowed")
    return dtype


def _index_from(pd: Any, np: Any, plain: Any) -> Any:
    kind = plain[0]
    if kind == "range":
        _, start, stop, step, name = plain
        return pd.RangeIndex(start, stop, step, name=name)
    if kind == "multi":
        _, levels, codes, names = plain
        levels = [_index_from(pd, np, level) for level in levels]
        return pd.MultiIndex(levels=levels, codes=codes, names=names)
    if kind == "index":
        _, column, name, freq = plain
        array = _array_from(pd, np, column)
        index = pd.Index(array, dtype=array.dtype, name=name, copy=False)
        if freq is not None:
            index = type(index)(index, freq=freq)
        return index
    raise ValueError("unknown index kind")


def _array_from(pd: Any, np: Any, plain: Any) -> Any:
    kind = plain[0]
    if kind == "numpy":
        if type(plain[1]) is not np.ndarray:
            raise TypeError("malformed column")
        return plain[1]
    if kind == "object":
        array = np.empty(len(plain[1]), dtype=object)
        # Item by item: assigning a list would turn nested lists into extra dimensions.
        for i, item in enumerate(plain[1]):
            array[i] = item
        return array
    if kind == "category":
        _, categories, codes, ordered = plain
        dtype = pd.CategoricalDtype(_index_from(pd, np, categories), ordered=ordered)
        return pd.Categorical.from_codes(codes, dtype=dtype)
    if kind == "datetimetz":
        _, unit, carrier, utc = plain
        local = pd.DatetimeIndex(utc).tz_localize("UTC").tz_convert(carrier.tzinfo)
        return local.array.as_unit(unit)
    if kind == "string":
        _, storage, na_is_nan, items = plain
        dtype = pd.StringDtype(storage, na_value=np.nan) if na_is_nan else pd.StringDtype(storage)
        return pd.array(items, dtype=dtype)
    if kind == "masked":
        _, name, data, mask = plain
        cls = pd.api.types.pandas_dtype(name).construct_array_type()
        if not issubclass(cls, _masked_types(pd)):
            raise ValueError("not a masked dtype")
        return cls(data, mask)
    raise ValueError("unknown column kind")
