"""The Serializer interface: how a value becomes the plaintext bytes that get sealed, and back.

For plugin authors: subclass ``Serializer``, give it a short ascii ``name`` (it is stored with
every payload and must never change once payloads exist), implement ``dumps`` and ``loads``,
and register the class under the entry-point group ``sealed_results.serializers``. The three
zero-copy hooks (``dump_parts``, ``split_point``, ``load_parts``) are optional: their defaults
are always correct, and only a serializer whose encoding of some values *is* the value's own
bytes behind a fixed header (msgpack's ``bin``) gains by overriding them.

Errors never quote the value (it may be secret plaintext): a refusal names the value's type,
and a decoding failure says only that the bytes do not decode.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from sealed_results.errors import SerializationError

__all__ = [
    "MAX_DEPTH",
    "PICKLE_HINT",
    "BytesLike",
    "Serializer",
    "refusal",
    "too_deep",
    "type_name",
]

BytesLike = bytes | bytearray | memoryview

# How deeply values may nest: containers (list, dict, tuple, set, frozenset) and the msgpack
# extension values built from them (numpy, pandas) count one level each. Writers refuse deeper
# values and readers refuse deeper payloads before decoding recurses, because the decoders
# recurse on the C stack: a few hundred levels crash a reader outright (no exception) in the
# main thread, a few dozen in a thread with a small stack. 64 is far beyond real results.
MAX_DEPTH = 64

PICKLE_HINT = "choose serializer='pickle' (explicit opt-in, trusted readers only)"


def type_name(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def refusal(format_name: str, value: Any) -> SerializationError:
    return SerializationError(
        f"{format_name} cannot encode values of type {type_name(value)!r}; "
        f"convert it to supported types, or {PICKLE_HINT}"
    )


def too_deep(format_name: str, *, reading: bool) -> SerializationError:
    if reading:
        return SerializationError(
            f"the {format_name} payload nests values more than {MAX_DEPTH} levels deep, "
            "deeper than sealed-results writes or reads"
        )
    return SerializationError(
        f"{format_name} cannot encode values nested more than {MAX_DEPTH} levels deep "
        "(containers and the values built from them); flatten the value"
    )


class Serializer(abc.ABC):
    """Turns a value into bytes and back.

    ``name`` is stored inside every sealed payload, so it is a short ascii id that must never
    change once payloads exist. ``loads`` gets any bytes-like object (readers pass a
    ``memoryview`` of the decrypted plaintext to avoid a copy). ``requires_opt_in`` marks a
    serializer whose ``loads`` can run code (pickle): handlers use it only when told to.
    """

    name: ClassVar[str]
    requires_opt_in: ClassVar[bool] = False

    @abc.abstractmethod
    def dumps(self, value: Any) -> bytes:
        """The bytes of ``value``; SerializationError if this serializer refuses it."""

    @abc.abstractmethod
    def loads(self, data: BytesLike) -> Any:
        """The value encoded in ``data``; SerializationError if it does not decode."""

    # -- optional zero-copy hooks ------------------------------------------------------------
    def dump_parts(self, value: Any) -> tuple[bytes | memoryview, ...]:
        """``dumps(value)`` as parts that concatenate to exactly those bytes.

        A writer encrypts the parts in order and never joins them, so an override can hand
        back the caller's own buffer as a part instead of a copy of it."""
        return (self.dumps(value),)

    def split_point(self, first: memoryview, total: int) -> int:
        """Where a reader may cut the serialized bytes so that the tail is the value's own
        bytes: ``first`` is the start of the serialized bytes (up to one segment, already
        authenticated) and ``total`` their whole length. The reader then decrypts the tail
        straight into the object that ``load_parts`` may return as it is. 0 means no cut.

        Must never raise, whatever the bytes: a malformed payload is ``load_parts``' to refuse.
        """
        return 0

    def load_parts(self, head: bytes | memoryview, rest: bytes) -> Any:
        """``loads(head + rest)``, where ``head`` is the first ``split_point`` bytes."""
        if not head:
            return self.loads(rest)
        return self.loads(bytes(head) + rest)
