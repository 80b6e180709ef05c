"""The named handlers: ``ResultHandler`` over one store class each.

``S3Handler(root, keyprovider, storage_options=...)`` is ``ResultHandler`` with an ``S3Store``
built from ``root`` and the store's own keyword arguments; nothing else differs. A handler
plugin is written the same way: a store class and a name (docs/config.md).
"""

from __future__ import annotations

from sealed_results.handlers.base import ResultHandler
from sealed_results.stores.azure import AzureBlobStore
from sealed_results.stores.fsspec import FsspecStore
from sealed_results.stores.gcs import GCSStore
from sealed_results.stores.local import LocalStore
from sealed_results.stores.memory import MemoryStore
from sealed_results.stores.s3 import S3Store

__all__ = [
    "AzureBlobHandler",
    "FsspecHandler",
    "GCSHandler",
    "LocalHandler",
    "MemoryHandler",
    "S3Handler",
]


class LocalHandler(ResultHandler):
    """Results under a local (or mounted) directory: ``LocalHandler(root, keyprovider)``."""

    name = "local"
    store_class = LocalStore


class MemoryHandler(ResultHandler):
    """Results in process memory (tests, notebooks): ``MemoryHandler("memory://x", kp)``."""

    name = "memory"
    store_class = MemoryStore


class FsspecHandler(ResultHandler):
    """Results on any fsspec filesystem URL; ``storage_options`` go to fsspec."""

    name = "fsspec"
    store_class = FsspecStore


class S3Handler(ResultHandler):
    """Results under ``s3://bucket/prefix``; ``storage_options`` go to s3fs."""

    name = "s3"
    store_class = S3Store


class GCSHandler(ResultHandler):
    """Results under ``gs://bucket/prefix``; ``storage_options`` go to gcsfs."""

    name = "gcs"
    store_class = GCSStore


class AzureBlobHandler(ResultHandler):
    """Results under ``az://container/prefix``; ``storage_options`` go to adlfs."""

    name = "azure"
    store_class = AzureBlobStore
