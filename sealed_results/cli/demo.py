"""``sealed-results demo``: the main job on the embedded default (local disk + local keyring).

It shows the two sides of the promise: what the orchestrator's cloud receives (one opaque token
per result) and what lands in your storage (random names, ciphertext only).

``--prefect`` runs the same story through Prefect (``sealed_results.prefect.demo``) in a child
process: it needs the ``prefect`` extra, starts a temporary Prefect server, and sets Prefect
and profile settings that must not leak into this process. (The CLI and the Prefect adapter are
peers at the edge of the layers, so the CLI starts it by module name rather than importing it.)
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sealed_results.handlers import LocalHandler
from sealed_results.keyproviders.local import LocalKeyring, create_keyring

__all__ = ["add_parser", "run_demo", "run_prefect_demo"]


def _results() -> dict[str, Any]:
    return {
        "customer extract": [
            {
                "id": 1041,
                "email": "ada@example.com",
                "balance": Decimal("1520.75"),
                "since": datetime(2021, 3, 14, 9, 26, tzinfo=UTC),
            },
            {
                "id": 1042,
                "email": "grace@example.com",
                "balance": Decimal("-12.00"),
                "since": datetime(2019, 12, 9, 17, 0, tzinfo=UTC),
            },
        ],
        "model metrics": {"auc": 0.9132, "features": ("age", "tenure", "plan"), "rows": 48213},
        "api credentials row": {"service": "billing", "api_key": "sk_live_demo_9f8e7d6c5b4a"},
    }


def run_demo(root: str | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="sealed-results-demo-") as scratch:
        base = Path(root) if root else Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        keys_path = base / "keys.json"
        if not keys_path.exists():
            create_keyring(keys_path)
        handler = LocalHandler(root=str(base / "results"), keyprovider=LocalKeyring(keys_path))

        print("sealed-results demo: local disk + local keyring, no servers\n")
        tokens: dict[str, str] = {}
        names: dict[str, str] = {}  # the stored object of each result, to tamper with one
        for label, value in _results().items():
            before = set(handler.list_objects())
            tokens[label] = handler.write(value)
            (names[label],) = set(handler.list_objects()) - before
        big = os.urandom(3 * 1024 * 1024)
        tokens["3 MiB model weights (streamed)"] = handler.write_stream(io.BytesIO(big))

        print("1. What the orchestrator's cloud receives (the result handler's JSON):")
        for label, token in tokens.items():
            print(f"   {label:32} {json.dumps(token)[:60]}...  ({len(token)} chars)")

        print(f"\n2. What is in your storage ({base / 'results'}):")
        stored = sorted((base / "results").iterdir())
        secrets = [b"ada@example.com", b"sk_live_demo", b"48213"]
        leaked = False
        for path in stored:
            data = path.read_bytes()
            leaked |= any(s in data for s in secrets)
            print(f"   {path.name:34} {len(data):>9} bytes  {data[:20].hex()}...")
        print(f"   plaintext found in storage: {'YES (bug!)' if leaked else 'no'}")

        print("\n3. Reading back with the token:")
        ok = True
        for label, value in _results().items():
            same = handler.read(tokens[label]) == value
            ok &= same
            print(f"   {label:32} {'round-trips exactly' if same else 'MISMATCH'}")
        with handler.open(tokens["3 MiB model weights (streamed)"]) as stream:
            same = stream.read() == big
        ok &= same
        verdict = "round-trips exactly" if same else "MISMATCH"
        print(f"   {'3 MiB model weights (streamed)':32} {verdict}")

        label = "model metrics"
        tampered = base / "results" / names[label]
        flipped = bytearray(tampered.read_bytes())
        flipped[-1] ^= 1
        tampered.write_bytes(bytes(flipped))
        try:
            handler.read(tokens[label])
            print("\n4. A flipped bit in storage was NOT detected (bug!)")
            ok = False
        except Exception as exc:  # the point is to show what a reader gets
            print(f"\n4. One bit flipped in storage: read raises {type(exc).__name__}: {exc}")
        return 0 if ok and not leaked else 1


PREFECT_DEMO = "sealed_results.prefect.demo"


def run_prefect_demo(root: str | None = None) -> int:
    """The Prefect demo in a child process; 2 with an install hint without the extra."""
    if importlib.util.find_spec("prefect") is None:
        print(
            "sealed-results demo --prefect needs Prefect: pip install 'sealed-results[prefect]'",
            file=sys.stderr,
        )
        return 2
    command = [sys.executable, "-m", PREFECT_DEMO, *(["--root", root] if root else [])]
    return subprocess.run(command, check=False).returncode


def _run(args: argparse.Namespace) -> int:
    if args.prefect:
        return run_prefect_demo(root=args.root)
    return run_demo(root=args.root)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="write and read a few results on local disk, no servers"
    )
    parser.add_argument("--root", help="directory to use (default: a new temporary directory)")
    parser.add_argument(
        "--prefect",
        action="store_true",
        help="run a flow on a temporary local Prefect server (needs the prefect extra)",
    )
    parser.set_defaults(func=_run)
