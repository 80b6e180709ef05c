"""The hybrid shape on a real Prefect server: deployments served by a separate process
(``prefect.serve``) with its own environment (its profile from ``SEALED_RESULTS_CONFIG``),
triggered through the API with ``run_deployment``; results and failures read back here; the
leak audit over the server, deployments and their parameters included; ``audit --deployment``
and ``reveal`` against the API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import prefect_support as support  # first: outside CI, no prefect skips the module

# isort: split

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

from sealed_results.prefect import seal
from sealed_results.prefect.audit import audit_deployment
from tests.prefect_support import (
    COUNTER_ENV,
    EXC_MARK,
    LEAK_MARKERS,
    MARKERS,
    NOTE_MARK,
    PARAM_MARK,
    PATTERNS,
    REPO_ROOT,
    TRACE_MARK,
    VALUE_MARK,
    PrefectServer,
    config_fixture,  # noqa: F401 - a shared fixture
    env_fixture,  # noqa: F401 - a shared fixture
    scratch_fixture,  # noqa: F401 - a shared fixture
    server_fixture,  # noqa: F401 - a shared fixture
)

support.add_markers(*LEAK_MARKERS)

# The module's profile environment (prefect_support.config).
PROFILE_ENV = {"SEALED_RESULTS_REDACT_PATTERNS": PATTERNS}

SERVE = """
from prefect import serve
from tests import prefect_support as s

serve(
    s.sensitive_flow.to_deployment(name="served"),
    s.served_total.to_deployment(name="served"),
    s.leaky_flow.to_deployment(name="leaky", parameters={"customer": "acme-corp"}),
    limit=4,
)
"""
DEPLOYMENTS = ("sensitive-flow/served", "served-total/served", "leaky-flow/leaky")
STARTUP_SECONDS = 90
RUN_SECONDS = 150


async def _deployments_ready() -> bool:
    async with get_client() as client:
        for name in DEPLOYMENTS:
            try:
                await client.read_deployment_by_name(name)
            except Exception:
                return False
    return True


@pytest.fixture(scope="module")
def served(env: dict[str, str], scratch: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``prefect.serve`` in its own process and session, with only its environment (the
    profile's config file, the API URL); killed when the module is done, whatever happens."""
    worker_env = dict(env, PREFECT_RUNNER_POLL_FREQUENCY="1", PYTHONUNBUFFERED="1")
    log = open(scratch / "serve.log", "wb")  # noqa: SIM115 - closed in the finalizer
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE],
        env=worker_env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not asyncio.run(_deployments_ready()):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (scratch / "serve.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"the served deployments did not register:\n{tail}")
            time.sleep(1)
        yield process
    finally:
        # The serve process and the flow-run processes it started share its session.
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            if process.poll() is not None:
                break
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # leftover flow-run processes
        log.close()


def _run(name: str, parameters: dict[str, Any]) -> Any:
    flow_run = run_deployment(name, parameters=parameters, timeout=RUN_SECONDS)
    assert flow_run.state is not None and flow_run.state.is_final(), flow_run.state
    return flow_run


@pytest.fixture(scope="module")
def served_runs(served: subprocess.Popen[bytes]) -> dict[str, Any]:
    return {
        "total": _run("served-total/served", {"amount": seal(21)}),
        "failed": _run(
            "sensitive-flow/served", {"secret": seal(PARAM_MARK), "note": seal(NOTE_MARK)}
        ),
    }


def test_served_deployment_result_read_here(served_runs: dict[str, Any]) -> None:
    run = served_runs["total"]
    assert run.state.is_completed()
    assert run.state.result() == {"value": 42, "label": VALUE_MARK}
    assert run.parameters["amount"].startswith("sealed::")


def test_served_failure_raises_here_with_the_real_message(served_runs: dict[str, Any]) -> None:
    run = served_runs["failed"]
    assert run.state.is_failed()
    assert "ValueError: [sealed message sealed::" in run.state.message
    with pytest.raises(ValueError, match=f"{EXC_MARK} for {PARAM_MARK}"):
        run.state.result()
    counters = Path(os.environ[COUNTER_ENV])
    assert support.count_of(counters, "sensitive_task") == 3  # retried in the served process


def test_audit_of_deployments(served: subprocess.Popen[bytes]) -> None:
    for name in ("sensitive-flow/served", "served-total/served"):
        findings, note = audit_deployment(name, code_root=str(REPO_ROOT))
        assert findings == [], findings
        assert "loaded" in note
    findings, _ = audit_deployment("leaky-flow/leaky", code_root=str(REPO_ROOT))
    kinds = {f.kind for f in findings}
    assert kinds == support.LEAKY_KINDS | {"deployment-parameter-value"}


def test_audit_cli_on_a_deployment(served: subprocess.Popen[bytes], env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "sealed_results.cli", "audit", "--deployment", "--json"]
    clean = subprocess.run(
        [*command, "sensitive-flow/served"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr[-2000:]
    leaky = subprocess.run(
        [*command, "leaky-flow/leaky"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert leaky.returncode == 1
    assert "deployment-parameter-value" in {f["kind"] for f in json.loads(leaky.stdout)["findings"]}


def test_zz_served_runs_leak_nothing_and_reveal_opens_them(
    served_runs: dict[str, Any], server: PrefectServer, env: dict[str, str]
) -> None:
    api = support.assert_nothing_stored(server, (*MARKERS, *LEAK_MARKERS))
    assert "sensitive-flow" in api and "[sealed message sealed::" in api

    async def deployments() -> list[Any]:
        async with get_client() as client:
            return [await client.read_deployment_by_name(name) for name in DEPLOYMENTS[:2]]

    for deployment in asyncio.run(deployments()):
        properties = deployment.parameter_openapi_schema["properties"]
        assert all(p["format"] == "sealed-results-token" for p in properties.values())

    # A fresh process, with the profile, opens everything the served run sealed.
    run_id = str(served_runs["failed"].id)
    done = subprocess.run(
        [sys.executable, "-m", "sealed_results.cli", "reveal", run_id, "--json"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["parameters"] == {"secret": PARAM_MARK, "note": NOTE_MARK}
    logs = "\n".join(log["message"] for log in report["logs"])
    assert f"processing {PARAM_MARK}" in logs and TRACE_MARK in logs
    assert any(f"{EXC_MARK} for {PARAM_MARK}" in s["message"] for s in report["states"])
    assert report["unopened"] == []
