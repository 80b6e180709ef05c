"""What maintenance knows about key versions, per provider kind, from documented formats only.

A stanza's key-encryption-key version is read from the stanza bytes as docs/format.md and
docs/keyproviders.md define them, without asking the provider:

- ``local``: ``0x01 || kek_version u32 || nonce (12) || ciphertext (48)``;
- ``vault``: ``0x01`` then Transit's ASCII ciphertext ``vault:vN:...``;
- ``aws-kms``: ``0x01`` then a KMS CiphertextBlob, whose backing-key version only KMS knows
  (``None``: unknown). On-demand rotation keeps the key id, and Decrypt finds the backing key.

A provider's current (newest) and lowest readable versions come from its public ``describe()``;
KMS shows its rotation count through ``ListKeyRotations`` (used only to tell whether a rotation
this tool started has happened). Raising the lowest readable version ("retire") is the
LocalKeyring's ``retire(version)`` and Vault's ``min_decryption_version`` (``keys/<name>/config``);
KMS keeps every backing key of a key, so there is nothing to raise there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sealed_results.format import Stanza
from sealed_results.keyproviders import KeyProvider

__all__ = [
    "ProviderState",
    "provider_state",
    "raise_minimum",
    "stanza_version",
]

_LOCAL_STANZA_SIZE = 1 + 4 + 12 + 48
_VAULT_VERSION = re.compile(rb"\x01vault:v([0-9]{1,10}):")


def stanza_version(stanza: Stanza) -> int | None:
    """The key-encryption-key version a stanza names, or None where its format does not say."""
    wrapped = stanza.wrapped
    if stanza.kind == "local":
        if len(wrapped) == _LOCAL_STANZA_SIZE and wrapped[0] == 1:
            return int.from_bytes(wrapped[1:5], "big")
        return None
    if stanza.kind == "vault":
        match = _VAULT_VERSION.match(wrapped)
        return int(match.group(1)) if match else None
    return None


@dataclass(frozen=True)
class ProviderState:
    """One key provider as maintenance sees it. Versions are None where unknown."""

    kind: str
    current: int | None  # the version new wraps use (LocalKeyring primary, Transit latest)
    minimum: int | None  # the lowest version that still unwraps
    rotations: int | None = None  # KMS: rotations so far (ListKeyRotations), else None
    note: str = ""
    versions: tuple[int, ...] = field(default=())  # every version the provider still opens

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "current": self.current, "minimum": self.minimum}
        if self.rotations is not None:
            out["rotations"] = self.rotations
        if self.note:
            out["note"] = self.note
        return out

    @property
    def marker(self) -> int | None:
        """What changes when this provider rotates: its current version, or for KMS the count
        of rotations. None when neither can be read."""
        return self.current if self.current is not None else self.rotations


def provider_state(provider: KeyProvider) -> ProviderState:
    """Read a provider's versions (one call to Vault or KMS; the local file is read locally)."""
    if provider.kind == "local":
        described = provider.describe()
        retired = set(described.get("retired", ()))
        active = tuple(v for v in described.get("versions", ()) if v not in retired)
        return ProviderState(
            "local", described.get("primary_version"), min(active, default=None), versions=active
        )
    if provider.kind == "vault":
        described = provider.describe()
        latest, minimum = described.get("latest_version"), described.get("min_decryption_version")
        if latest is None:
            return ProviderState(
                "vault",
                None,
                None,
                note="versions unknown: grant read on transit/keys/<key> to see them",
            )
        return ProviderState("vault", int(latest), int(minimum or 1))
    if provider.kind == "aws-kms":
        return ProviderState(
            "aws-kms",
            None,
            None,
            rotations=_kms_rotations(provider),
            note="KMS keeps every backing key of a key: stanzas name no version",
        )
    return ProviderState(provider.kind, None, None, note="a plugin provider: versions unknown")


def _kms_client(provider: KeyProvider) -> Any:
    import boto3  # the kms extra; only reached for an aws-kms provider

    settings = provider.settings()
    session = boto3.session.Session(
        profile_name=settings.get("profile_name"), region_name=settings.get("region_name")
    )
    return session.client("kms", endpoint_url=settings.get("endpoint_url"))


def _kms_rotations(provider: KeyProvider) -> int | None:
    """How many times the KMS key has rotated (automatic and on demand), or None when that
    cannot be read (no kms:ListKeyRotations, or a key without rotation support)."""
    try:
        client = _kms_client(provider)
        key = client.describe_key(KeyId=provider.settings()["key_id"])["KeyMetadata"]["KeyId"]
        count = 0
        for page in client.get_paginator("list_key_rotations").paginate(KeyId=key):
            count += len(page.get("Rotations", ()))
        return count
    except Exception:
        return None


def raise_minimum(provider: KeyProvider, version: int) -> str:
    """Make ``version`` the lowest key version ``provider`` still opens; what was done, in
    words (``KeyProvider.retire_below``: each provider through its own client)."""
    return provider.retire_below(version)
