"""``sealed-results demo --prefect``: a realistic flow on a temporary local Prefect server.

Three sealed tasks (an extract, a cached scoring step, a notification that fails once and is
retried) run twice; the demo then prints what Prefect's API stored about the runs beside what
the store holds, and reads the results back. It runs as ``python -m
sealed_results.prefect.demo`` (the CLI starts it in a child process) so that its server, its
profile and its Prefect settings never touch the caller's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from sealed_results.config import CONFIG_ENV
from sealed_results.handlers.base import ResultHandler
from sealed_results.keyproviders.local import create_keyring
from sealed_results.prefect.decorators import sealed, sealed_flow
from sealed_results.prefect.storage import handler_for

__all__ = ["main", "run"]

PROFILE = "demo"
SECRETS = ("ada@example.com", "grace@example.com", "sk_live_demo", "1520.75")
_ATTEMPTS: dict[str, int] = {}


@task(**sealed(PROFILE))
def extract(region: str) -> list[dict[str, Any]]:
    return [
        {"id": 1041, "email": "ada@example.com", "balance": Decimal("1520.75")},
        {"id": 1042, "email": "grace@example.com", "balance": Decimal("-12.00")},
    ]


@task(**sealed(PROFILE, cache_policy=INPUTS + TASK_SOURCE))
def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    _ATTEMPTS["score"] = _ATTEMPTS.get("score", 0) + 1
    return {"at_risk": [r["id"] for r in rows if r["balance"] < 0], "auc": 0.9132}


@task(**sealed(PROFILE, retries=1, retry_delay_seconds=0))
def notify(scores: dict[str, Any]) -> dict[str, str]:
    _ATTEMPTS["notify"] = _ATTEMPTS.get("notify", 0) + 1
    if _ATTEMPTS["notify"] == 1:
        raise ConnectionError("mail relay busy")  # transient: Prefect retries it
    return {"service": "billing", "api_key": "sk_live_demo_9f8e7d6c5b4a"}


@flow(**sealed_flow(PROFILE))
def churn_report(region: str = "emea") -> dict[str, Any]:
    rows = extract(region)
    scores = score(rows)
    receipt = notify(scores)
    return {"rows": len(rows), "scores": scores, "receipt": receipt}


def _write_profile(base: Path) -> Path:
    keys = base / "keys.json"
    if not keys.exists():
        create_keyring(keys)
    config = base / "sealed-results.toml"
    config.write_text(
        f'[profiles.{PROFILE}]\nhandler = "local"\nroot = "./results"\n'
        'keyprovider = "local"\nkeyprovider_options = { path = "./keys.json" }\n',
        encoding="utf-8",
    )
    return config


async def _api_view(flow_run_ids: list[Any]) -> tuple[list[dict[str, Any]], str]:
    """What the API holds about the runs, and everything it returned, as text."""
    rows: list[dict[str, Any]] = []
    texts: list[str] = []
    async with get_client() as client:
        for run_id in flow_run_ids:
            run = await client.read_flow_run(run_id)
            texts.append(run.model_dump_json())
            rows.append(_state_row(f"flow {run.name}", run.state))
        for task_run in sorted(await client.read_task_runs(), key=lambda r: r.created or 0):
            texts.append(task_run.model_dump_json())
            rows.append(_state_row(f"task {task_run.name}", task_run.state))
        for block in await client.read_block_documents(include_secrets=True):
            texts.append(block.model_dump_json())
            rows.append({"what": f"block {block.name}", "stored": json.dumps(block.data)})
        texts += [log.model_dump_json() for log in await client.read_logs()]
    return rows, "\n".join(texts)


def _state_row(label: str, state: Any) -> dict[str, Any]:
    data = getattr(state, "data", None)
    if data is None or not hasattr(data, "storage_key"):
        return {"what": label, "stored": f"{state.name if state else '?'} (no result)"}
    stored = f"{state.name}: storage_key={data.storage_key} serializer={data.serializer.type}"
    return {"what": label, "stored": stored}


def _store_view(handler: ResultHandler) -> list[tuple[str, int, str]]:
    out = []
    for name in sorted(handler.list_objects()):
        blob = handler.store.get(name)
        out.append((name, len(blob), bytes(blob[:12]).hex()))
    return out


def run(base: Path) -> int:
    config = _write_profile(base)
    os.environ[CONFIG_ENV] = str(config)
    print("sealed-results + Prefect demo: a temporary local Prefect server, local store\n")
    print("Starting a temporary Prefect server (about 10-30 s)...")
    with prefect_test_harness(server_startup_timeout=120):
        first = churn_report(return_state=True)
        second = churn_report(return_state=True)
        print(f"Ran the flow twice ({first.name}, {second.name}). The scoring task's body ran")
        print(f"{_ATTEMPTS.get('score', 0)} time(s): the second run was a cache hit. The")
        print("notification failed once with a transient error and Prefect retried it.\n")

        ids = [first.state_details.flow_run_id, second.state_details.flow_run_id]
        rows, api_text = asyncio.run(_api_view(ids))
        print("1. What Prefect's API stored about these runs:")
        for row in rows:
            print(f"   {row['what'][:34]:34} {row['stored'][:100]}")
        leaked = [s for s in SECRETS if s in api_text]
        print(f"   plaintext found in Prefect's API: {'YES (bug!)' if leaked else 'no'}")

        handler = handler_for(PROFILE)
        print("\n2. What your store holds (names are keyed hashes, contents ciphertext):")
        for name, size, head in _store_view(handler):
            print(f"   {name}  {size:>6} bytes  {head}...")

        print("\n3. Reading the results back through Prefect (decrypted locally):")
        result = second.result()
        print(f"   flow result: {result}")
        ok = result["rows"] == 2 and result["scores"]["at_risk"] == [1042] and not leaked
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sealed_results.prefect.demo")
    parser.add_argument("--root", help="directory to use (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.root:
        base = Path(args.root)
        base.mkdir(parents=True, exist_ok=True)
        return run(base.resolve())
    with tempfile.TemporaryDirectory(prefix="sealed-results-prefect-demo-") as scratch:
        return run(Path(scratch))


if __name__ == "__main__":
    sys.exit(main())
