"""``Store.rewrite_head``, the store side of key rotation: the head replaced, the rest kept, by
compare-and-swap; bounded memory on local disk (a kernel copy) and on S3 (UploadPartCopy for
large objects), and the in-memory default everywhere else."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from sealed_results import maintenance
from sealed_results.errors import ResultNotFound, StoreConflict
from sealed_results.handlers import LocalHandler, S3Handler
from sealed_results.keyproviders.local import LocalKeyring
from sealed_results.stores import LocalStore, MemoryStore, Store

MiB = 1 << 20


def _store(request: pytest.FixtureRequest, kind: str) -> Store:
    if kind == "local":
        return LocalStore(request.getfixturevalue("local_root"))
    if kind == "memory":
        return MemoryStore(f"memory://rewrite-{os.urandom(4).hex()}")
    from sealed_results.stores import S3Store

    root, options = request.getfixturevalue("s3_root")
    return S3Store(root, storage_options=options)


def _edit(new_head: bytes, length: int) -> Any:
    def edit(source: BinaryIO) -> tuple[bytes, int]:
        assert len(source.read(length)) == length
        return new_head, length

    return edit


@pytest.mark.parametrize("size", [1000, 24 * MiB + 12345])
@pytest.mark.parametrize("kind", ["local", "s3", "memory"])
def test_rewrite_head_replaces_the_head_and_keeps_the_rest(
    request: pytest.FixtureRequest, kind: str, size: int
) -> None:
    if kind == "memory" and size > MiB:
        pytest.skip("the in-memory default is covered by the small case")
    store = _store(request, kind)
    body = os.urandom(size)
    store.put("obj", b"HEAD-OLD" + body)
    assert store.rewrite_head("obj", _edit(b"NEW-HEAD-LONGER", 8))
    assert store.get("obj") == b"NEW-HEAD-LONGER" + body
    assert not store.rewrite_head("obj", lambda source: None)  # nothing to do
    assert store.get("obj") == b"NEW-HEAD-LONGER" + body
    with pytest.raises(ResultNotFound):
        store.rewrite_head("missing", _edit(b"x", 1))


@pytest.mark.parametrize("kind", ["local", "s3", "memory"])
def test_rewrite_head_never_clobbers_a_concurrent_write(
    request: pytest.FixtureRequest, kind: str
) -> None:
    store = _store(request, kind)
    store.put("obj", b"old-" + b"x" * 1000)

    def edit(source: BinaryIO) -> tuple[bytes, int]:
        source.read(4)
        store.replace("obj", b"new-written-meanwhile")  # another writer wins the race
        return b"rot-", 4

    with pytest.raises(StoreConflict):
        store.rewrite_head("obj", edit)
    assert store.get("obj") == b"new-written-meanwhile"

    def edit_and_delete(source: BinaryIO) -> tuple[bytes, int]:
        source.read(4)
        store.delete("obj")
        return b"rot-", 4

    with pytest.raises((StoreConflict, ResultNotFound)):
        store.rewrite_head("obj", edit_and_delete)
    assert not store.exists("obj")  # a deleted object is not resurrected


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_rotating_large_results_stays_in_bounded_memory(
    request: pytest.FixtureRequest,
    kind: str,
    keyring: LocalKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received = [0]
    if kind == "local":
        h: Any = LocalHandler(str(request.getfixturevalue("local_root")), keyring)
    else:
        from sealed_results.stores import s3

        # moto runs in this process, so tracemalloc would count the server's copies too:
        # count the object bytes the client receives instead.
        read_body, body_read = s3._read_body, s3._BodyReader.read

        def counted_body(body: Any, loop: Any) -> bytes:
            data = read_body(body, loop)
            received[0] += len(data)
            return data

        def counted_read(self: Any, n: int = -1, /) -> bytes:
            data = body_read(self, n)
            received[0] += len(data)
            return data

        monkeypatch.setattr(s3, "_read_body", counted_body)
        monkeypatch.setattr(s3._BodyReader, "read", counted_read)
        root, options = request.getfixturevalue("s3_root")
        h = S3Handler(root, keyring, storage_options=options)
    payload = os.urandom(48 * MiB)
    tokens = [h.write_stream(io.BytesIO(payload)) for _ in range(2)]
    small = h.write({"small": True})
    tracemalloc.start()
    try:
        report = maintenance.rotate(h, apply=True, settle=0, workers=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.state == "done" and report.rewrapped == 4, report.to_dict()
    if kind == "local":
        # Two 48 MiB objects rewrapped at once: a whole-object rewrite would peak near
        # 4 x 48 MiB; the kernel copies the payload instead.
        assert peak < 8 * MiB, peak
    else:
        # Per large object: its header, then 8 MiB after it for the first part; the other
        # 40 MiB are copied by the server (UploadPartCopy).
        assert received[0] < 2 * 9 * MiB, received[0]
    fresh = type(h)(**{**h.settings(), "keyprovider": LocalKeyring(keyring.settings()["path"])})
    for token in tokens:
        with fresh.open(token) as stream:
            assert stream.read() == payload
    assert fresh.read(small) == {"small": True}
    assert maintenance.inventory(fresh).outdated == 0


def test_default_rewrite_respects_the_memory_bound(tmp_path: Path, keyring: LocalKeyring) -> None:
    from sealed_results.handlers import MemoryHandler

    h = MemoryHandler(f"memory://bound-{os.urandom(4).hex()}", keyring)
    big = h.write_stream(io.BytesIO(os.urandom(3 * MiB)))
    h.write("small")
    report = maintenance.rotate(h, apply=True, settle=0, max_in_memory=MiB)
    assert report.skipped == 1 and report.skipped_objects[0]["reason"] == "too-large"
    assert report.state == "incomplete" and report.exit_code == 1
    again = maintenance.rotate(h, apply=True, settle=0, max_in_memory=8 * MiB)
    assert again.state == "done" and again.resumed and again.rewrapped == 1
    assert again.providers_rotated == []  # the same rotation, no second key version
    assert len(h.read(big)) == 3 * MiB
