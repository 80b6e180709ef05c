"""Sealed flow parameters: the API stores a token, the flow opens it where it runs.

    from sealed_results.prefect import Revealed, SealedValue, seal

    @flow(**sealed_flow("prod"))
    def pipeline(customer: SealedValue, card: Revealed[str]) -> None:
        customer.reveal()   # the value, opened locally
        card                # already the value: opened while Prefect validated the parameters

    pipeline(customer=seal({"id": 7}, "prod"), card=seal("4111...", "prod"))
    run_deployment("pipeline/prod", parameters={"card": seal("4111...", "prod")})

A parameter annotated ``SealedValue`` or ``Revealed[T]`` accepts only a sealed value
(``sealed:<profile>:<token>``, from ``seal()`` or ``sealed-results seal``); its JSON schema (the
deployment's parameter schema, the UI's form) is a string of format ``sealed-results-token``.
Prefect's API stores the token as the run's parameter; the value is in the profile's store.
Values opened in a process are redacted from the logs it ships (``sealed_results.sealing``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from sealed_results.errors import SealedResultsError
from sealed_results.sealing import TOKEN_FORMAT, is_sealed_token, seal, unseal

__all__ = ["RevealMarker", "Revealed", "SealedValue", "seal", "unseal"]

_DESCRIPTION = (
    "A value sealed with sealed-results: paste the output of `sealed-results seal` "
    "(sealed:<profile>:<token>)."
)


def _json_schema() -> JsonSchemaValue:
    return {"type": "string", "format": TOKEN_FORMAT, "description": _DESCRIPTION}


def _require_token(value: Any) -> str:
    if not is_sealed_token(value):
        # The input is not quoted: it may be the very value that should have been sealed.
        raise PydanticCustomError(
            "sealed_value", "expected a sealed value (sealed:<profile>:<token>) from seal()"
        )
    return str(value)


class SealedValue(str):
    """A flow parameter holding a sealed value's token; ``.reveal()`` opens it locally."""

    __slots__ = ()

    def reveal(self) -> Any:
        """The sealed value, opened with the profile the token names (else the default
        profile of this machine)."""
        return unseal(str(self))

    def __repr__(self) -> str:
        return f"SealedValue({str.__repr__(self)})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            lambda value: cls(_require_token(value)),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _json_schema()


def _reveal(value: Any) -> Any:
    try:
        return unseal(_require_token(value))
    except SealedResultsError as exc:
        # Our messages name no value; pydantic wraps a ValueError into the validation error.
        raise ValueError(f"the sealed value could not be opened: {exc}") from None


class RevealMarker:
    """The metadata of ``Revealed[T]``: validate a token, open it, validate the value as T."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        inner = handler(source)
        return core_schema.no_info_before_validator_function(
            _reveal,
            inner,
            json_schema_input_schema=core_schema.str_schema(),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _json_schema()

    def __repr__(self) -> str:
        return "Revealed"


T = TypeVar("T")

if TYPE_CHECKING:
    # To type checkers ``Revealed[str]`` is ``str``: the flow body receives the value.
    Revealed = Annotated[T, ...]
else:

    class Revealed:
        """``Revealed[T]``: a parameter given as a sealed value and received as a ``T``, opened
        while Prefect validates the flow's parameters (in the process that runs the flow)."""

        def __class_getitem__(cls, item: Any) -> Any:
            return Annotated[item, RevealMarker()]
