"""Result handlers: ``ResultHandler`` (the sealing pipeline over any ``Store``) and its named
forms, one per built-in store."""

from __future__ import annotations

from sealed_results.handlers.base import ResultHandler
from sealed_results.handlers.named import (
    AzureBlobHandler,
    FsspecHandler,
    GCSHandler,
    LocalHandler,
    MemoryHandler,
    S3Handler,
)

__all__ = [
    "AzureBlobHandler",
    "FsspecHandler",
    "GCSHandler",
    "LocalHandler",
    "MemoryHandler",
    "ResultHandler",
    "S3Handler",
]
