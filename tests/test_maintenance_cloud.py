"""Key rotation on the Azure and GCS stores, on their real test servers (Azurite,
fake-gcs-server): ``AzureBlobStore.rewrite_head`` (head replaced, the rest kept, compare-and-swap
on the ETag, bounded client memory, server-side copies where the service offers them) and a
whole ``maintenance.rotate(apply=True)`` on both stores with the local keyring."""

from __future__ import annotations

import io
import os
import tracemalloc
import urllib.error
import urllib.request
from typing import Any, BinaryIO

import pytest

from sealed_results import maintenance
from sealed_results.errors import ResultNotFound, StoreConflict
from sealed_results.handlers import AzureBlobHandler, GCSHandler
from sealed_results.keyproviders.local import LocalKeyring
from sealed_results.stores.azure import AzureBlobStore

MiB = 1 << 20
LARGE = 24 * MiB + 12345


@pytest.fixture
def azure_store(azure_root: tuple[str, dict[str, Any]]) -> AzureBlobStore:
    root, options = azure_root
    return AzureBlobStore(root, storage_options=options)


def _edit(new_head: bytes, length: int) -> Any:
    def edit(source: BinaryIO) -> tuple[bytes, int]:
        assert len(source.read(length)) == length
        return new_head, length

    return edit


@pytest.fixture
def download_counter(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of the object the client downloads after the first read (which is at most
    ``head_read``): every later read goes through ``_read_range``."""
    counted = [0]
    original = AzureBlobStore._read_range

    def counting(self: AzureBlobStore, client: Any, etag: str, offset: int, length: int) -> bytes:
        data = original(self, client, etag, offset, length)
        counted[0] += len(data)
        return data

    monkeypatch.setattr(AzureBlobStore, "_read_range", counting)
    return counted


@pytest.fixture
def url_copies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Put Block From URL as the service does it, for Azurite <= 3.35 (which answers 501):
    the block is fetched from the source URL alone, over plain HTTP with no account key, so
    Azurite itself checks the SAS the store made; then staged. Records (offset, length)."""
    from azure.storage.blob.aio import BlobClient

    calls: list[tuple[int, int]] = []

    async def stage_block_from_url(
        self: Any,
        block_id: str,
        source_url: str,
        source_offset: int | None = None,
        source_length: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        assert source_offset is not None and source_length is not None
        assert source_length <= AzureBlobStore.copy_block
        calls.append((source_offset, source_length))
        end = source_offset + source_length - 1
        request = urllib.request.Request(
            source_url, headers={"Range": f"bytes={source_offset}-{end}"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            data = response.read()
        assert len(data) == source_length
        return dict(await self.stage_block(block_id, data))

    monkeypatch.setattr(BlobClient, "stage_block_from_url", stage_block_from_url)
    return calls


@pytest.mark.parametrize("size", [1000, LARGE])
def test_rewrite_head_replaces_the_head_and_keeps_the_rest(
    azure_store: AzureBlobStore, download_counter: list[int], size: int
) -> None:
    body = os.urandom(size)
    azure_store.put("obj", b"HEAD-OLD" + body)
    assert azure_store.rewrite_head("obj", _edit(b"NEW-HEAD-LONGER", 8))
    assert azure_store.get("obj") == b"NEW-HEAD-LONGER" + body
    if size > MiB:
        # Azurite (up to 3.35) does not implement Put Block From URL: the rest is staged through
        # the client, once, in ranges; and the store stops asking after the first 501.
        assert not azure_store._copy_from_url
        assert download_counter[0] == size + 8 - AzureBlobStore.head_read
    assert not azure_store.rewrite_head("obj", lambda source: None)  # nothing to do
    assert azure_store.get("obj") == b"NEW-HEAD-LONGER" + body
    assert azure_store.rewrite_head("obj", _edit(b"H", 15))  # shorter head
    assert azure_store.get("obj") == b"H" + body
    with pytest.raises(ResultNotFound):
        azure_store.rewrite_head("missing", _edit(b"x", 1))
    azure_store.put("empty", b"")
    assert azure_store.rewrite_head("empty", lambda source: (b"new", len(source.read())))
    assert azure_store.get("empty") == b"new"


def test_large_rewrite_copies_server_side_with_a_sas(
    azure_store: AzureBlobStore,
    download_counter: list[int],
    url_copies: list[tuple[int, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(AzureBlobStore, "copy_block", 10 * MiB)  # several ranges
    body = os.urandom(LARGE)
    azure_store.put("obj", b"HEAD-OLD" + body)
    assert azure_store.rewrite_head("obj", _edit(b"NEW-HEAD", 8))
    assert azure_store.get("obj") == b"NEW-HEAD" + body
    assert download_counter[0] == 0  # nothing after the first read passed through the client
    head_read = AzureBlobStore.head_read
    assert url_copies[0][0] == head_read  # the first MiB went with the new head, in block 1
    assert sum(length for _, length in url_copies) == LARGE + 8 - head_read
    assert all(length <= 10 * MiB for _, length in url_copies)
    # The SAS matters: the blob itself is private.
    client = azure_store._fs.service_client.get_blob_client(
        *azure_store._fs.split_path(azure_store._path("obj"))[:2]
    )
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(client.url, timeout=30)


@pytest.mark.parametrize("size", [1000, LARGE])
def test_rewrite_never_clobbers_a_concurrent_write_or_delete(
    azure_store: AzureBlobStore, size: int
) -> None:
    azure_store.put("obj", b"old-" + os.urandom(size))

    def edit(source: BinaryIO) -> tuple[bytes, int]:
        source.read(4)
        azure_store.replace("obj", b"new-written-meanwhile")  # another writer wins the race
        return b"rot-", 4

    with pytest.raises(StoreConflict):
        azure_store.rewrite_head("obj", edit)
    assert azure_store.get("obj") == b"new-written-meanwhile"

    azure_store.replace("obj", b"old-" + os.urandom(size))

    def edit_and_delete(source: BinaryIO) -> tuple[bytes, int]:
        source.read(4)
        azure_store.delete("obj")
        return b"rot-", 4

    with pytest.raises((StoreConflict, ResultNotFound)):
        azure_store.rewrite_head("obj", edit_and_delete)
    assert not azure_store.exists("obj")  # a deleted object is not resurrected
    assert "obj" not in list(azure_store.list())


def test_server_side_copy_is_committed_only_on_the_etag_read(
    azure_store: AzureBlobStore, url_copies: list[tuple[int, int]]
) -> None:
    """Put Block From URL copies whatever the blob holds when it runs (the SDK offers no
    source condition): the If-Match on the block-list commit is what refuses a blob that
    changed after the head was read."""
    azure_store.put("obj", b"old-" + os.urandom(LARGE))
    replacement = b"new-" + os.urandom(LARGE)

    def edit(source: BinaryIO) -> tuple[bytes, int]:
        source.read(4)
        azure_store.replace("obj", replacement)
        return b"rot-", 4

    with pytest.raises(StoreConflict):
        azure_store.rewrite_head("obj", edit)
    assert url_copies  # the copy ran, from the replaced blob...
    assert azure_store.get("obj") == replacement  # ...and was never committed over it


def test_large_rewrite_stays_in_bounded_memory(azure_store: AzureBlobStore) -> None:
    """Azurite runs in another process: tracemalloc sees the client only. Streaming through
    the client (the path Azurite takes) holds about one ``stream_block`` at a time."""
    size = 48 * MiB
    with azure_store.create("obj") as sink:
        chunk = os.urandom(MiB)
        for _ in range(size // MiB):
            sink.write(chunk)
    tracemalloc.start()
    try:
        assert azure_store.rewrite_head("obj", _edit(b"NEW!", 4))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * AzureBlobStore.stream_block, peak  # the default: over 2 x 48 MiB
    with azure_store.open("obj") as stream:
        assert stream.read(4) == b"NEW!"
        assert stream.read(MiB - 4) == chunk[4:]


def _rotate_and_read_back(h: Any, keyring: LocalKeyring, large: int) -> None:
    small = {f"r{i}": h.write({"i": i, "pad": "x" * (i * 37)}) for i in range(12)}
    payload = os.urandom(large)
    big = h.write_stream(io.BytesIO(payload))
    before = maintenance.inventory(h)
    report = maintenance.rotate(h, apply=True, settle=0, workers=4)
    assert report.state == "done" and report.failed == 0, report.to_dict()
    assert report.rewrapped == before.objects + 1  # every result and the keyset
    fresh = type(h)(**{**h.settings(), "keyprovider": LocalKeyring(keyring.settings()["path"])})
    for i, token in enumerate(small.values()):  # the tokens issued before: unchanged, valid
        assert fresh.read(token) == {"i": i, "pad": "x" * (i * 37)}
    with fresh.open(big) as stream:
        assert stream.read() == payload
    assert maintenance.inventory(fresh).outdated == 0
    again = maintenance.rotate(fresh, apply=True, settle=0, rewrap_only=True)
    assert again.rewrapped == 0 and again.failed == 0, again.to_dict()


def test_rotate_on_azure(azure_root: tuple[str, dict[str, Any]], keyring: LocalKeyring) -> None:
    root, options = azure_root
    _rotate_and_read_back(AzureBlobHandler(root, keyring, storage_options=options), keyring, LARGE)


def test_rotate_on_gcs(gcs_root: tuple[str, dict[str, Any]], keyring: LocalKeyring) -> None:
    # GCS keeps the Store default (read whole, swap on the generation): see docs/maintenance.md.
    root, options = gcs_root
    _rotate_and_read_back(GCSHandler(root, keyring, storage_options=options), keyring, 12 * MiB)
