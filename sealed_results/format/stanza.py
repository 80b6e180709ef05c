"""Stanzas: the key section of a blob header, one wrapping of the data key per key provider.

A stanza is the provider's kind (ASCII, part of the stored format) and its opaque wrapped bytes.
It lives here, with the format, so that key providers and the format both import it from a
neutral place and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MAX_KIND_LEN", "MAX_STANZAS", "MAX_WRAPPED_LEN", "Stanza", "encode_stanzas"]

MAX_STANZAS = 16
MAX_KIND_LEN = 32
MAX_WRAPPED_LEN = 4096


@dataclass(frozen=True, slots=True)
class Stanza:
    """One wrapping of a data key, as stored in a blob header: the provider kind and its bytes."""

    kind: str
    wrapped: bytes = field(repr=False)


def encode_stanzas(stanzas: tuple[Stanza, ...]) -> bytes:
    """``count u8 || count x (kind_len u8 || kind || wrapped_len u16 || wrapped)``."""
    if not 1 <= len(stanzas) <= MAX_STANZAS:
        raise ValueError("a blob carries 1 to 16 key stanzas")
    out = [bytes((len(stanzas),))]
    for stanza in stanzas:
        kind, wrapped = stanza.kind.encode("ascii"), stanza.wrapped
        if not 1 <= len(kind) <= MAX_KIND_LEN or not 1 <= len(wrapped) <= MAX_WRAPPED_LEN:
            raise ValueError("stanza kind or wrapped key has an invalid length")
        out += (bytes((len(kind),)), kind, len(wrapped).to_bytes(2, "big"), wrapped)
    return b"".join(out)
