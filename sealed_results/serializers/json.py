"""The JSON serializer: strict, compact UTF-8 JSON for readers in other languages."""

from __future__ import annotations

import json
import re
from typing import Any

from sealed_results.errors import SerializationError
from sealed_results.serializers.base import (
    MAX_DEPTH,
    PICKLE_HINT,
    BytesLike,
    Serializer,
    refusal,
    too_deep,
)

__all__ = ["JsonSerializer"]

MALFORMED = "the payload is not valid UTF-8 JSON"

_LEAVES = frozenset({str, int, float, bool, type(None)})
# The reader's depth check looks only at brackets outside strings (see _check_text_depth).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def _refuse_json(value: Any) -> Any:
    raise refusal("JSON", value)


def _reject_constant(_: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _check_depth(value: Any, room: int, path: set[int]) -> None:
    """Refuse values nested deeper than ``room`` before json's recursive C encoder sees them;
    ``path`` holds the containers above, so a value containing itself is told apart."""
    items = value.values() if isinstance(value, dict) else value
    if _LEAVES.issuperset(map(type, items)):
        return
    if room == 0:
        raise too_deep("JSON", reading=False)
    path.add(id(value))
    for item in items:
        if isinstance(item, list | tuple | dict):
            if id(item) in path:
                raise SerializationError("JSON cannot encode a value that contains itself")
            _check_depth(item, room - 1, path)
    path.discard(id(value))


def _check_text_depth(text: str) -> None:
    """Refuse JSON text nested deeper than MAX_DEPTH before json's recursive C scanner runs:
    in a thread with a small stack it crashes the process long before a RecursionError.
    Each pass drops the innermost bracket pairs, so the number of passes is the depth."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # counts brackets in strings too
        return
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(MAX_DEPTH):
        shorter = _INNERMOST.sub("", brackets)
        if not shorter:
            return
        if len(shorter) == len(brackets):  # unbalanced: malformed, and not parsed at all
            raise SerializationError(MALFORMED)
        brackets = shorter
    raise too_deep("JSON", reading=True)


class JsonSerializer(Serializer):
    """Strict, compact UTF-8 JSON for readers in other languages.

    Only what JSON can say: None, bool, int, float (finite), str, list and dict. Lossy the way
    ``json`` always is: tuples come back as lists, and int/float/bool/None dict keys come back
    as str. NaN and infinities are refused, as is any other type (subclasses of the types above
    are written as their base type, like ``json`` does). Values nest at most ``MAX_DEPTH``
    levels, both ways.
    """

    name = "json"

    def dumps(self, value: Any) -> bytes:
        try:
            if isinstance(value, list | tuple | dict):  # the top level is the first of them
                _check_depth(value, MAX_DEPTH - 1, set())
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
                f"JSON object keys must be str, int, float, bool or None; {PICKLE_HINT}"
            ) from exc
        except RecursionError as exc:  # nesting through values only ``default`` could see
            raise too_deep("JSON", reading=False) from exc
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
            text = str(data, "utf-8")
            _check_text_depth(text)
            return json.loads(text, parse_constant=_reject_constant)
        except SerializationError:
            raise
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise SerializationError(MALFORMED) from exc
