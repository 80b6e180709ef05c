"""Prefect 3 integration: sealed results chosen per task or flow with one decorator argument.

    from prefect import flow, task
    from sealed_results.prefect import sealed, sealed_flow

    @task(**sealed("prod"))          # profile from sealed-results.toml; None = the default
    def extract(): ...

    @flow(**sealed_flow("prod"))
    def pipeline(): ...

Prefect's API then stores a block holding only the profile name, a keyed hash as each result's
storage key, and the serializer's type; the record (value and metadata) is sealed in the
profile's store. Importing this module registers the storage block and the serializer with
Prefect; the ``prefect.collections`` entry point imports it in workers and wherever a sealed
storage block is loaded. docs/prefect.md has the details.
"""

from __future__ import annotations

from sealed_results.prefect.cache import SealedCachePolicy, seal_secret_inputs
from sealed_results.prefect.decorators import RunNameWarning, sealed, sealed_flow
from sealed_results.prefect.serializer import SERIALIZER_TYPE, SealedSerializer
from sealed_results.prefect.storage import (
    BLOCK_TYPE_SLUG,
    PrefectResultNotFound,
    SealedResultStorage,
    document_name,
    storage_name,
)

__all__ = [
    "BLOCK_TYPE_SLUG",
    "SERIALIZER_TYPE",
    "PrefectResultNotFound",
    "RunNameWarning",
    "SealedCachePolicy",
    "SealedResultStorage",
    "SealedSerializer",
    "document_name",
    "seal_secret_inputs",
    "sealed",
    "sealed_flow",
    "storage_name",
]
