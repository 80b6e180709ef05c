"""Key providers (where key-encryption keys live: a local keyring, Vault Transit, AWS KMS) and
the key-materials layer over them (several providers at once, a data-key cache)."""

from __future__ import annotations

from sealed_results._lazy import lazy_attributes
from sealed_results.format.stanza import Stanza
from sealed_results.keyproviders.base import KeyProvider
from sealed_results.keyproviders.caching import CachingKeyProvider
from sealed_results.keyproviders.local import LocalKeyring
from sealed_results.keyproviders.materials import (
    DataKey,
    KeyMaterials,
    MultiKeyProvider,
    ProviderMaterials,
    as_materials,
)

__all__ = [
    "AwsKms",
    "CachingKeyProvider",
    "DataKey",
    "KeyMaterials",
    "KeyProvider",
    "LocalKeyring",
    "MultiKeyProvider",
    "ProviderMaterials",
    "Stanza",
    "VaultTransit",
    "as_materials",
]

# Their SDKs (hvac, boto3) load on first use, so ``import sealed_results`` stays light.
__getattr__ = lazy_attributes(
    __name__,
    {
        "VaultTransit": "sealed_results.keyproviders.vault",
        "AwsKms": "sealed_results.keyproviders.kms",
    },
)
