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

Rewriting a head (key rotation, ``rewrite_head``): the first read asks for the object's first
MiB with its ETag; every later read of it carries ``If-Match`` on that ETag. A rewrite smaller
than ``copy_threshold`` is one conditional upload. A larger one becomes a block list: block 1
holds the new head (and the bytes after it that the first read already holds), the rest is
staged server-side with Put Block From URL (ranges of ``copy_block`` bytes from a read-only SAS
URL of the blob, made with the account key; or the store's own SAS token), and the block list is
committed with ``If-Match``, so a concurrent write or delete is never clobbered or resurrected.
Without a key or SAS (a token credential), or where the service does not implement Put Block
From URL (Azurite up to 3.35, which answers 501), the rest is staged through the client in
``stream_block`` ranges instead: the payload passes through, memory stays bounded all the same.
Staged blocks carry a random per-rewrite prefix (two rewriters never mix blocks); the
uncommitted blocks of a failed rewrite are dropped by the service.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, ClassVar, cast

from fsspec.asyn import sync

from sealed_results.errors import IntegrityError, StorageError, StoreConflict
from sealed_results.retry import RetryPolicy
from sealed_results.stores.base import HeadEdit
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

    # -- rewriting an object's head (key rotation) ----------------------------------------------
    #: A rewrite smaller than this is one conditional upload (held in memory once); a larger
    #: one is committed as a block list whose blocks after the first are staged server-side.
    copy_threshold: ClassVar[int] = 8 * MiB
    #: The first read: whole small objects in one request, and the header of any other.
    head_read: ClassVar[int] = 1 * MiB
    copy_block: ClassVar[int] = 100 * MiB  # Put Block From URL ranges (the service's maximum)
    copy_concurrency: ClassVar[int] = 4  # Put Block From URL requests in flight per object
    stream_block: ClassVar[int] = 8 * MiB  # blocks staged through the client (no URL copy)
    sas_lifetime: ClassVar[timedelta] = timedelta(hours=1)
    _max_blocks: ClassVar[int] = 50_000  # blocks per blob, the service's limit
    #: Cleared (per store) once the service answers 501 to Put Block From URL.
    _copy_from_url: bool = True

    def rewrite_head(self, name: str, edit: HeadEdit) -> bool:
        """``Store.rewrite_head`` in bounded memory; for large objects the payload is copied
        server-side (Put Block From URL) where the store can give the service a readable source
        URL, else staged through the client in ``stream_block`` ranges. Every read after the
        first, and the final write, are conditional on the ETag of the first read."""
        from azure.core import MatchConditions

        fs = self._fs
        container, key = fs.split_path(self._path(name))[:2]
        client = fs.service_client.get_blob_client(container, key)
        try:
            try:
                first, etag, size = sync(fs.loop, self._first_read, client)
            except Exception as exc:
                raise self._ours(exc) from None

            def fetch(offset: int, length: int) -> bytes:
                return self._read_range(client, etag, offset, length)

            reader = _RangeReader(first, size, fetch)
            del first
            result = edit(cast(BinaryIO, reader))
            if result is None:
                return False
            head, consumed = result
            if not 0 <= consumed <= size:
                raise ValueError("edit consumed more than the object holds")
            try:
                if len(head) + size - consumed < self.copy_threshold:
                    data = bytes(head) + reader.rest(consumed)
                    sync(
                        fs.loop,
                        client.upload_blob,
                        data,
                        overwrite=True,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                else:
                    first_block = bytes(head) + reader.held_from(consumed)
                    offset = max(consumed, reader.held_end)
                    reader.drop()
                    self._block_rewrite(client, etag, size, first_block, offset)
            except (StoreConflict, ValueError):
                raise
            except Exception as exc:
                raise self._swap_error(exc) from None
        finally:
            with contextlib.suppress(Exception):
                sync(fs.loop, client.close)  # a child client: the transport stays open
        self._proven = True
        return True

    async def _first_read(self, client: Any) -> tuple[bytes, str, int]:
        """The object's first ``head_read`` bytes, its ETag and its size, in one request."""
        from azure.core.exceptions import HttpResponseError

        try:
            download = await client.download_blob(offset=0, length=self.head_read)
        except HttpResponseError as exc:
            if exc.status_code != 416:
                raise
            properties = await client.get_blob_properties()  # no range of an empty blob
            if properties.size:
                raise StoreConflict() from None  # written meanwhile: look again
            return b"", str(properties.etag), 0
        data = await download.readall()
        # properties.size is the range's; "bytes 0-N/TOTAL" has the object's.
        total = str(download.properties.content_range).rsplit("/", 1)[-1]
        return bytes(data), str(download.properties.etag), int(total)

    def _read_range(self, client: Any, etag: str, offset: int, length: int) -> bytes:
        """Bytes ``offset..offset+length`` of the object, only if it is still ``etag``
        (``StoreConflict`` when it changed or vanished)."""
        from azure.core import MatchConditions

        if length <= 0:
            return b""

        async def read() -> bytes:
            download = await client.download_blob(
                offset=offset,
                length=length,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
            return bytes(await download.readall())

        try:
            data = sync(self._fs.loop, read)
        except Exception as exc:
            raise self._swap_error(exc) from None
        if len(data) != length:
            raise StoreConflict()
        return bytes(data)

    def _block_rewrite(
        self, client: Any, etag: str, size: int, first_block: bytes, offset: int
    ) -> None:
        """Stage ``first_block`` and bytes ``offset..size`` of the old blob as blocks, then
        commit them with ``If-Match: etag``."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import BlobBlock

        loop = self._fs.loop
        prefix = uuid.uuid4().hex[:16]  # our blocks only, whoever else stages on this blob

        def block_id(number: int) -> str:
            return base64.b64encode(f"{prefix}-{number:08d}".encode()).decode()

        sync(loop, client.stage_block, block_id(0), first_block)
        del first_block
        ids: list[str] | None = None
        source = self._source_url(client) if self._copy_from_url else None
        if source is not None:
            ranges = _ranges(offset, size, self.copy_block)
            try:
                sync(loop, self._stage_from_url, client, source, ranges, block_id)
                ids = [block_id(n) for n in range(1, len(ranges) + 1)]
            except HttpResponseError as exc:
                if not _copy_unavailable(exc):
                    raise
                if exc.status_code == 501:
                    self._copy_from_url = False  # not implemented here: never ask again
        if ids is None:
            step = max(self.stream_block, -(-(size - offset) // (self._max_blocks - 1)))
            ranges = _ranges(offset, size, step)
            for number, (start, length) in enumerate(ranges, 1):
                data = self._read_range(client, etag, start, length)
                sync(loop, client.stage_block, block_id(number), data)
                del data
            ids = [block_id(n) for n in range(1, len(ranges) + 1)]
        sync(
            loop,
            client.commit_block_list,
            [BlobBlock(block_id=block_id(0)), *(BlobBlock(block_id=i) for i in ids)],
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )

    async def _stage_from_url(
        self,
        client: Any,
        source: str,
        ranges: list[tuple[int, int]],
        block_id: Callable[[int], str],
    ) -> None:
        """Put Block From URL for each range (block numbers from 1), ``copy_concurrency`` at
        a time; the first error is raised once every request in flight has finished."""
        pending = iter(enumerate(ranges, 1))
        failed: list[BaseException] = []

        async def worker() -> None:
            for number, (start, length) in pending:
                if failed:
                    return
                try:
                    await client.stage_block_from_url(
                        block_id(number), source, source_offset=start, source_length=length
                    )
                except Exception as exc:
                    failed.append(exc)
                    return

        workers: list[Awaitable[None]] = [worker() for _ in range(self.copy_concurrency)]
        await asyncio.gather(*workers)
        if failed:
            raise failed[0]

    def _source_url(self, client: Any) -> str | None:
        """A URL of the blob the service can read for Put Block From URL: a read-only SAS
        made with the account key, or the store's own SAS token; None for other credentials
        (a token credential, anonymous access), which then stage through the client."""
        from urllib.parse import urlsplit

        url = str(client.url)
        credential = client.credential
        account = getattr(credential, "account_name", None)
        account_key = getattr(credential, "account_key", None)
        named = getattr(credential, "named_key", None)
        if named is not None:
            account, account_key = named
        if account and account_key:
            from azure.storage.blob import BlobSasPermissions, generate_blob_sas

            sas = generate_blob_sas(
                account_name=str(client.account_name),
                container_name=str(client.container_name),
                blob_name=str(client.blob_name),
                account_key=str(account_key),
                permission=BlobSasPermissions(read=True),
                expiry=datetime.now(UTC) + self.sas_lifetime,
            )
            return f"{url}{'&' if urlsplit(url).query else '?'}{sas}"
        if "sig=" in urlsplit(url).query:
            return url  # the store's own SAS; one without read permission fails over (403)
        return None

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


def _ranges(start: int, end: int, step: int) -> list[tuple[int, int]]:
    """``(offset, length)`` pieces of ``start..end``, each at most ``step`` bytes."""
    return [(offset, min(step, end - offset)) for offset in range(start, end, step)]


def _copy_unavailable(exc: Any) -> bool:
    """Whether a Put Block From URL failure means the service will not copy for us (not
    implemented, or the source URL not accepted), so staging through the client may work."""
    code = str(getattr(exc, "error_code", "") or "")
    return exc.status_code in (401, 403, 501) or code in {
        "CannotVerifyCopySource",
        "APINotImplemented",
        "FeatureNotSupported",
    }


class _RangeReader:
    """The object's bytes for ``edit``: what the first read holds, then ranges fetched on
    demand (each conditional on the ETag). Keeps what it has read, up to ``_HELD_LIMIT``: a
    header is small."""

    _HELD_LIMIT = 16 * MiB

    def __init__(self, first: bytes, size: int, fetch: Callable[[int, int], bytes]) -> None:
        self._held = bytearray(first)
        self._size = size
        self._fetch = fetch
        self._position = 0

    @property
    def held_end(self) -> int:
        return len(self._held)

    def read(self, n: int = -1, /) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._position + n)
        if end > len(self._held):
            if end > self._HELD_LIMIT:
                raise ValueError("edit read too much of the object")
            self._held += self._fetch(len(self._held), end - len(self._held))
        data = bytes(self._held[self._position : end])
        self._position = end
        return data

    def readable(self) -> bool:
        return True

    def held_from(self, offset: int) -> bytes:
        return bytes(self._held[offset:])

    def rest(self, offset: int) -> bytes:
        """Bytes ``offset..size`` (the object is small: see ``copy_threshold``)."""
        start = max(offset, len(self._held))
        return bytes(self._held[offset:]) + self._fetch(start, self._size - start)

    def drop(self) -> None:
        self._held = bytearray()

    def close(self) -> None:
        self.drop()
