"""Result handlers: one API (``ResultHandler``) over one fsspec core, thin per store.

Cloud handlers import their SDKs only when used, so ``import sealed_results`` stays light.
"""

from __future__ import annotations

from typing import Any

from sealed_results.handlers.base import ResultHandler
from sealed_results.handlers.fsspec_core import FsspecHandler
from sealed_results.handlers.local import LocalHandler
from sealed_results.handlers.memory import MemoryHandler

__all__ = [
    "AzureBlobHandler",
    "FsspecHandler",
    "GCSHandler",
    "LocalHandler",
    "MemoryHandler",
    "ResultHandler",
    "S3Handler",
]

_LAZY = {
    "S3Handler": "sealed_results.handlers.s3",
    "GCSHandler": "sealed_results.handlers.gcs",
    "AzureBlobHandler": "sealed_results.handlers.azure",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
