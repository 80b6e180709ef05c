"""Sealed tasks on Dask (prefect-dask's DaskTaskRunner, a local cluster with one worker process),
on the real Prefect test server.

What travels to the Dask worker is the pickled task: its storage block, serializer and cache
policy hold the profile name only. The worker builds its handler from the profile its own
environment names: here a second config file (absolute paths to the same store and keyring),
given to the worker only, through the nanny's ``env``. The test proves the worker used that one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests import prefect_support as support  # first: outside CI, no prefect skips the module

if not support.in_ci():
    pytest.importorskip("prefect_dask", reason="prefect-dask is not installed")

import cloudpickle
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.client.orchestration import get_client
from prefect_dask import DaskTaskRunner

from sealed_results import from_profile
from sealed_results.prefect import sealed, sealed_flow, storage_name
from tests.prefect_support import (
    COUNTER_ENV,
    KEYRING_MARK,
    MARKERS,
    PROFILE_DIR_MARK,
    ROOT_MARK,
    VALUE_MARK,
    PrefectServer,
    config_fixture,  # noqa: F401 - a shared fixture
    count_of,
    scratch_fixture,  # noqa: F401 - a shared fixture
    server_fixture,  # noqa: F401 - a shared fixture
)

support.add_markers()


# -- the flow under test -----------------------------------------------------------------------
@task(**sealed(cache_policy=INPUTS + TASK_SOURCE))
def dask_double(x: int) -> dict[str, Any]:
    support._count("dask_double")
    return {"value": x * 2, "label": VALUE_MARK}


@task(**sealed(cache_policy=INPUTS + TASK_SOURCE))
def where_am_i(after: list[dict[str, Any]], run: int) -> dict[str, Any]:
    """Where the worker's profile came from: its environment and the handlers it has built
    (``profile_handler`` caches them by the config path of the environment they came from)."""
    from sealed_results import sealing

    return {
        "pid": os.getpid(),
        "config": os.environ.get("SEALED_RESULTS_CONFIG"),
        "handler_configs": sorted({str(key[0]) for key in sealing._HANDLERS}),
        "values": [item["value"] for item in after],
    }


@flow(**sealed_flow())
def dask_pipeline(n: int, run: int) -> dict[str, Any]:
    doubled = dask_double.map(range(n))
    return where_am_i.submit(doubled, run).result()


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def worker_config(scratch: Path, config: Path) -> Path:
    """The same profile for the Dask worker, from another file, with absolute paths."""
    home = config.parent
    path = scratch / f"worker-{PROFILE_DIR_MARK}" / "sealed-results.toml"
    path.parent.mkdir()
    path.write_text(
        'default_profile = "lab"\n'
        "[profiles.lab]\n"
        'handler = "local"\n'
        f'root = "{home / ROOT_MARK}"\n'
        'keyprovider = "local"\n'
        f'keyprovider_options = {{ path = "{home / (KEYRING_MARK + ".json")}" }}\n',
        encoding="utf-8",
    )
    return path


def _runner(worker_config: Path) -> DaskTaskRunner:
    # One worker process with one thread: light on a 2-core machine, and the handlers must
    # pickle into another process. The scheduler's HTTP endpoint on a free port, not 8787.
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": 1,
            "processes": True,
            "threads_per_worker": 1,
            "dashboard_address": "127.0.0.1:0",
            "env": {"SEALED_RESULTS_CONFIG": str(worker_config)},
        }
    )


def _key_material(config: Path) -> list[bytes]:
    keyring = json.loads((config.parent / f"{KEYRING_MARK}.json").read_text(encoding="utf-8"))
    found = []
    for entry in keyring["keys"].values():
        raw = base64.b64decode(entry["key"] + "=" * (-len(entry["key"]) % 4), altchars=b"-_")
        assert len(raw) == 32
        found += [raw, entry["key"].encode(), raw.hex().encode()]
    return found


# -- the tests ---------------------------------------------------------------------------------
def test_what_travels_to_a_worker_holds_no_secret(config: Path) -> None:
    keys = _key_material(config)
    travelling = cloudpickle.dumps(dask_double)
    for secret in [*keys, ROOT_MARK.encode(), KEYRING_MARK.encode(), PROFILE_DIR_MARK.encode()]:
        assert secret not in travelling
    # A handler itself pickles as its settings: the keyring's path travels, its keys do not.
    handler = from_profile()
    handler.read(handler.write({"warm": "the keys are loaded now"}))
    pickled = cloudpickle.dumps(handler)
    assert KEYRING_MARK.encode() in pickled
    for secret in keys:
        assert secret not in pickled


def test_dask_local_cluster(
    server: PrefectServer, config: Path, worker_config: Path, scratch: Path
) -> None:
    counters = Path(os.environ[COUNTER_ENV])
    pipeline = dask_pipeline.with_options(task_runner=_runner(worker_config))

    started = time.monotonic()
    first = pipeline(3, 1, return_state=True)
    first_seconds = time.monotonic() - started
    assert first.is_completed()
    report = first.result()
    assert report["values"] == [0, 2, 4]
    assert report["pid"] != os.getpid()  # the tasks ran in the Dask worker process
    # The worker read its profile from its own environment, not from anything pickled.
    assert report["config"] == str(worker_config)
    assert report["handler_configs"] == [str(worker_config)]
    assert count_of(counters, "dask_double") == 3

    # The store holds a sealed blob for each task run's result.
    async def task_runs(flow_run_id: Any) -> list[Any]:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    runs = asyncio.run(task_runs(first.state_details.flow_run_id))
    assert len(runs) == 4
    store = from_profile().store
    for run in runs:
        assert run.state.is_completed()
        assert run.state.data.serializer.type == "sealed-results"
        blob = store.get(storage_name(None, str(run.state.data.storage_key)))
        assert VALUE_MARK.encode() not in blob and b'"value"' not in blob

    # A second flow run on a new cluster: every task is a cache hit, read by the worker.
    started = time.monotonic()
    second = pipeline(3, 1, return_state=True)
    second_seconds = time.monotonic() - started
    assert second.is_completed()
    assert second.result()["values"] == [0, 2, 4]
    assert count_of(counters, "dask_double") == 3  # no body ran again
    runs = asyncio.run(task_runs(second.state_details.flow_run_id))
    assert sorted(run.state.name for run in runs) == ["Cached"] * 4

    support.assert_nothing_stored(server, MARKERS)
    print(f"dask flow runs: {first_seconds:.1f} s, then {second_seconds:.1f} s (cached)")
