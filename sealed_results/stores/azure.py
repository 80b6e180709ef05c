"""AzureBlobStore: objects in Azure Blob Storage through adlfs.

Exclusive writes: adlfs's ``open(path, "xb")`` stages the data as uncommitted blocks and commits
the block list with ``If-None-Match: *``, so the service refuses to overwrite an existing blob,
for a one-block result and a many-block one alike. Uncommitted blocks are never readable as a
blob; those of a failed write are dropped by the service (after a week at the latest).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sealed_results.retry import RetryPolicy
from sealed_results.stores.failures import Failure, failure_for_status
from sealed_results.stores.fsspec import FsspecStore

__all__ = ["AzureBlobStore"]

MiB = 1 << 20


class AzureBlobStore(FsspecStore):
    """Objects under ``az://container/prefix`` (``abfs://``, ``abfss://`` too).

    ``storage_options`` go to ``adlfs.AzureBlobFileSystem``: ``account_name`` with
    ``account_key``, ``sas_token``, ``credential`` or service-principal settings, or a
    ``connection_string`` (none of which is pickled; adlfs also reads AZURE_STORAGE_* variables
    and falls back to DefaultAzureCredential), ``blocksize`` for upload blocks.
    """

    name = "azure"
    extra = "azure"
    protocols = ("az", "abfs", "abfss")
    default_storage_options: ClassVar[dict[str, Any]] = {
        # Block size of staged uploads and ranged reads; a streamed write holds about two.
        "blocksize": 8 * MiB,
        "use_listings_cache": False,
    }
    # azure-core retries each request (3 times, backoff from 15 s) before an error reaches us.
    default_retry = RetryPolicy(attempts=2, base_delay=1.0, max_delay=10.0)

    def _sdk_failure(self, exc: BaseException) -> Failure | None:
        from azure.core import exceptions as az

        if isinstance(exc, az.ResourceNotFoundError):
            code = str(getattr(exc, "error_code", "") or "")
            return Failure.NO_CONTAINER if code == "ContainerNotFound" else Failure.MISSING
        if isinstance(exc, az.ResourceExistsError):
            return Failure.EXISTS
        if isinstance(exc, az.ClientAuthenticationError):
            return Failure.DENIED
        if isinstance(exc, az.HttpResponseError) and exc.status_code is not None:
            return failure_for_status(exc.status_code) or Failure.PERMANENT
        if isinstance(exc, az.ServiceRequestError | az.ServiceResponseError):
            return Failure.TRANSIENT  # could not connect, or the connection broke
        return None

    def _container_missing(self) -> bool:
        from fsspec.asyn import sync

        fs = self._fs
        container = self._base.split("/", 1)[0]

        async def properties() -> None:
            async with fs.service_client.get_container_client(container) as client:
                await client.get_container_properties()

        try:
            sync(fs.loop, properties)
        except Exception as exc:
            return self._classify(exc) is Failure.NO_CONTAINER
        return False
