"""sealed-results: encrypted task results in your own storage, opaque tokens for the orchestrator.

import sealed_results as sr
kp = sr.keyproviders.LocalKeyring("keys.json")
h = sr.handlers.LocalHandler(root="./results", keyprovider=kp)
token = h.write({"rows": 3})      # safe to hand to any orchestrator
h.read(token)                     # -> {"rows": 3}
"""

from __future__ import annotations

from typing import Any

from sealed_results import handlers, keyproviders
from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    KeyProviderError,
    PluginNotFound,
    ResultNotFound,
    SealedResultsError,
    SerializationError,
    StorageError,
    UnsupportedVersion,
)
from sealed_results.handlers.base import ResultHandler
from sealed_results.keyproviders.base import KeyProvider

__all__ = [
    "ConfigError",
    "IntegrityError",
    "KeyProvider",
    "KeyProviderError",
    "PluginNotFound",
    "ResultHandler",
    "ResultNotFound",
    "SealedResultsError",
    "SerializationError",
    "StorageError",
    "UnsupportedVersion",
    "from_profile",
    "handler",
    "handlers",
    "keyproviders",
]

_LAZY = {"handler": "sealed_results.plugins", "from_profile": "sealed_results.config"}


def __getattr__(name: str) -> Any:
    # Plugin discovery and config parsing load on first use: importing stays fast.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__version__ = "0.1.0"
