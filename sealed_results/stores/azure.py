"""AzureBlobStore: objects in Azure Blob Storage through adlfs.

Exclusive writes: adlfs's ``open(path, "xb")`` stages the data as uncommitted blocks and commits
the block list with ``If-None-Match: *``, so the service refuses to overwrite an existing blob,
for a one-block result and a many-block one alike. Uncommitted blocks are never readable as a
blob; those of a failed write are dropped by the service (after a week at the latest).

Compare-and-swap: the version is the blob's ETag from the download that carried the bytes (the
SDK pins later chunks of a large download to that ETag too); ``swap`` uploads with
``If-Match: <etag>`` (``If-None-Match: *`` to create), which the service checks. A bounded read
asks for ``max_size + 1`` bytes; the service refuses any range of an empty blob (416), which
one properties request then tells apart.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fsspec.asyn import sync

from sealed_results.errors import IntegrityError, StorageError
from sealed_results.retry import RetryPolicy
from sealed_results.stores.failures import MESSAGES, Failure, failure_for_status
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
    atomic_swap = True
    protocols = ("az", "abfs", "abfss")
    time_keys = ("last_modified",)
    default_storage_options: ClassVar[dict[str, Any]] = {
        # Block size of staged uploads and ranged reads; a streamed write holds about two.
        "blocksize": 8 * MiB,
        "use_listings_cache": False,
    }
    # azure-core retries each request (3 times, backoff from 15 s) before an error reaches us.
    default_retry = RetryPolicy(attempts=2, base_delay=1.0, max_delay=10.0)

    def _read_versioned(self, path: str, max_size: int | None) -> tuple[bytes, str]:
        from azure.core.exceptions import HttpResponseError

        fs = self._fs
        container, key = fs.split_path(path)[:2]

        async def read() -> tuple[bytes, str]:
            async with fs.service_client.get_blob_client(container, key) as client:
                for _ in range(3):
                    try:
                        if max_size is None:
                            download = await client.download_blob()
                        else:
                            download = await client.download_blob(offset=0, length=max_size + 1)
                    except HttpResponseError as exc:
                        if max_size is None or exc.status_code != 416:
                            raise
                        # No range of an empty blob exists: is it (still) empty?
                        properties = await client.get_blob_properties()
                        if properties.size == 0:
                            return b"", str(properties.etag)
                        continue  # replaced meanwhile: read again
                    data = await download.readall()
                    if max_size is not None and len(data) > max_size:
                        raise IntegrityError()  # more than max_size bytes follow: not read
                    return bytes(data), str(download.properties.etag)
            raise StorageError(MESSAGES[Failure.TRANSIENT])

        data, version = sync(fs.loop, read)
        return bytes(data), str(version)

    def _write_conditional(self, path: str, data: bytes, version: str | None) -> None:
        from azure.core import MatchConditions

        fs = self._fs
        container, key = fs.split_path(path)[:2]

        async def write() -> None:
            async with fs.service_client.get_blob_client(container, key) as client:
                if version is None:
                    await client.upload_blob(data, overwrite=False)  # If-None-Match: *
                else:
                    await client.upload_blob(
                        data,
                        overwrite=True,
                        etag=version,
                        match_condition=MatchConditions.IfNotModified,
                    )

        sync(fs.loop, write)

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
