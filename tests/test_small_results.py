"""The small-result path: payloads under one segment are sealed in memory and stored in one call,
and small blobs are read whole. It must write exactly the blob format the streaming path writes,
keep the same guarantees (exclusive, nothing partial left, tampering caught) and hold no memory.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from sealed_results.errors import IntegrityError, StorageError
from sealed_results.format import (
    DESCRIPTOR_SIZE,
    TAG_SIZE,
    BlobHeader,
    BlobReader,
    BlobWriter,
    Stanza,
    buffers,
    open_descriptor,
    read_exact,
    read_header,
    seal_segments,
)
from sealed_results.handlers import LocalHandler
from sealed_results.handlers.base import object_name
from sealed_results.keyproviders.local import LocalKeyring

SEG = 1 << 16


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 7])
def test_seal_segments_writes_what_the_writer_writes(size: int) -> None:
    payload = os.urandom(size)
    stanzas = (Stanza("local", os.urandom(57)),)
    header, key = BlobHeader.new(
        os.urandom(32), os.urandom(16), os.urandom(16), stanzas, segment_log2=16
    )
    sink = io.BytesIO()
    with BlobWriter(sink, header.cipher(key)) as writer:
        writer.write(payload)
    assert seal_segments(payload, header.cipher(key), b"") == sink.getvalue()


def blob_of(handler: LocalHandler, root: Path, token: str) -> bytes:
    return (root / object_name(handler._locate(token)[0])).read_bytes()


def stream_open(blob: bytes, handler: LocalHandler) -> bytes:
    source = io.BytesIO(blob)
    header = read_header(source)
    data_key = handler.keyprovider.open_data_key(header.key_id, header.stanzas)
    cipher = header.cipher(header.payload_key(data_key))
    assert open_descriptor(cipher, read_exact(source, DESCRIPTOR_SIZE)) == "msgpack"
    with BlobReader(source, cipher) as reader:
        return reader.read()  # type: ignore[no-any-return]


# msgpack packs a bytes value of n < 65,536 bytes as bin 16: 3 bytes of header.
@pytest.mark.parametrize("size", [0, 1000, SEG - 4, SEG - 3, SEG, 2 * SEG])
def test_small_and_streamed_writes_store_one_format(
    local_handler: LocalHandler, local_root: Path, size: int
) -> None:
    value = os.urandom(size)
    token = local_handler.write(value)
    assert local_handler.read(token) == value
    with local_handler.open(token) as stream:
        assert stream.read().endswith(value)
    # Either path's blob opens with the streaming reader: the same format.
    payload = stream_open(blob_of(local_handler, local_root, token), local_handler)
    assert payload.endswith(value) and len(payload) - len(value) <= 5  # the bin header


def test_small_write_is_exclusive(local_handler: LocalHandler, local_root: Path) -> None:
    token = local_handler.write("first")
    name = object_name(local_handler._locate(token)[0])
    with pytest.raises(FileExistsError):
        local_handler.store.put(name, b"second")
    assert local_handler.read(token) == "first"
    assert all(not p.name.startswith(".tmp") for p in local_root.iterdir())


def test_without_unnamed_files_small_and_large_writes_use_named_temporaries(
    local_root: Path, keyring: LocalKeyring
) -> None:
    handler = LocalHandler(str(local_root), keyring, segment_size=SEG)
    handler.store._unnamed_files = False  # as on a filesystem that refuses O_TMPFILE
    small, large = b"s" * 100, os.urandom(3 * SEG)
    tokens = [handler.write(small), handler.write(large), handler.write_stream(io.BytesIO(large))]
    assert [handler.read(t) for t in tokens] == [small, large, large]
    assert all(not p.name.startswith(".tmp") for p in local_root.iterdir())
    name = object_name(handler._locate(tokens[0])[0])
    with pytest.raises(FileExistsError):
        handler.store.put(name, b"again")
    assert all(not p.name.startswith(".tmp") for p in local_root.iterdir())


def test_small_blob_with_trailing_or_missing_bytes_fails(
    local_handler: LocalHandler, local_root: Path
) -> None:
    token = local_handler.write({"small": True})
    path = local_root / object_name(local_handler._locate(token)[0])
    original = path.read_bytes()
    for tampered in (original + b"\x00", original[:-1], original + original[-16:]):
        path.write_bytes(tampered)
        with pytest.raises(IntegrityError):
            local_handler.read(token)
        with pytest.raises(IntegrityError), local_handler.open(token) as stream:
            stream.read()
    path.write_bytes(original)
    assert local_handler.read(token) == {"small": True}


def test_storage_failure_of_a_small_write_is_a_storage_error(
    local_handler: LocalHandler, local_root: Path
) -> None:
    local_handler.write("the token keyset is loaded now")
    shutil.rmtree(local_root)
    local_root.write_bytes(b"")  # the root is now a file: creating in it fails (ENOTDIR)
    with pytest.raises(StorageError) as caught:
        local_handler.write("x")
    assert str(local_root) not in str(caught.value)
    assert local_root.read_bytes() == b""


def test_reading_blobs_of_many_sizes_keeps_only_full_segment_spares(
    local_handler: LocalHandler,
) -> None:
    sizes = [10, 5_000, SEG - 100, SEG + 10, SEG + 5_000, 2 * SEG + 77, 3 * SEG - 1]
    tokens = [local_handler.write_stream(io.BytesIO(os.urandom(n))) for n in sizes]
    for token in tokens:
        local_handler.read(token)
        with local_handler.open(token) as stream:
            stream.read()
    # Spares are keyed by size: buffers of odd sizes kept there would pile up without bound.
    # Only segments (64 KiB to 1 MiB, here or in earlier tests) and their ciphertexts remain.
    full = {1 << log2 for log2 in range(16, 21)}
    assert set(buffers.SPARES.buffers) <= full | {n + TAG_SIZE for n in full}
