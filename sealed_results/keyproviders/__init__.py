"""Key providers: where key-encryption keys live (local keyring, Vault Transit, AWS KMS)."""

from __future__ import annotations

from typing import Any

from sealed_results.keyproviders.base import DataKey, KeyProvider, Stanza
from sealed_results.keyproviders.local import LocalKeyring

__all__ = [
    "AwsKms",
    "CachingKeyProvider",
    "DataKey",
    "KeyProvider",
    "LocalKeyring",
    "MultiKeyProvider",
    "Stanza",
    "VaultTransit",
]

_LAZY = {
    "VaultTransit": "sealed_results.keyproviders.vault",
    "AwsKms": "sealed_results.keyproviders.kms",
    "MultiKeyProvider": "sealed_results.keyproviders.multi",
    "CachingKeyProvider": "sealed_results.keyproviders.caching",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
