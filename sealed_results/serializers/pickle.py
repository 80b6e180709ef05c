"""The pickle serializer: any picklable value, on explicit opt-in only."""

from __future__ import annotations

import pickle
from typing import Any

from sealed_results.errors import SerializationError
from sealed_results.serializers.base import BytesLike, Serializer, type_name

__all__ = ["PickleSerializer"]


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
                f"pickle cannot encode this value of type {type_name(value)!r} (or something "
                "inside it); the chained exception names the part that failed"
            ) from exc

    def loads(self, data: BytesLike) -> Any:
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise SerializationError("the payload is not a loadable pickle") from exc
