"""inspect: what one token or object reference points to, authenticated on the way."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sealed_results.errors import (
    ConfigError,
    ResultNotFound,
)
from sealed_results.format import TOKEN_LENGTH
from sealed_results.handlers import ResultHandler
from sealed_results.handlers.base import KEYSET_NAME, is_object_name
from sealed_results.maintenance._keys import (
    stanza_version,
)
from sealed_results.maintenance._scan import (
    version_label,
)

__all__ = [
    "Inspection",
    "inspect",
]


@dataclass
class Inspection:
    object: str
    stored_size: int
    payload_size: int
    serializer: str
    key_stanzas: list[dict[str, str]]
    modified: str | None
    matches_token: bool | None = None
    notes: list[str] = field(default_factory=list)

    exit_code = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inspect(handler: ResultHandler, target: str) -> Inspection:
    """What a token (or an object reference from ``verify``/``rotate``) points to: object
    name, sizes, key providers and versions, serializer, last-modified time if the store
    tells it. The whole blob is authenticated on the way (IntegrityError if it fails)."""
    commitment: bytes | None = None
    if len(target) == TOKEN_LENGTH:
        name, commitment = handler.locate_token(target)
    elif is_object_name(target) or target == KEYSET_NAME:
        name = target
    else:
        raise ConfigError("expected a token (124 characters) or an object reference (32 hex)")
    check = handler.check_object(name)
    try:
        modified = handler.store.info(name).modified
    except ResultNotFound:
        modified = None
    notes = []
    if modified is None:
        notes.append("this store does not report object times: modified unknown")
    else:
        notes.append("modified is the store's time of the last write (rotation rewrites it)")
    return Inspection(
        object=name,
        stored_size=check.stored_size,
        payload_size=check.payload_size,
        serializer=check.serializer,
        key_stanzas=[
            {"kind": s.kind, "version": version_label(stanza_version(s))}
            for s in check.header.stanzas
        ],
        modified=modified.isoformat() if modified else None,
        matches_token=None if commitment is None else check.header.commitment == commitment,
        notes=notes,
    )
