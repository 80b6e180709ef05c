"""Stores: where sealed blobs live (see ``stores.base.Store``). They know no keys and no format.

``LocalStore`` and ``MemoryStore`` need nothing beyond the standard library. The fsspec-based
stores load on first use, so ``import sealed_results`` never imports fsspec, s3fs, gcsfs or
adlfs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealed_results._lazy import lazy_module_getattr
from sealed_results.stores.base import ObjectInfo, Store
from sealed_results.stores.local import LocalStore
from sealed_results.stores.memory import MemoryStore

if TYPE_CHECKING:
    from sealed_results.stores.azure import AzureBlobStore
    from sealed_results.stores.fsspec import FsspecStore
    from sealed_results.stores.gcs import GCSStore
    from sealed_results.stores.s3 import S3Store

__all__ = [
    "AzureBlobStore",
    "FsspecStore",
    "GCSStore",
    "LocalStore",
    "MemoryStore",
    "ObjectInfo",
    "S3Store",
    "Store",
]

__getattr__ = lazy_module_getattr(
    __name__,
    {
        "FsspecStore": "sealed_results.stores.fsspec",
        "S3Store": "sealed_results.stores.s3",
        "GCSStore": "sealed_results.stores.gcs",
        "AzureBlobStore": "sealed_results.stores.azure",
    },
)
