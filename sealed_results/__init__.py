"""sealed-results: encrypted task results in your own storage, opaque tokens for the orchestrator.

import sealed_results as sr
kp = sr.keyproviders.LocalKeyring("keys.json")
h = sr.handlers.LocalHandler(root="./results", keyprovider=kp)
token = h.write({"rows": 3})      # safe to hand to any orchestrator
h.read(token)                     # -> {"rows": 3}

Public modules: ``handlers``, ``keyproviders``, ``stores``, ``serializers``, ``format``,
``errors``, ``config``, ``plugins``, ``testing``; docs/architecture.md shows the layers.
"""

from __future__ import annotations

from sealed_results import handlers, keyproviders, stores
from sealed_results._lazy import lazy_attributes
from sealed_results._version import __version__
from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    KeyProviderError,
    KeysetMissing,
    PluginNotFound,
    ResultNotFound,
    SealedResultsError,
    SerializationError,
    StorageError,
    StoreConflict,
    UnsupportedVersion,
)
from sealed_results.handlers.base import ResultHandler
from sealed_results.keyproviders.base import KeyProvider
from sealed_results.keyproviders.materials import KeyMaterials
from sealed_results.serializers import Serializer
from sealed_results.stores.base import Store

__all__ = [
    "ConfigError",
    "IntegrityError",
    "KeyMaterials",
    "KeyProvider",
    "KeyProviderError",
    "KeysetMissing",
    "PluginNotFound",
    "ResultHandler",
    "ResultNotFound",
    "SealedResultsError",
    "SerializationError",
    "Serializer",
    "StorageError",
    "Store",
    "StoreConflict",
    "UnsupportedVersion",
    "__version__",
    "from_profile",
    "handler",
    "handlers",
    "keyproviders",
    "stores",
]

# Plugin discovery and config parsing load on first use: importing stays fast.
__getattr__ = lazy_attributes(
    __name__, {"handler": "sealed_results.plugins", "from_profile": "sealed_results.config"}
)
