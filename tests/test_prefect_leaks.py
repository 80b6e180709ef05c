"""The other leak paths (issue 14) on a real Prefect server: sealed parameters, sealed exception
messages, redacted logs, the privacy audit and the local reveal. A flow takes sensitive
parameters, logs a sensitive line and a traceback, retries and fails with a sensitive message:
none of it may appear anywhere the server stored, while ``reveal`` recovers it locally."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import prefect_support as support  # first: outside CI, no prefect skips the module

# isort: split

from prefect import flow, task
from prefect.client.orchestration import get_client
from pydantic import BaseModel, TypeAdapter, ValidationError

from sealed_results.cli.main import main
from sealed_results.prefect import (
    REDACTOR,
    SEAL_EXCEPTIONS_ENV,
    RedactingFilter,
    Revealed,
    SealedValue,
    seal,
    sealed,
    sealed_flow,
    unseal,
)
from sealed_results.prefect.audit import audit_target
from sealed_results.sealing import TOKEN_FORMAT, is_sealed_token, parse_token
from sealed_results.testing import leakscan
from tests.prefect_support import (
    EXC_MARK,
    LEAK_MARKERS,
    MARKERS,
    NOTE_MARK,
    PARAM_MARK,
    PATTERN_MARK,
    PATTERNS,
    TRACE_MARK,
    PrefectServer,
    config_fixture,  # noqa: F401 - a shared fixture
    count_of,
    counters_fixture,  # noqa: F401 - a shared fixture
    env_fixture,  # noqa: F401 - a shared fixture
    scratch_fixture,  # noqa: F401 - a shared fixture
    server_fixture,  # noqa: F401 - a shared fixture
)

support.add_markers(*LEAK_MARKERS)

# The module's profile environment (prefect_support.config).
PROFILE_ENV = {SEAL_EXCEPTIONS_ENV: None, "SEALED_RESULTS_REDACT_PATTERNS": PATTERNS}

SUPPORT = str(Path(support.__file__).resolve())


@pytest.fixture(scope="module")
def failed_run(server: PrefectServer, counters: Path) -> Any:
    """The sensitive flow run once on the server: it retries, then fails."""
    state = support.sensitive_flow(seal(PARAM_MARK), seal(NOTE_MARK), return_state=True)
    assert state.is_failed()
    return state


# -- sealed parameters, no server needed ---------------------------------------------------
def test_seal_and_unseal_round_trip(config: Path) -> None:
    token = seal({"card": PARAM_MARK, "n": 3})
    assert is_sealed_token(token) and PARAM_MARK not in token
    assert parse_token(token).profile is None
    assert unseal(token) == {"card": PARAM_MARK, "n": 3}
    named = seal("x-value", "lab")
    assert named.startswith("sealed:lab:") and unseal(named) == "x-value"


def test_sealed_value_is_a_validated_str_with_its_own_format(config: Path) -> None:
    class Model(BaseModel):
        secret: SealedValue
        opened: Revealed[str]

    schema = Model.model_json_schema()["properties"]
    assert schema["secret"]["format"] == TOKEN_FORMAT == schema["opened"]["format"]
    token = seal(PARAM_MARK)
    model = Model(secret=token, opened=token)  # type: ignore[arg-type]
    assert isinstance(model.secret, SealedValue) and isinstance(model.secret, str)
    assert model.secret == token and model.secret.reveal() == PARAM_MARK
    assert model.opened == PARAM_MARK
    with pytest.raises(ValidationError) as refused:
        Model(secret="plain value", opened=token)  # type: ignore[arg-type]
    assert "plain value" not in str(refused.value).split("input_value")[0]
    assert TypeAdapter(Revealed[int]).validate_python(seal(7)) == 7
    # Opened values are now known to the redactor: a shipped log would show the token.
    redacted = REDACTOR.redact(f"x {PARAM_MARK} y")
    assert PARAM_MARK not in redacted and "[sealed value sealed::" in redacted


def test_seal_cli_reads_stdin_and_files_never_argv(config: Path, scratch: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sealed_results.cli", "seal"],
        input=f"{NOTE_MARK}\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=dict(os.environ),
    )
    token = done.stdout.strip()
    assert is_sealed_token(token) and unseal(token) == NOTE_MARK
    source = scratch / "value.json"
    source.write_text(json.dumps({"k": [1, 2]}))
    done = subprocess.run(
        [sys.executable, "-m", "sealed_results.cli", "seal", "--from-json", "--file", str(source)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=dict(os.environ),
    )
    assert unseal(done.stdout.strip()) == {"k": [1, 2]}
    refused = subprocess.run(
        [sys.executable, "-m", "sealed_results.cli", "seal", NOTE_MARK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2  # no positional value


def test_redacting_filter_and_patterns(config: Path) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "pay %s", (PATTERN_MARK,), None)
    assert RedactingFilter().filter(record)
    assert PATTERN_MARK not in record.getMessage() and "[redacted]" in record.getMessage()


# -- on the server ---------------------------------------------------------------------------
def test_failure_keeps_its_type_and_raises_locally_with_the_real_message(
    failed_run: Any, counters: Path
) -> None:
    assert count_of(counters, "sensitive_task") == 3  # the first run and two retries
    assert failed_run.message.startswith("Flow run encountered an exception: ValueError: ")
    assert "[sealed message sealed::" in failed_run.message
    with pytest.raises(ValueError, match=EXC_MARK):
        failed_run.result()
    with pytest.raises(ValueError, match=f"{EXC_MARK} for {PARAM_MARK}"):
        support.sensitive_flow(seal(PARAM_MARK), seal(NOTE_MARK))  # raise_on_failure


def test_task_state_message_is_sealed(failed_run: Any) -> None:
    async def task_states() -> list[Any]:
        async with get_client() as client:
            runs = await client.read_task_runs(limit=200)
        return [r.state for r in runs if r.name.startswith("sensitive_task") and r.state]

    import asyncio

    states = asyncio.run(task_states())
    assert states and all(s.is_failed() for s in states)
    for state in states:
        assert state.message.startswith("Task run encountered an exception ValueError: [sealed")


def test_state_result_in_a_fresh_process_raises_the_real_message(
    failed_run: Any, env: dict[str, str]
) -> None:
    run_id = failed_run.state_details.flow_run_id
    code = (
        "from prefect.client.orchestration import get_client\n"
        f"run = get_client(sync_client=True).read_flow_run('{run_id}')\n"
        "try:\n"
        "    run.state.result()\n"
        "except ValueError as exc:\n"
        "    print('raised', exc)\n"
    )
    out = support.run_python(code, env)
    assert f"raised {EXC_MARK} for {PARAM_MARK}" in out


seen_by_condition: list[str] = []


def _retry_if_sensitive(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as exc:
        seen_by_condition.append(str(exc))
        return EXC_MARK in str(exc)
    return False


@task(
    **sealed(
        retries=3,
        retry_delay_seconds=0,
        retry_condition_fn=_retry_if_sensitive,
        seal_exceptions=True,
    )
)
def conditional(n: int) -> int:
    seen = len(seen_by_condition)
    if seen < 2:
        raise ValueError(f"{EXC_MARK} attempt {seen}")
    return n


@flow(**sealed_flow(seal_exceptions=True))
def conditional_flow(n: Revealed[int]) -> int:
    return conditional(n)


def test_retry_condition_sees_the_real_exception(server: PrefectServer) -> None:
    seen_by_condition.clear()
    assert conditional_flow(seal(5)) == 5
    assert seen_by_condition == [f"{EXC_MARK} attempt 0", f"{EXC_MARK} attempt 1"]


@task(**sealed())
def undecided() -> None:
    raise RuntimeError("visible-failure-message")


@flow(**sealed_flow())
def undecided_flow() -> None:
    undecided()


def test_profile_wide_switch(server: PrefectServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without any choice the message reaches Prefect, as in plain Prefect.
    state = undecided_flow(return_state=True)
    assert "visible-failure-message" in state.message
    monkeypatch.setenv(SEAL_EXCEPTIONS_ENV, "lab")  # the profile's name
    state = undecided_flow(return_state=True)
    assert "visible-failure-message" not in state.message
    assert "RuntimeError: [sealed message sealed::" in state.message
    with pytest.raises(RuntimeError, match="visible-failure-message"):
        state.result()


def test_profile_setting_seals_every_failure_of_the_profile(
    server: PrefectServer, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same switch as a setting of the profile itself (seal_exceptions = true): every run
    # that uses the profile seals its failure messages, with no environment variable.
    sealing = config.with_name("sealing.toml")
    sealing.write_text(config.read_text() + "seal_exceptions = true\n", encoding="utf-8")
    monkeypatch.setenv("SEALED_RESULTS_CONFIG", str(sealing))
    state = undecided_flow(return_state=True)
    assert "visible-failure-message" not in state.message
    assert "RuntimeError: [sealed message sealed::" in state.message


def test_audit_finds_each_leak_and_nothing_in_the_sealed_flow(config: Path) -> None:
    leaky = audit_target(f"{SUPPORT}:leaky_flow")
    assert {f.kind for f in leaky} == support.LEAKY_KINDS
    assert audit_target(f"{SUPPORT}:sensitive_flow") == []
    assert audit_target(f"{SUPPORT}:served_total") == []


def test_audit_cli_exit_codes_and_json(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", f"{SUPPORT}:leaky_flow", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert {f["kind"] for f in report["findings"]} == support.LEAKY_KINDS
    assert main(["audit", "tests.prefect_support:sensitive_flow"]) == 0
    assert "nothing reaches the API unsealed" in capsys.readouterr().out


def test_audit_with_the_api(server: PrefectServer, config: Path) -> None:
    assert audit_target(f"{SUPPORT}:sensitive_flow", api=True) == []


def test_zz_nothing_stored_and_reveal_recovers_it(
    failed_run: Any, server: PrefectServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs last in this module: every earlier flow's traces are on the server by now."""
    api = support.assert_nothing_stored(server, (*MARKERS, *LEAK_MARKERS))
    assert "[sealed value sealed::" in api  # the logged parameter, redacted as its token
    assert "[sealed message sealed::" in api
    assert "[redacted]" in api  # the pattern
    assert "lookup failed" in api and "Traceback" in api  # the traceback was shipped, sealed

    run_id = str(failed_run.state_details.flow_run_id)
    assert main(["reveal", run_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parameters"] == {"secret": PARAM_MARK, "note": NOTE_MARK}
    assert any(f"{EXC_MARK} for {PARAM_MARK}" in s["message"] for s in report["states"])
    logs = "\n".join(log["message"] for log in report["logs"])
    assert f"processing {PARAM_MARK}" in logs and f"note says {NOTE_MARK}" in logs
    assert TRACE_MARK in logs  # the traceback's sealed message, opened
    tracebacks = "\n".join(e["traceback"] for e in report["exceptions"])
    assert f"ValueError: {EXC_MARK} for {PARAM_MARK}" in tracebacks
    assert "KeyError" in tracebacks and TRACE_MARK in tracebacks
    assert report["unopened"] == []
    assert main(["reveal", run_id]) == 0
    assert f"{EXC_MARK} for {PARAM_MARK}" in capsys.readouterr().out


def test_provider_credentials_in_the_environment_are_redacted(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sealed_results.sealing import REDACTOR, profile_handler

    token = "hvs.credential-marker-" + os.urandom(6).hex()
    account_key = "account-key-marker-" + os.urandom(6).hex()
    leakscan.SCAN.add_secret(token, account_key)
    monkeypatch.setenv("VAULT_TOKEN", token)
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING", f"AccountName=x;AccountKey={account_key};"
    )
    profile_handler(None)  # registers the profile this process uses
    text = REDACTOR.redact(f"login with {token}; key {account_key}")
    assert token not in text and account_key not in text and "[redacted]" in text
