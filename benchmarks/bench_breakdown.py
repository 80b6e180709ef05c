"""Where the time goes: the profile behind the targets that fixed costs bound.

Two breakdowns, each step timed on its own, in microseconds:

- ``blob``: the fixed work of one 1 MiB blob around its AES-GCM (what keeps 1 MiB below the
  64 MiB ratio). Each step is timed warm (back to back, caches hot) and cold (right after an
  AES-GCM pass over 1 MiB, which is what precedes it in a stream of blobs: that pass evicts
  the interpreter's working set from the core's L2 cache).
- ``pair``: one 1 KiB write+read pair on a ``LocalHandler`` with a ``LocalKeyring``, step by
  step, next to a plain file create+read of the same bytes, on each filesystem (what bounds
  pairs per second on a disk whose file creation is slow).

The steps call the same functions ``write``/``read`` call, in the same order; their sum is
shown beside the measured whole, so nothing large hides between them.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks._common import MiB
from sealed_results.format import (
    DESCRIPTOR_SIZE,
    STREAM_SERIALIZER,
    BlobHeader,
    BlobReader,
    BlobWriter,
    open_descriptor,
    open_segments,
    read_exact,
    read_header,
    seal_descriptor,
    seal_segments,
)
from sealed_results.handlers import LocalHandler
from sealed_results.handlers.base import object_name
from sealed_results.keyproviders import LocalKeyring, as_materials

_DICT = {"id": 12345, "name": "result-name", "values": [i * 0.5 for i in range(100)]}


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def _warm(step: Callable[[], Any], number: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(number):
            step()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def _cold(step: Callable[[], Any], evict: Callable[[], Any], number: int) -> float:
    """Median time of ``step`` right after ``evict()``."""
    times = []
    for _ in range(number):
        evict()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def blob_steps(keyring: LocalKeyring, number: int) -> dict[str, Any]:
    data_key = as_materials(keyring).new_data_key(MiB)
    object_id = os.urandom(16)
    payload = os.urandom(MiB)
    header, payload_key = BlobHeader.new(
        data_key.plaintext, object_id, data_key.key_id, data_key.stanzas
    )

    def write_blob(sink: Any, data: bytes) -> None:
        """What ``write_stream`` does around its segments: the cipher, the header and sealed
        descriptor, the writer, the final segment."""
        cipher = header.cipher(payload_key)
        sink.write(header.encode() + seal_descriptor(cipher, STREAM_SERIALIZER))
        with BlobWriter(sink, cipher) as writer:
            writer.write(data)

    sink = io.BytesIO()
    write_blob(sink, payload)
    blob = sink.getvalue()
    head_len = len(header.encode())
    out = bytearray(MiB + 16)
    aad = header.fixed
    raw = AESGCM(payload_key)

    def evict() -> None:
        raw.encrypt_into(b"\0" * 12, payload, aad, out)

    def writer_setup_and_final() -> None:
        write_blob(_Discard(), b"")

    empty = io.BytesIO()
    write_blob(empty, b"")
    empty_rest = empty.getvalue()[head_len:]  # the sealed descriptor and the final segment

    buffer = bytearray(MiB)

    def reader_setup_and_final() -> None:
        source = io.BytesIO(empty_rest)
        cipher = header.cipher(payload_key)
        open_descriptor(cipher, read_exact(source, DESCRIPTOR_SIZE))
        with BlobReader(source, cipher) as reader:
            while reader.readinto(buffer):
                pass

    steps: dict[str, Callable[[], Any]] = {
        "encrypt: BlobHeader.new (salt, HKDF-SHA256, commitment)": lambda: BlobHeader.new(
            data_key.plaintext, object_id, data_key.key_id, data_key.stanzas
        ),
        "encrypt: cipher, header + descriptor, writer, final segment": writer_setup_and_final,
        "decrypt: read_header (parse 104 bytes + key section)": lambda: read_header(
            io.BytesIO(blob)
        ),
        "decrypt: payload_key (HKDF-SHA256, commitment check)": lambda: header.payload_key(
            data_key.plaintext
        ),
        "decrypt: cipher, descriptor, reader, final segment, end check": reader_setup_and_final,
        "reference: AESGCM(key) (raw pays it too)": lambda: AESGCM(payload_key),
        "reference: raw AES-256-GCM over 1 MiB": evict,
    }
    rows = {
        name: {"warm_us": _warm(step, number) * 1e6, "cold_us": _cold(step, evict, number) * 1e6}
        for name, step in steps.items()
    }
    return {"rows": rows}


def pair_steps(keyring_path: Path, directory: str, number: int) -> dict[str, Any]:
    keyring = LocalKeyring(keyring_path)
    handler = LocalHandler(os.path.join(directory, "root"), keyring)
    handler.write(0)  # the token keyset
    store, materials = handler.store, handler.materials
    serializer = handler.settings()["serializer"]
    codec = handler._tokens()
    value = _DICT
    parts = serializer.dump_parts(value)
    payload = b"".join(parts)
    data_key = materials.new_data_key(len(payload))
    object_id = os.urandom(16)
    header, payload_key = BlobHeader.new(
        data_key.plaintext, object_id, data_key.key_id, data_key.stanzas
    )
    cipher = header.cipher(payload_key)
    descriptor = seal_descriptor(cipher, serializer.name)
    prefix = header.encode() + descriptor
    blob = seal_segments(payload, cipher, prefix)
    body = blob[len(prefix) :]
    token = codec.seal(object_id, header.commitment)
    serialized = bytes(payload)
    names: list[str] = []
    plain_dir = os.path.join(directory, "plain")
    os.makedirs(plain_dir)

    def store_blob() -> None:
        name = object_name(os.urandom(16))
        store.put(name, blob)
        names.append(name)

    store.put(object_name(object_id), blob)

    def fetch() -> None:
        source, _ = store.fetch(object_name(object_id))
        with source:
            source.read()

    def plain_pair() -> None:
        path = os.path.join(plain_dir, str(len(names)))
        names.append(path)
        with open(path, "xb") as f:
            f.write(serializer.dumps(value))
        with open(path, "rb") as f:
            serializer.loads(f.read())

    def whole_pair() -> None:
        token = handler.write(value)
        handler.read(token)
        names.append(token)

    steps: dict[str, Callable[[], Any]] = {
        "write: serialize (msgpack)": lambda: serializer.dump_parts(value),
        "write: new data key (random key, keyring wrap)": lambda: materials.new_data_key(1024),
        "write: header (salt, HKDF-SHA256, commitment)": lambda: BlobHeader.new(
            data_key.plaintext, object_id, data_key.key_id, data_key.stanzas
        ),
        "write: descriptor (cipher, seal the serializer name)": lambda: seal_descriptor(
            header.cipher(payload_key), serializer.name
        ),
        "write: encrypt (one AES-256-GCM call)": lambda: seal_segments(payload, cipher, prefix),
        "write: store (O_TMPFILE, write, link)": store_blob,
        "write: token seal": lambda: codec.seal(object_id, header.commitment),
        "read: token open": lambda: codec.open(token),
        "read: fetch (open, read whole, close)": fetch,
        "read: parse header": lambda: read_header(io.BytesIO(blob)),
        "read: unwrap data key (keyring)": lambda: materials.open_data_key(
            data_key.key_id, data_key.stanzas
        ),
        "read: HKDF-SHA256 + commitment check": lambda: header.payload_key(data_key.plaintext),
        "read: descriptor (cipher, open the serializer name)": lambda: open_descriptor(
            header.cipher(payload_key), descriptor
        ),
        "read: decrypt (one AES-256-GCM call)": lambda: open_segments(
            io.BytesIO(body), len(body), cipher, serializer.split_point
        ),
        "read: deserialize": lambda: serializer.load_parts(b"", serialized),
    }
    rows = {name: _warm(step, number) * 1e6 for name, step in steps.items()}
    # Files made by the timing above are removed between measurements so that the directory
    # stays small, as in the pairs benchmark.
    _remove(names, handler)
    whole = _warm(whole_pair, number) * 1e6
    _remove(names, handler)
    plain = _warm(plain_pair, number) * 1e6
    _remove(names, handler)
    return {"rows": rows, "sum_us": sum(rows.values()), "pair_us": whole, "plain_us": plain}


def _remove(names: list[str], handler: LocalHandler) -> None:
    for name in names:
        if os.path.isabs(name):
            os.unlink(name)
        elif len(name) == 32:
            handler.store.delete(name)
        else:
            handler.delete(name)
    names.clear()


def run(
    keyring_path: Path,
    *,
    number: int,
    workdir: str | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    log("breakdown: fixed costs of a 1 MiB blob")
    result: dict[str, Any] = {"blob": blob_steps(LocalKeyring(keyring_path), number)}
    places = {"disk": workdir}
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        places["tmpfs"] = "/dev/shm"
    result["pair"] = {}
    for place, directory in places.items():
        log(f"breakdown: one 1 KiB write+read pair ({place})")
        base = tempfile.mkdtemp(prefix="sr-bench-breakdown-", dir=directory)
        try:
            result["pair"][place] = pair_steps(keyring_path, base, number)
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return result
