"""The Prefect 3 integration on a real Prefect server: results round-trip sealed, cache keys are
keyed hashes, caches hit across processes, a fresh process reads results, and nothing about a
result, the store or the keys appears anywhere the server stored (database and API)."""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from tests import prefect_support as support  # first: outside CI, no prefect skips the module

# isort: split

from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.client.orchestration import get_client
from prefect.task_runners import ProcessPoolTaskRunner
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr

from sealed_results import ConfigError, IntegrityError, from_profile
from sealed_results.prefect import (
    PrefectResultNotFound,
    RunNameWarning,
    SealedCachePolicy,
    SealedResultStorage,
    SealedSerializer,
    sealed,
    sealed_flow,
    storage_name,
)
from tests.prefect_support import (
    MARKERS,
    SECRET_A,
    SECRET_B,
    VALUE_MARK,
    PrefectServer,
    config_fixture,  # noqa: F401 - a shared fixture
    count_of,
    counters_fixture,  # noqa: F401 - a shared fixture
    env_fixture,  # noqa: F401 - a shared fixture
    scratch_fixture,  # noqa: F401 - a shared fixture
    server_fixture,  # noqa: F401 - a shared fixture
)

support.add_markers()


# -- the block and the helpers, no server needed ---------------------------------------------
class TestSealedResultStorageBlock(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[SealedResultStorage]:
        return SealedResultStorage


def test_block_fields_are_only_the_profile_name() -> None:
    assert list(SealedResultStorage.model_fields) == ["profile"]
    assert list(SealedSerializer.model_fields) == ["type", "profile"]


def test_sealed_refuses_a_storage_key_template() -> None:
    with pytest.raises(ConfigError, match="result_storage_key"):
        sealed(result_storage_key="{parameters[name]}.json")
    with pytest.raises(ConfigError, match="result_storage_key"):
        sealed_flow(result_storage_key="x")
    with pytest.raises(ConfigError, match="result storage"):
        sealed(result_storage="local-file-system/x")


def test_run_name_templates_with_parameters_warn() -> None:
    with pytest.warns(RunNameWarning, match="task_run_name"):
        sealed(task_run_name="extract-{customer}")
    with pytest.warns(RunNameWarning, match="flow_run_name"):
        sealed_flow(flow_run_name="run-{region}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        options = sealed(task_run_name="extract", retries=3, cache_expiration=None)
    assert options["retries"] == 3 and options["persist_result"] is True


def test_cache_policy_is_wrapped_and_stays_keyed() -> None:
    policy = sealed(cache_policy=INPUTS)["cache_policy"]
    assert isinstance(policy, SealedCachePolicy)
    assert isinstance(policy + TASK_SOURCE, SealedCachePolicy)
    assert isinstance(policy - "x", SealedCachePolicy)
    key_fn_policy = sealed(cache_key_fn=lambda ctx, inputs: "k")["cache_policy"]
    assert isinstance(key_fn_policy, SealedCachePolicy)
    with pytest.raises(TypeError):
        flow(**sealed_flow(), cache_policy=INPUTS)  # Prefect's own refusal
    with pytest.raises(ConfigError):
        sealed_flow(cache_policy=INPUTS)


def test_decorating_needs_no_server_and_no_config() -> None:
    # Module import in tests/prefect_support decorated tasks before any server existed.
    @task(**sealed("a-profile-nobody-has"))
    def nothing() -> None:
        return None

    assert nothing.result_storage is not None


# -- on a real server --------------------------------------------------------------------------
def _state_key(state: Any) -> str:
    return str(state.data.storage_key)


def test_pipeline_round_trip_retries_and_keyed_storage_keys(
    server: PrefectServer, counters: Path
) -> None:
    state = support.pipeline(21, return_state=True)
    assert state.is_completed()
    value = state.result()
    assert value == [
        {"value": 42, "label": VALUE_MARK},
        f"{VALUE_MARK}-21",
        f"{VALUE_MARK}-flaky-21",
    ]
    assert count_of(counters, "flaky") == 3  # two failures, then the retry succeeded

    async def task_states() -> dict[str, Any]:
        async with get_client() as client:
            runs = await client.read_task_runs(limit=200)
        return {run.name.rsplit("-", 1)[0]: run.state for run in runs if run.state}

    states = asyncio.run(task_states())
    default_key = (counters / "default_key").read_text()
    stored = _state_key(states["default_keyed"])
    assert stored != default_key and default_key not in stored
    assert len(stored) == 32 and all(c in "0123456789abcdef" for c in stored)
    # The block document the metadata names is the one the helper saved for us.
    assert states["default_keyed"].data.storage_block_id is not None
    assert states["default_keyed"].data.serializer.type == "sealed-results"


def test_secret_inputs_do_not_share_a_cache_entry(server: PrefectServer, counters: Path) -> None:
    before = count_of(counters, "with_secret")
    result = support.secret_flow(SecretStr(SECRET_A), SecretStr(SECRET_B))
    first, second = f"{VALUE_MARK}-len{len(SECRET_A)}", f"{VALUE_MARK}-len{len(SECRET_B)}"
    assert result == [first, second, first]
    # Two different secrets ran twice; the repeat of the first was a cache hit.
    assert count_of(counters, "with_secret") - before == 2


def test_cache_hit_in_a_new_process_and_result_read_there(
    server: PrefectServer, counters: Path, env: dict[str, str]
) -> None:
    first = support.pipeline(5, return_state=True)
    assert count_of(counters, "cached_double") >= 1
    runs_before = count_of(counters, "cached_double")
    code = (
        "from tests import prefect_support as s\n"
        "state = s.pipeline(5, return_state=True)\n"
        "print(state.result()[0])\n"
    )
    out = support.run_python(code, env)
    assert "'value': 10" in out
    assert count_of(counters, "cached_double") == runs_before  # the body did not run again

    # A fresh process that never imports sealed_results.prefect reads the flow's result:
    # the prefect.collections entry point loads it when the storage block is resolved.
    read = (
        "import sys\n"
        "from prefect.client.orchestration import get_client\n"
        f"run = get_client(sync_client=True).read_flow_run('{first.state_details.flow_run_id}')\n"
        "assert 'sealed_results.prefect' not in sys.modules\n"
        "print(run.state.result())\n"
    )
    out = support.run_python(read, env)
    assert "'value': 10" in out and VALUE_MARK in out


def test_async_tasks_and_flow(server: PrefectServer) -> None:
    result = asyncio.run(support.async_pipeline(4))
    assert result == [{"square": i * i, "label": VALUE_MARK} for i in range(4)]


def test_concurrent_tasks_in_a_thread_pool(server: PrefectServer) -> None:
    assert support.threaded_pipeline(8) == [f"{VALUE_MARK}-{i}" for i in range(8)]


@task(**sealed())
def in_a_process(x: int) -> dict[str, int]:
    return {"pid": os.getpid(), "x": x}


@flow(**sealed_flow(task_runner=ProcessPoolTaskRunner(max_workers=2)))
def process_pipeline(n: int) -> list[dict[str, int]]:
    return in_a_process.map(range(n)).result()


def test_process_pool_task_runner(server: PrefectServer) -> None:
    result = process_pipeline(3)
    assert [r["x"] for r in result] == [0, 1, 2]
    assert all(r["pid"] != os.getpid() for r in result)


def test_a_moved_blob_does_not_open(server: PrefectServer) -> None:
    block = SealedResultStorage()
    block.write_path("prefect-key-one", b'{"record": 1}')
    assert block.read_path("prefect-key-one") == b'{"record": 1}'
    handler = from_profile()
    source, target = storage_name(None, "prefect-key-one"), storage_name(None, "prefect-key-two")
    handler.store.put(target, handler.store.get(source))
    with pytest.raises(IntegrityError):
        block.read_path("prefect-key-two")
    with pytest.raises(PrefectResultNotFound):
        block.read_path("prefect-key-never-written")
    # A rewrite after a cache expiry replaces the entry.
    block.write_path("prefect-key-one", b'{"record": 2}')
    assert block.read_path("prefect-key-one") == b'{"record": 2}'


def test_demo_runs(server: PrefectServer, env: dict[str, str], scratch: Path) -> None:
    import subprocess

    demo_env = dict(env)
    demo_env.pop("PREFECT_API_URL")
    demo_env.pop("SEALED_RESULTS_CONFIG")
    done = subprocess.run(
        [sys.executable, "-m", "sealed_results.cli", "demo", "--prefect"],
        env=demo_env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=scratch,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "What Prefect's API stored" in done.stdout
    assert "plaintext found in Prefect's API: no" in done.stdout


def test_zz_nothing_reaches_the_server(server: PrefectServer, scratch: Path) -> None:
    """Runs last in this module: every earlier flow's traces are on the server by now."""
    stored = support.database_text(server.database)
    api = asyncio.run(support.api_text())
    assert "sealed-results-storage" in api  # the audit does see the block
    assert '"event": "prefect.task-run.' in api  # ...and the events
    store_root = next(scratch.rglob(support.ROOT_MARK))
    object_names = [p.name for p in store_root.iterdir() if p.name != "keyset"]
    assert object_names
    for marker in MARKERS:
        for form in support.forms(marker):
            assert form not in stored, f"{marker} ({form[:6]}...) in the database"
            assert form not in api, f"{marker} ({form[:6]}...) in the API"
    for name in object_names:  # derived object names are not the API's storage keys
        assert name not in stored and name not in api
