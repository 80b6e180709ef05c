"""Shared pieces of the Prefect tests: a real Prefect server, a sealed profile whose every
setting is a distinctive string, the flows under test (importable from a subprocess too), and
a reader of everything the server stored.

The flows live here, at module level, so a second process (``python -c`` with this module on
the path) runs the very same task source and so computes the same cache keys.

The Prefect test modules share this module's fixtures (``scratch``, ``config``, ``counters``,
``server``, ``env``; module scoped, so each module has its own profile and environment),
imported as ``config_fixture`` and so on (leaving the names tests ask for free), and its
preamble: a test module imports this module before Prefect, so that outside CI a missing
prefect extra skips it, and calls ``add_markers``. A module's own environment for its profile
is its ``PROFILE_ENV`` (a value sets a variable, None removes it).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("CI", "").strip().lower() not in {"1", "true", "yes", "on"}:
    pytest.importorskip("prefect", reason="the prefect extra is not installed")

from prefect import flow, get_run_logger, task
from prefect.cache_policies import DEFAULT, INPUTS, TASK_SOURCE
from prefect.context import TaskRunContext
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.types import SecretDict
from pydantic import SecretStr

from sealed_results.keyproviders.local import create_keyring
from sealed_results.prefect import Revealed, SealedValue, sealed, sealed_flow
from sealed_results.testing import leakscan

REPO_ROOT = Path(__file__).resolve().parent.parent

# Distinctive strings: none of them (nor their base64 or hex) may reach Prefect's server.
ROOT_MARK = "rootdirZq7Distinct"
KEYRING_MARK = "keyringXw9Distinct"
PROFILE_DIR_MARK = "profiledirP5kDistinct"
VALUE_MARK = "resultValueK3pDistinct"
SECRET_A = "secretInputAlphaM2v"
SECRET_B = "secretInputBetaR8t"
MARKERS = (ROOT_MARK, KEYRING_MARK, PROFILE_DIR_MARK, VALUE_MARK, SECRET_A, SECRET_B)

COUNTER_ENV = "SR_TEST_COUNTER_DIR"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def add_markers(*more: str) -> None:
    """Make the markers (``MARKERS`` and ``more``) secrets of the session's leak scan."""
    for marker in (*MARKERS, *more):
        leakscan.SCAN.add_secret(marker)


# -- the profile -----------------------------------------------------------------------------
def write_profile(base: Path) -> Path:
    """A config file with one local profile; returns its path."""
    home = base / PROFILE_DIR_MARK
    home.mkdir(parents=True, exist_ok=True)
    keys = home / f"{KEYRING_MARK}.json"
    if not keys.exists():
        create_keyring(keys)
    config = home / "sealed-results.toml"
    config.write_text(
        'default_profile = "lab"\n'
        "[profiles.lab]\n"
        'handler = "local"\n'
        f'root = "./{ROOT_MARK}"\n'
        'keyprovider = "local"\n'
        f'keyprovider_options = {{ path = "./{KEYRING_MARK}.json" }}\n',
        encoding="utf-8",
    )
    return config


# -- the server ------------------------------------------------------------------------------
@dataclass
class PrefectServer:
    api_url: str
    database: Path
    start_seconds: float


_SHARED: list[PrefectServer] = []


def harness() -> Iterator[PrefectServer]:
    """A real Prefect server (subprocess, SQLite in a temporary directory), started once per
    test process and shared by every test module (each start costs 20-30 s); it stops when
    the process exits."""
    import prefect.settings
    from prefect.testing.utilities import prefect_test_harness

    if _SHARED:
        yield _SHARED[0]
        return
    started = time.monotonic()
    try:
        context = prefect_test_harness(server_startup_timeout=120)
        context.__enter__()
    except Exception as exc:  # pragma: no cover - depends on the machine
        message = f"the Prefect test server did not start ({type(exc).__name__})"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    seconds = time.monotonic() - started
    url = prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    database = Path(str(url).split(":///", 1)[1])
    api_url = str(prefect.settings.PREFECT_API_URL.value())
    _SHARED.append(PrefectServer(api_url=api_url, database=database, start_seconds=seconds))

    def stop() -> None:
        # At exit pytest has closed the streams Prefect's console handler writes to.
        logging.raiseExceptions = False
        with contextlib.suppress(Exception):
            context.__exit__(None, None, None)

    atexit.register(stop)
    yield _SHARED[0]


def subprocess_env(server: PrefectServer, config: Path, scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=server.api_url,
        PREFECT_HOME=str(scratch / "prefect-home"),
        SEALED_RESULTS_CONFIG=str(config),
        PYTHONPATH=str(REPO_ROOT),
    )
    env.pop("SEALED_RESULTS_PROFILE", None)
    return env


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# -- the fixtures of every Prefect test module -------------------------------------------------
@pytest.fixture(scope="module", name="scratch")
def scratch_fixture(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])


@pytest.fixture(scope="module", name="config")
def config_fixture(scratch: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """The module's profile, named by SEALED_RESULTS_CONFIG (and the counters directory by
    COUNTER_ENV) while the module runs, with the module's ``PROFILE_ENV`` besides."""
    path = write_profile(scratch)
    counters = scratch / "counters"
    counters.mkdir()
    more: dict[str, str | None] = getattr(request.module, "PROFILE_ENV", {})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEALED_RESULTS_CONFIG", str(path))
        patch.delenv("SEALED_RESULTS_PROFILE", raising=False)
        for name, value in more.items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        patch.setenv(COUNTER_ENV, str(counters))
        yield path


@pytest.fixture(scope="module", name="counters")
def counters_fixture(config: Path) -> Path:
    return Path(os.environ[COUNTER_ENV])


@pytest.fixture(scope="module", name="server")
def server_fixture(config: Path) -> Iterator[PrefectServer]:
    yield from harness()


@pytest.fixture(scope="module", name="env")
def env_fixture(server: PrefectServer, config: Path, scratch: Path) -> dict[str, str]:
    return subprocess_env(server, config, scratch)


# -- the flows under test ----------------------------------------------------------------------
def _count(name: str) -> None:
    """One more run of a task body, in a file (works across processes)."""
    directory = Path(os.environ[COUNTER_ENV])
    with open(directory / name, "a", encoding="utf-8") as f:
        f.write("x")


def count_of(directory: Path, name: str) -> int:
    path = directory / name
    return len(path.read_text(encoding="utf-8")) if path.exists() else 0


@task(**sealed(cache_policy=INPUTS + TASK_SOURCE))
def cached_double(x: int) -> dict[str, Any]:
    _count("cached_double")
    return {"value": x * 2, "label": VALUE_MARK}


@task(**sealed())
def default_keyed(x: int) -> str:
    # What Prefect's own DEFAULT policy would have used as this run's storage key.
    ctx = TaskRunContext.get()
    assert ctx is not None
    key = DEFAULT.compute_key(task_ctx=ctx, inputs={"x": x}, flow_parameters={})
    (Path(os.environ[COUNTER_ENV]) / "default_key").write_text(str(key), encoding="utf-8")
    return f"{VALUE_MARK}-{x}"


@task(**sealed(retries=2, retry_delay_seconds=0))
def flaky(x: int) -> str:
    _count("flaky")
    if count_of(Path(os.environ[COUNTER_ENV]), "flaky") % 3:
        raise RuntimeError("transient failure")
    return f"{VALUE_MARK}-flaky-{x}"


@task(**sealed(cache_policy=INPUTS + TASK_SOURCE))
def with_secret(token: SecretStr) -> str:
    _count("with_secret")
    return f"{VALUE_MARK}-len{len(token.get_secret_value())}"


@flow(**sealed_flow())
def pipeline(x: int) -> list[Any]:
    return [cached_double(x), default_keyed(x), flaky(x)]


@flow(**sealed_flow())
def secret_flow(first: SecretStr, second: SecretStr) -> list[str]:
    return [with_secret(first), with_secret(second), with_secret(first)]


@task(**sealed())
async def async_square(x: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"square": x * x, "label": VALUE_MARK}


@flow(**sealed_flow())
async def async_pipeline(n: int) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(async_square(i) for i in range(n))))


@task(**sealed())
def threaded(x: int) -> str:
    time.sleep(0.05)
    return f"{VALUE_MARK}-{x}"


@flow(**sealed_flow(task_runner=ThreadPoolTaskRunner(max_workers=4)))
def threaded_pipeline(n: int) -> list[str]:
    return threaded.map(range(n)).result()


# -- the other leak paths (issue 14): parameters, exception messages, logs ---------------------
PARAM_MARK = "paramValueQ4wDistinct"
NOTE_MARK = "noteValueB7xDistinct"
EXC_MARK = "exceptionMsgH6nDistinct"
TRACE_MARK = "tracebackMsgT2kDistinct"
PATTERN_MARK = "cardNo-4111222233334444"
PATTERNS = r"cardNo-\d{16}"
LEAK_MARKERS = (PARAM_MARK, NOTE_MARK, EXC_MARK, TRACE_MARK, PATTERN_MARK)


@task(**sealed(retries=2, retry_delay_seconds=0, seal_exceptions=True))
def sensitive_task(secret: str) -> str:
    logger = get_run_logger()
    logger.info("processing %s", secret)  # an opened parameter: redacted as its token
    logger.info("charging %s", PATTERN_MARK)  # a configured pattern
    try:
        raise KeyError(TRACE_MARK)
    except KeyError:
        logger.exception("lookup failed")  # a formatted traceback with a sealed message
    _count("sensitive_task")
    raise ValueError(f"{EXC_MARK} for {secret}")


@flow(**sealed_flow(seal_exceptions=True))
def sensitive_flow(secret: Revealed[str], note: SealedValue) -> str:
    get_run_logger().info("note says %s", note.reveal())
    return sensitive_task(secret)


@task(**sealed(cache_policy=INPUTS + TASK_SOURCE))
def served_double(x: int) -> dict[str, Any]:
    return {"value": x * 2, "label": VALUE_MARK}


@flow(**sealed_flow(seal_exceptions=True))
def served_total(amount: Revealed[int]) -> dict[str, Any]:
    return served_double(amount)


@task(persist_result=True, cache_policy=INPUTS)
def leaky_cached(customer: str) -> str:
    return customer


@task(
    persist_result=True,
    task_run_name="leak-{customer}",
    result_storage_key="{parameters[customer]}.json",
    log_prints=True,
)
def leaky_task(customer: str) -> str:
    print(customer)
    return customer


@flow(flow_run_name="run-{customer}", log_prints=True)
def leaky_flow(customer: str, token: SecretDict, pin: SecretStr) -> str:
    """Never run: `sealed-results audit` must find each of its leaks."""
    return leaky_task(leaky_cached(customer))


LEAKY_KINDS = {
    "plain-parameter",
    "leaking-parameter",
    "run-name-template",
    "storage-key-template",
    "unkeyed-cache-policy",
    "unsealed-result",
    "log-prints",
    "exception-message",
}


def flush_to_api() -> None:
    """Send the logs and events this process has queued, so the audit sees them."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with contextlib.suppress(Exception):
        EventsWorker.drain_all(timeout=10)


def assert_nothing_stored(server: PrefectServer, markers: tuple[str, ...]) -> str:
    """No marker, nor its base64 or hex forms, in the database or the API; returns the API
    text for further checks."""
    flush_to_api()
    stored = database_text(server.database)
    api = asyncio.run(api_text())
    for marker in markers:
        for form in forms(marker):
            assert form not in stored, f"{marker} ({form[:6]}...) in the database"
            assert form not in api, f"{marker} ({form[:6]}...) in the API"
    return api


# -- what the server stored ------------------------------------------------------------------
def forms(marker: str) -> list[str]:
    """A marker and its base64 (standard and URL-safe, at each alignment) and hex forms."""
    raw = marker.encode()
    found = {marker, raw.hex(), raw.hex().upper()}
    for shift in range(3):
        padded = b"\0" * shift + raw
        for encoder in (base64.b64encode, base64.urlsafe_b64encode):
            text = encoder(padded).decode()
            # The first group holds prefix bytes when shifted; the last meets what follows.
            found.add(text[4 if shift else 0 : -4])
    return sorted(f for f in found if len(f) >= 8)


def database_text(database: Path) -> str:
    """Every row of every table of the server's SQLite database, as text."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        parts = []
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                parts.append(
                    " ".join(
                        value.decode("latin-1") if isinstance(value, bytes) else str(value)
                        for value in row
                    )
                )
        return "\n".join(parts)
    finally:
        connection.close()


async def api_text() -> str:
    """The API's view of flow runs, task runs, deployments, block documents (secrets
    included), logs and events, as JSON text."""
    import httpx
    from prefect.client.orchestration import get_client

    parts: list[str] = []

    async def every(read: Any, **kwargs: Any) -> list[str]:
        found: list[str] = []
        while True:
            page = await read(limit=200, offset=len(found), **kwargs)
            found += [r.model_dump_json() for r in page]
            if len(page) < 200:
                return found

    async with get_client() as client:
        parts += await every(client.read_flow_runs)
        parts += await every(client.read_task_runs)
        parts += await every(client.read_deployments)
        parts += await every(client.read_block_documents, include_secrets=True)
        parts += await every(client.read_logs)
        api = str(client.api_url).rstrip("/")
    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.post(f"{api}/events/filter", json={"limit": 50})
        page.raise_for_status()
        body = page.json()
        parts.append(json.dumps(body))
        while body.get("next_page"):
            page = await http.get(body["next_page"])
            page.raise_for_status()
            body = page.json()
            parts.append(json.dumps(body))
    return "\n".join(parts)
