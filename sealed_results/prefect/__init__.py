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

The other paths by which data reaches Prefect's API are closed here too, each opt-in:
sealed parameters (``SealedValue``, ``Revealed[T]``, ``seal()``), sealed exception messages
(``sealed(seal_exceptions=True)`` or ``$SEALED_RESULTS_SEAL_EXCEPTIONS``) and redaction of the
logs shipped to the API (active on import). ``sealed-results audit`` lists what still leaks;
``sealed-results reveal`` shows a run with its sealed values opened locally.
"""

from __future__ import annotations

from sealed_results.prefect import failures, logs
from sealed_results.prefect.cache import SealedCachePolicy, seal_secret_inputs
from sealed_results.prefect.decorators import RunNameWarning, sealed, sealed_flow
from sealed_results.prefect.failures import SEAL_EXCEPTIONS_ENV
from sealed_results.prefect.logs import RedactingFilter
from sealed_results.prefect.parameters import Revealed, SealedValue, seal, unseal
from sealed_results.prefect.serializer import SERIALIZER_TYPE, SealedSerializer
from sealed_results.prefect.storage import (
    BLOCK_TYPE_SLUG,
    PrefectResultNotFound,
    SealedResultStorage,
    document_name,
    storage_name,
)
from sealed_results.sealing import REDACTOR, RemoteException

__all__ = [
    "BLOCK_TYPE_SLUG",
    "REDACTOR",
    "SEAL_EXCEPTIONS_ENV",
    "SERIALIZER_TYPE",
    "PrefectResultNotFound",
    "RedactingFilter",
    "RemoteException",
    "Revealed",
    "RunNameWarning",
    "SealedCachePolicy",
    "SealedResultStorage",
    "SealedSerializer",
    "SealedValue",
    "document_name",
    "install",
    "seal",
    "seal_secret_inputs",
    "sealed",
    "sealed_flow",
    "storage_name",
    "unseal",
]


def install() -> None:
    """Hook sealed exception messages and log redaction into Prefect (idempotent; done when
    this module is imported, which the ``prefect.collections`` entry point does in workers)."""
    failures.install()
    logs.install()


install()
