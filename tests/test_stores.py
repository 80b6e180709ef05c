"""The stores: StoreSuite on every built-in store (cloud ones on the real local servers of
tests/servers.py), the local store's hardening, and what each cloud store does with missing
buckets, refused access and transient faults (a fault-injecting proxy in front of the real
server fails chosen requests).
"""

from __future__ import annotations

import errno
import os
import pickle
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sealed_results.errors import (
    ConfigError,
    IntegrityError,
    ResultNotFound,
    StorageError,
)
from sealed_results.retry import RetryPolicy
from sealed_results.stores import LocalStore, MemoryStore, Store, _localfs
from sealed_results.testing.stores import (
    StoreSuite,
    append_under_cas,
    assert_names_nothing,
    items_of,
)
from tests.fault_proxy import Fault, FaultProxy, gcs_error, s3_error
from tests.handler_suite import REPO_ROOT, MiB, isolated_env, run_child
from tests.servers import AZURITE_KEY, GCSServer, MotoServer

QUICK = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05)


# -- the suite on every store --------------------------------------------------------------------
class TestLocalStore(StoreSuite):
    @pytest.fixture
    def store(self, tmp_path: Path, leak_scan: Any) -> Store:
        root = tmp_path / f"store-root-{uuid.uuid4().hex[:8]}"
        leak_scan.add_secret(str(root))
        return LocalStore(root)


class TestLocalStoreWithNamedTemporaryFiles(TestLocalStore):
    """Where O_TMPFILE is refused (other systems, some filesystems)."""

    @pytest.fixture
    def store(self, tmp_path: Path, leak_scan: Any) -> Store:
        store = LocalStore(tmp_path / "root")
        store._unnamed_files = False  # as a filesystem that refuses O_TMPFILE leaves it
        return store


class TestLocalStoreWithLockFiles(TestLocalStore):
    """Where the root directory cannot be flocked (NFS): a lock file beside the object."""

    @pytest.fixture
    def store(self, tmp_path: Path, leak_scan: Any) -> Store:
        store = LocalStore(tmp_path / "root")
        store._lock_files = True  # as a refused directory lock leaves it
        return store

    def test_the_lock_file_is_hidden(self, store: Store, tmp_path: Path) -> None:
        store.swap("keyset", b"k", None)
        assert sorted(os.listdir(tmp_path / "root")) == [".lock-keyset", "keyset"]
        assert list(store.list()) == ["keyset"]


class TestMemoryStore(StoreSuite):
    @pytest.fixture
    def store(self) -> Store:
        return MemoryStore(f"memory://suite-{uuid.uuid4().hex}")


@pytest.fixture
def s3_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # Distinctive credentials (moto accepts any), so that a pickle or message holding one shows.
    secrets = {"key": f"AKIA{uuid.uuid4().hex[:16].upper()}", "secret": f"sr-{uuid.uuid4().hex}"}
    monkeypatch.setenv("SR_TEST_S3_KEY", secrets["key"])
    monkeypatch.setenv("SR_TEST_S3_SECRET", secrets["secret"])
    return secrets


def _private(root: str, leak_scan: Any) -> list[str]:
    leak_scan.add_secret(root, root.split("/")[2])
    return [root, root.split("/")[2]]


class TestS3Store(StoreSuite):
    @pytest.fixture
    def store(self, s3_root: tuple[str, dict[str, Any]], s3_secrets: dict[str, str]) -> Store:
        from sealed_results.stores import S3Store

        root, options = s3_root
        return S3Store(
            root,
            storage_options={**options, **s3_secrets},
            credentials_from_env={"key": "SR_TEST_S3_KEY", "secret": "SR_TEST_S3_SECRET"},
        )

    @pytest.fixture
    def store_secrets(self, s3_secrets: dict[str, str]) -> list[str]:
        return list(s3_secrets.values())

    @pytest.fixture
    def store_private(self, s3_root: tuple[str, dict[str, Any]], leak_scan: Any) -> list[str]:
        return _private(s3_root[0], leak_scan)


class TestGCSStore(StoreSuite):
    @pytest.fixture
    def store(self, gcs_root: tuple[str, dict[str, Any]]) -> Store:
        from sealed_results.stores import GCSStore

        root, options = gcs_root
        return GCSStore(root, storage_options=options)

    @pytest.fixture
    def store_private(self, gcs_root: tuple[str, dict[str, Any]], leak_scan: Any) -> list[str]:
        return _private(gcs_root[0], leak_scan)


class TestAzureBlobStore(StoreSuite):
    @pytest.fixture
    def store(
        self, azure_root: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
    ) -> Store:
        from sealed_results.stores import AzureBlobStore

        root, options = azure_root
        monkeypatch.setenv("SR_TEST_AZURE_CONNECTION_STRING", options["connection_string"])
        return AzureBlobStore(
            root,
            storage_options=options,
            credentials_from_env={"connection_string": "SR_TEST_AZURE_CONNECTION_STRING"},
        )

    @pytest.fixture
    def store_secrets(self, azure_root: tuple[str, dict[str, Any]]) -> list[str]:
        return [AZURITE_KEY, azure_root[1]["connection_string"]]

    @pytest.fixture
    def store_private(self, azure_root: tuple[str, dict[str, Any]], leak_scan: Any) -> list[str]:
        return _private(azure_root[0], leak_scan)


# -- the local store's own behaviour -------------------------------------------------------------
@pytest.fixture
def local(tmp_path: Path) -> tuple[LocalStore, Path]:
    root = tmp_path / "root"
    store = LocalStore(root)
    store.put("real", b"a real object")
    return store, root


def _refused_everywhere(store: LocalStore, name: str) -> None:
    for operation in (store.get, store.open, store.fetch, store.exists, store.info):
        with pytest.raises(StorageError, match="not a regular file") as error:
            operation(name)  # type: ignore[operator]
        assert_names_nothing(error.value, [name, store.settings()["root"]])


@pytest.mark.timeout(10)
def test_symlink_to_a_device_is_refused(local: tuple[LocalStore, Path]) -> None:
    store, root = local
    os.symlink("/dev/zero", root / "zeros")
    _refused_everywhere(store, "zeros")
    assert sorted(store.list()) == ["real"]


@pytest.mark.timeout(10)  # a FIFO opened without O_NONBLOCK would block here for ever
def test_fifo_is_refused_without_blocking(local: tuple[LocalStore, Path]) -> None:
    store, root = local
    os.mkfifo(root / "pipe")
    _refused_everywhere(store, "pipe")
    assert sorted(store.list()) == ["real"]


def test_symlink_to_a_file_outside_the_root_is_refused(
    local: tuple[LocalStore, Path], tmp_path: Path
) -> None:
    store, root = local
    outside = tmp_path / "outside"
    outside.write_bytes(b"not an object of this store")
    os.symlink(outside, root / "elsewhere")
    os.symlink(root / "real", root / "alias")  # even one that points inside
    _refused_everywhere(store, "elsewhere")
    _refused_everywhere(store, "alias")
    assert sorted(store.list()) == ["real"]


def test_directory_is_not_an_object(local: tuple[LocalStore, Path]) -> None:
    store, root = local
    (root / "subdir").mkdir()
    _refused_everywhere(store, "subdir")
    with pytest.raises(StorageError):
        store.delete("subdir")
    assert sorted(store.list()) == ["real"]


def test_root_is_created_private_on_first_write(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "root"
    store = LocalStore(root)
    assert list(store.list()) == [] and not store.exists("x")
    assert not root.exists()  # reads create nothing
    store.put("x", b"1")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "x").stat().st_mode) == 0o600


def test_failed_writes_leave_no_file_at_all(local: tuple[LocalStore, Path]) -> None:
    store, root = local
    for unnamed in (True, False):
        store._unnamed_files = unnamed
        with pytest.raises(RuntimeError), store.create("broken") as sink:
            sink.write(b"partial")
            raise RuntimeError
        with pytest.raises(FileExistsError):
            store.put("real", b"again")
        store.replace("replaced", b"r")
        assert sorted(os.listdir(root)) == ["real", "replaced"]
        store.delete("replaced")


def test_list_skips_temporary_files(local: tuple[LocalStore, Path]) -> None:
    store, root = local
    (root / ".tmp-abc-123456").write_bytes(b"left by a crash")
    assert list(store.list()) == ["real"]


def test_local_info_is_the_files_size_and_mtime(local: tuple[LocalStore, Path]) -> None:
    store, root = local
    os.utime(root / "real", (1_700_000_000.25, 1_700_000_000.25))
    info = store.info("real")
    assert info.size == len(b"a real object")
    assert info.modified == datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC)


def _clock_ahead(monkeypatch: pytest.MonkeyPatch, seconds: float) -> float:
    """Move the sweep's clock ``seconds`` ahead (a file's ctime cannot be set back); the
    moved "now"."""
    now = time.time() + seconds
    monkeypatch.setattr(_localfs, "time", SimpleNamespace(time=lambda: now))
    return now


def test_local_sweep_removes_old_litter_and_nothing_else(
    local: tuple[LocalStore, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, root = local
    store.replace("keyset", b"k")
    day_ago = time.time() - 86400
    for name in ("real", "keyset", ".tmp-old-0123456789ab", ".lock-old", ".tmp-held"):
        (root / name).touch()
        os.utime(root / name, (day_ago, day_ago))
    (root / ".tmp-dir").mkdir()
    os.symlink(root / "real", root / ".tmp-link")
    now = _clock_ahead(monkeypatch, 2 * 3600)
    (root / ".tmp-fresh").touch()
    os.utime(root / ".tmp-fresh", (now - 60, now - 60))  # changed a minute before "now"
    assert store.sweep(3 * 3600) == 0  # younger than the bound: all kept
    held = _localfs.lock_file(str(root / ".lock-held"))
    os.utime(root / ".lock-held", (day_ago, day_ago))
    try:
        assert store.sweep(3600) == 3  # .tmp-old, .lock-old, .tmp-held
    finally:
        os.close(held)
    assert sorted(os.listdir(root)) == [
        ".lock-held",
        ".tmp-dir",
        ".tmp-fresh",
        ".tmp-link",
        "keyset",
        "real",
    ]
    assert store.get("real") == b"a real object" and store.get("keyset") == b"k"
    assert store.sweep(3600) == 1  # the lock file, once nobody holds it
    assert LocalStore(root / "never-written").sweep(0) == 0
    with pytest.raises(ValueError):
        store.sweep(-1)


def test_a_swept_lock_file_never_lets_two_swaps_in(tmp_path: Path) -> None:
    # A locker that waited on a lock file removed under it (by a sweep) must not go ahead on
    # the removed inode while another locker holds the new file.
    path = str(tmp_path / ".lock-k")
    first = _localfs.lock_file(path)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(_localfs.lock_file(path)))
    waiter.start()
    time.sleep(0.2)  # the waiter opened the file and waits in flock
    os.unlink(path)  # as sweep_litter does, under the lock
    os.close(first)
    waiter.join(5)
    assert got, "the waiter never got the lock"
    try:
        assert os.fstat(got[0]).st_ino == os.lstat(path).st_ino  # it locked the named file
    finally:
        os.close(got[0])


def test_local_store_with_lock_files_sweeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "root")
    store._lock_files = True
    store.swap("keyset", b"1", None)
    assert sorted(os.listdir(tmp_path / "root")) == [".lock-keyset", "keyset"]
    _clock_ahead(monkeypatch, 7200)
    assert store.sweep(3600) == 1
    assert os.listdir(tmp_path / "root") == ["keyset"]
    _, version = store.get_versioned("keyset")
    store.swap("keyset", b"2", version)  # the lock file comes back
    assert store.get("keyset") == b"2"


def test_root_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    LocalStore(tmp_path).put("x", b"1")
    assert LocalStore(f"file://{tmp_path}").get("x") == b"1"
    monkeypatch.chdir(tmp_path.parent)
    relative = LocalStore(tmp_path.name)
    assert relative.settings() == {"root": str(tmp_path), "durable": False}
    assert pickle.loads(pickle.dumps(relative)).get("x") == b"1"
    with pytest.raises(ConfigError) as error:
        LocalStore("s3://bucket/prefix")
    assert "bucket" not in str(error.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_root_is_denied(local: tuple[LocalStore, Path]) -> None:
    store, root = local
    root.chmod(0)
    try:
        for operation in (store.get, store.exists, lambda n: store.put(n, b"")):
            with pytest.raises(StorageError, match="denied") as error:
                operation("real")
            assert_names_nothing(error.value, [str(root)])
            assert error.value.__cause__ is None and error.value.__suppress_context__
            assert isinstance(error.value.__context__, PermissionError)  # for local debugging
    finally:
        root.chmod(0o700)


def test_os_errors_of_a_stream_are_ours(local: tuple[LocalStore, Path]) -> None:
    store, root = local
    stream = store.open("real")
    # Break the stream under the store: close its descriptor, found through /proc.
    fds = [fd for fd in os.listdir("/proc/self/fd") if _points_at(fd, root / "real")]
    assert len(fds) == 1
    os.close(int(fds[0]))
    with pytest.raises(StorageError) as error:
        stream.read()
    assert isinstance(error.value.__context__, OSError)
    assert error.value.__context__.errno == errno.EBADF
    stream.close()


def _points_at(fd: str, path: Path) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == str(path)
    except OSError:
        return False


# -- the local store: compare-and-swap across processes, durability, bounded reads ---------------
RACER = r"""
import sys
from sealed_results.stores import LocalStore
from sealed_results.testing.stores import append_under_cas
store = LocalStore(sys.argv[1])
conflicts = 0
sys.stdin.readline()  # start together
for round_ in range(int(sys.argv[3])):
    conflicts += append_under_cas(store, "keyset", b"%s-%d" % (sys.argv[2].encode(), round_))
print(conflicts)
"""


def test_local_swaps_race_across_processes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    rounds, writers = 15, ("p0", "p1")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(root), tag, str(rounds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        for tag in writers
    ]
    # Threads of this process race the two processes too.
    threads_done: list[int] = []

    def thread_writer(tag: str) -> None:
        for round_ in range(rounds):
            threads_done.append(
                append_under_cas(store, "keyset", b"%s-%d" % (tag.encode(), round_))
            )

    threads = [threading.Thread(target=thread_writer, args=(f"t{i}",)) for i in range(2)]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.flush()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.communicate(timeout=120)
        assert process.returncode == 0
    got = items_of(store.get("keyset"))
    expected = {
        b"%s-%d" % (tag.encode(), r) for tag in (*writers, "t0", "t1") for r in range(rounds)
    }
    assert sorted(got) == sorted(expected)  # every item, once
    assert os.listdir(root) == ["keyset"]  # the lock is the root directory: no lock file
    assert list(store.list()) == ["keyset"]


def test_local_swap_refuses_what_is_not_a_file(local: tuple[LocalStore, Path]) -> None:
    store, root = local
    os.symlink(root / "real", root / "alias")
    with pytest.raises(StorageError, match="not a regular file"):
        store.swap("alias", b"x", None)
    with pytest.raises(StorageError, match="not a regular file"):
        store.get_versioned("alias")
    assert os.readlink(root / "alias") == str(root / "real")


@pytest.mark.timeout(20)
def test_local_sparse_64_gib_object_is_refused_by_max_size(
    local: tuple[LocalStore, Path],
) -> None:
    import resource
    import time

    store, root = local
    name = f"sparse-{uuid.uuid4().hex}"  # a variable: a traceback shows literals in the source
    with open(root / name, "wb") as file:
        os.truncate(file.fileno(), 64 << 30)  # 64 GiB of length, no blocks
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    for call in (
        lambda: store.get(name, max_size=MiB),
        lambda: store.get_versioned(name, max_size=MiB),
        lambda: store.fetch(name, max_size=MiB),
    ):
        with pytest.raises(IntegrityError) as error:
            call()
        assert_names_nothing(error.value, [str(root), name])
    assert time.perf_counter() - started < 1.0
    # ru_maxrss is in KiB on Linux: nothing near the object's size was allocated.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every os.fsync as "file" or "dir"."""
    calls: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_durable_local_writes_fsync_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fsyncs(monkeypatch)
    plain = LocalStore(tmp_path / "plain")
    plain.put("a", b"1")
    with plain.create("b") as sink:
        sink.write(b"2")
    assert calls == []  # the hot path stays as it was
    durable = LocalStore(tmp_path / "durable", durable=True)
    assert durable.settings()["durable"] is True
    assert pickle.loads(pickle.dumps(durable)).settings()["durable"] is True
    for unnamed in (True, False):
        durable._unnamed_files = unnamed
        calls.clear()
        durable.put(f"a{unnamed}", b"1")
        assert calls == ["file", "dir"]
        calls.clear()
        with durable.create(f"b{unnamed}") as sink:
            sink.write(b"2")
        assert calls == ["file", "dir"]
    # Key material is always durable: replace and swap, whatever `durable` says.
    for store in (plain, durable):
        calls.clear()
        store.replace("k", b"v1")
        assert calls == ["file", "dir"]
        calls.clear()
        store.swap("k", b"v2", store.get_versioned("k")[1])
        assert calls == ["file", "dir"]


def test_local_handler_passes_durable_to_its_store(tmp_path: Path, keyring: Any) -> None:
    from sealed_results.handlers import LocalHandler

    handler = LocalHandler(str(tmp_path / "root"), keyring, durable=True)
    assert handler.store.settings()["durable"] is True
    token = handler.write({"x": 1})
    assert pickle.loads(pickle.dumps(handler)).read(token) == {"x": 1}


def test_memory_stores_share_by_root() -> None:
    root = f"memory://{uuid.uuid4().hex}"
    MemoryStore(root).put("x", b"1")
    assert MemoryStore(root + "/").get("x") == b"1"
    assert not MemoryStore(root + "-other").exists("x")
    with pytest.raises(ConfigError):
        MemoryStore("/tmp/not-memory")


# -- cloud stores: faults, missing buckets, credentials -------------------------------------
@pytest.fixture
def s3_proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_server.endpoint_url)
    yield proxy
    proxy.close()


@pytest.fixture
def gcs_proxy(gcs_server: GCSServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(gcs_server.endpoint_url)
    yield proxy
    proxy.close()


def s3_store(root: str, options: dict[str, Any], endpoint: str, **kwargs: Any) -> Any:
    from sealed_results.stores import S3Store

    storage = {
        **options,
        "endpoint_url": endpoint,
        # botocore: 2 attempts per request, so that the counts below are easy to read.
        # ("max_attempts" would mean 2 retries, i.e. 3 attempts.)
        "config_kwargs": {"retries": {"mode": "standard", "total_max_attempts": 2}},
    }
    return S3Store(root, storage_options=storage, **kwargs)


def assert_ours(error: BaseException, *private: str) -> None:
    """Our error, naming nothing, raised ``from None`` with the SDK's error kept as context."""
    assert_names_nothing(error, list(private))
    assert error.__cause__ is None and error.__suppress_context__
    assert error.__context__ is not None  # the SDK's error, for local debugging


@pytest.fixture
def quick_s3(s3_root: tuple[str, dict[str, Any]], s3_proxy: FaultProxy) -> tuple[str, Any]:
    """Its root and an S3 store behind ``s3_proxy``, retrying QUICK, that holds "object"; the
    proxy's log is empty."""
    root, options = s3_root
    store = s3_store(root, options, s3_proxy.url, retry=QUICK)
    store.put("object", b"value")
    s3_proxy.log.clear()
    return root, store


# -- what retries where -------------------------------------------------------------------------
def test_s3_transient_errors_are_retried_by_botocore_then_by_us(
    quick_s3: tuple[str, Any], s3_proxy: FaultProxy
) -> None:
    root, store = quick_s3
    # Three 503s outlast botocore's two attempts once; our second attempt gets through.
    s3_proxy.fail(*[s3_error("ServiceUnavailable", 503)] * 3)
    assert store.get("object") == b"value"
    assert s3_proxy.count(503) == 3
    # An outage that does not end: exactly 2 (botocore) x 2 (ours) requests, then our error.
    s3_proxy.log.clear()
    s3_proxy.fail(*[s3_error("ServiceUnavailable", 503)] * 50)
    with pytest.raises(StorageError, match="transient") as error:
        store.get("object")
    s3_proxy.faults.clear()
    assert_ours(error.value, root, root.split("/")[2])
    assert s3_proxy.count() == 2 * 2


def test_s3_dropped_connection_is_retried(
    s3_root: tuple[str, dict[str, Any]], s3_proxy: FaultProxy
) -> None:
    root, options = s3_root
    store = s3_store(root, options, s3_proxy.url, retry=RetryPolicy(attempts=1))
    store.put("object", b"value")
    s3_proxy.fail(Fault(None))
    assert store.get("object") == b"value"  # botocore reconnects; our layer was not needed


def test_s3_failed_part_is_retried_without_replaying_the_stream(
    s3_root: tuple[str, dict[str, Any]], s3_proxy: FaultProxy
) -> None:
    root, options = s3_root
    store = s3_store(root, options, s3_proxy.url)
    internal_error = b"<Error><Code>InternalError</Code></Error>"
    s3_proxy.fail(Fault(500, internal_error, when=lambda m, p: "partNumber=2" in p))
    chunk = os.urandom(MiB)
    with store.create("large") as sink:
        for _ in range(20):
            sink.write(chunk)
    assert s3_proxy.count(500) == 1
    assert store.get("large") == chunk * 20


def test_s3_access_denied_is_permanent(quick_s3: tuple[str, Any], s3_proxy: FaultProxy) -> None:
    root, store = quick_s3
    s3_proxy.fail(s3_error("AccessDenied", 403))
    with pytest.raises(StorageError, match="denied") as error:
        store.get("object")
    assert s3_proxy.count() == 1  # nobody retried it
    assert_ours(error.value, root, root.split("/")[2])


def test_gcs_transient_error_is_retried_and_forbidden_is_not(
    gcs_root: tuple[str, dict[str, Any]], gcs_proxy: FaultProxy
) -> None:
    from sealed_results.stores import GCSStore

    root, options = gcs_root
    store = GCSStore(root, storage_options={**options, "endpoint_url": gcs_proxy.url})
    store.put("object", b"value")
    gcs_proxy.log.clear()
    gcs_proxy.fail(gcs_error(503))
    assert store.get("object") == b"value"  # gcsfs retried after about a second
    assert gcs_proxy.count(503) == 1
    gcs_proxy.log.clear()
    gcs_proxy.fail(gcs_error(403))
    with pytest.raises(StorageError, match="denied") as error:
        store.get("object")
    assert gcs_proxy.count() == 1
    assert_ours(error.value, root, root.split("/")[2])


def test_azure_wrong_key_is_denied_at_once(azure_root: tuple[str, dict[str, Any]]) -> None:
    from sealed_results.stores import AzureBlobStore

    root, options = azure_root
    wrong = options["connection_string"].replace(AZURITE_KEY, "A" * 86 + "==")
    store = AzureBlobStore(root, storage_options={"connection_string": wrong})
    with pytest.raises(StorageError, match="denied") as error:
        store.put("object", b"value")
    assert_ours(error.value, root, root.split("/")[2], AZURITE_KEY, wrong)


# -- missing buckets -----------------------------------------------------------------------------
def _drop_container(kind: str, server: Any, root: str, options: dict[str, Any]) -> None:
    import fsspec

    container = root.split("/")[2]
    fs = fsspec.filesystem(root.split(":")[0], skip_instance_cache=True, **options)
    fs.rm(f"{container}/results", recursive=True)
    if kind == "s3":
        fs.call_s3("delete_bucket", Bucket=container)
    elif kind == "azure":
        from azure.storage.blob import BlobServiceClient

        with BlobServiceClient.from_connection_string(server.connection_string) as client:
            client.delete_container(container)
    else:
        fs.call("DELETE", "b/{}", container)


def _cloud_store(kind: str, root: str, **kwargs: Any) -> Store:
    import sealed_results.stores as stores

    cls = {"s3": "S3Store", "azure": "AzureBlobStore", "gcs": "GCSStore"}[kind]
    return getattr(stores, cls)(root, **kwargs)  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["s3", "azure", "gcs"])
def test_missing_bucket_is_a_storage_error(kind: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(
        {"s3": "moto_server", "azure": "azurite_server"}.get(kind, "gcs_server")
    )
    root, options = request.getfixturevalue(f"{kind}_root")
    store = _cloud_store(kind, root, storage_options=options)
    store.put("object", b"value")
    _drop_container(kind, server, root, options)
    bucket = root.split("/")[2]
    operations: list[Callable[[], object]] = [
        lambda: store.get("object"),
        lambda: store.open("object"),
        lambda: store.exists("object"),
        lambda: store.delete("object"),
        lambda: store.list(),
        lambda: store.put("more", b"more"),
        lambda: _cloud_store(kind, root, storage_options=options).put("fresh", b"fresh"),
    ]
    for operation in operations:
        with pytest.raises(StorageError, match="does not exist") as error:
            operation()
        assert_names_nothing(error.value, [root, bucket])
        assert error.value.__cause__ is None


# -- leftovers, credentials, construction --------------------------------------------------------
def test_s3_leaves_no_multipart_upload_behind(s3_root: tuple[str, dict[str, Any]]) -> None:
    import boto3

    from sealed_results.stores import S3Store

    root, options = s3_root
    store = S3Store(root, storage_options=options)
    chunk = b"A" * MiB
    with pytest.raises(RuntimeError), store.create("broken") as sink:
        for _ in range(20):
            sink.write(chunk)
        raise RuntimeError("the source broke")
    with store.create("taken") as sink:
        sink.write(chunk * 9)
    with pytest.raises(FileExistsError), store.create("taken") as sink:
        sink.write(b"B" * 9 * MiB)
    client = boto3.client("s3", endpoint_url=options["endpoint_url"])
    assert client.list_multipart_uploads(Bucket=root.split("/")[2]).get("Uploads", []) == []
    assert sorted(store.list()) == ["taken"]


CHILD = r"""
import json, pickle, sys
store = pickle.loads(sys.stdin.buffer.read())
store.put("from-the-child", b"written in the child")
print(json.dumps({"value": store.get(sys.argv[1]).decode()}))
"""


@pytest.mark.parametrize("kind", ["s3", "azure", "gcs"])
def test_pickled_store_reconnects_in_another_process(
    kind: str, request: pytest.FixtureRequest
) -> None:
    root, options = request.getfixturevalue(f"{kind}_root")
    env = isolated_env()
    mapping: dict[str, str] = {}
    if kind == "s3":
        mapping = {"key": "SR_TEST_S3_KEY", "secret": "SR_TEST_S3_SECRET"}
        env |= {"SR_TEST_S3_KEY": options["key"], "SR_TEST_S3_SECRET": options["secret"]}
    elif kind == "azure":
        mapping = {"connection_string": "SR_TEST_AZURE_CONNECTION_STRING"}
        env["SR_TEST_AZURE_CONNECTION_STRING"] = options["connection_string"]
    store = _cloud_store(kind, root, storage_options=options, credentials_from_env=mapping)
    store.put("from-the-parent", b"written in the parent")
    report = run_child(CHILD, store, "from-the-parent", env=env)
    assert report == {"value": "written in the parent"}
    assert store.get("from-the-child") == b"written in the child"


# -- a copy without the secret options it was built with ---------------------------------------
@pytest.fixture
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION", "AZURE_STORAGE")):
            monkeypatch.delenv(name)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(name, os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _assert_withheld_error(error: BaseException, names: list[str], *private: str) -> None:
    message = str(error)
    assert isinstance(error, ConfigError)
    assert "pickled without its secret storage options" in message
    assert "credentials_from_env" in message
    for name in names:
        assert name in message
    assert_names_nothing(error, list(private))


def test_azure_copy_without_its_connection_string_says_so(
    azure_root: tuple[str, dict[str, Any]], no_ambient_credentials: None
) -> None:
    from sealed_results.stores import AzureBlobStore

    root, options = azure_root
    original = AzureBlobStore(root, storage_options=options)
    original.put("object", b"value")
    blob = pickle.dumps(original)
    assert options["connection_string"].encode() not in blob
    copy = pickle.loads(blob)
    with pytest.raises(ConfigError) as error:
        copy.get("object")
    _assert_withheld_error(
        error.value, ["connection_string"], root, root.split("/")[2], AZURITE_KEY,
        options["connection_string"],
    )  # fmt: skip
    # Given again through the environment, the copy works.
    os.environ["SR_TEST_AZ_CS"] = options["connection_string"]
    try:
        again = AzureBlobStore(
            **{**copy.settings(), "credentials_from_env": {"connection_string": "SR_TEST_AZ_CS"}}
        )
        assert again.get("object") == b"value"
    finally:
        del os.environ["SR_TEST_AZ_CS"]


def test_s3_copy_without_its_key_and_secret_says_so(
    s3_root: tuple[str, dict[str, Any]], no_ambient_credentials: None
) -> None:
    from sealed_results.stores import S3Store

    root, options = s3_root
    secrets = {"key": "AKIAWITHHELD0000", "secret": f"sr-{uuid.uuid4().hex}"}
    original = S3Store(root, storage_options={**options, **secrets})
    original.put("object", b"value")
    blob = pickle.dumps(original)
    assert not [v for v in secrets.values() if v.encode() in blob]
    copy = pickle.loads(blob)
    assert copy.settings()["withheld_options"] == ["key", "secret"]
    for operation in (lambda: copy.get("object"), lambda: copy.put("other", b"x")):
        with pytest.raises(ConfigError) as error:
            operation()
        _assert_withheld_error(
            error.value, ["key", "secret"], root, root.split("/")[2], *secrets.values()
        )
    # The original (which has them) is unaffected, and a denial after success stays "denied".
    assert original.get("object") == b"value"


def test_credentials_from_env_names_a_missing_variable_only() -> None:
    from sealed_results.stores import S3Store

    store = S3Store("s3://bucket/prefix", credentials_from_env={"secret": "SR_TEST_UNSET"})
    with pytest.raises(ConfigError, match="SR_TEST_UNSET") as error:
        store.get("object")
    assert "bucket" not in str(error.value)


@pytest.mark.parametrize(
    ("cls_name", "good", "bad"),
    [
        ("S3Store", "s3a://bucket/x", "gs://bucket/x"),
        ("GCSStore", "gcs://bucket/x", "s3://bucket/x"),
        ("AzureBlobStore", "abfss://container/x", "gs://bucket/x"),
    ],
)
def test_root_protocol_is_checked(cls_name: str, good: str, bad: str) -> None:
    import sealed_results.stores as stores

    cls = getattr(stores, cls_name)
    cls(good)
    with pytest.raises(ConfigError) as error:
        cls(bad)
    assert "bucket" not in str(error.value)


def test_importing_the_stores_imports_no_sdk() -> None:
    code = (
        "import os, sys\n"
        "os.environ.pop('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', None)\n"
        "import sealed_results.stores as stores\n"
        "sdks = ('s3fs', 'gcsfs', 'adlfs', 'botocore', 'azure')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in sdks], 'an SDK was imported'\n"
        "stores.GCSStore\n"
        "assert os.environ['GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT'] == 'false'\n"
        "assert 'gcsfs' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, cwd=REPO_ROOT, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]


def test_missing_object_is_result_not_found_with_sdk_context(
    s3_root: tuple[str, dict[str, Any]],
) -> None:
    from sealed_results.stores import S3Store

    root, options = s3_root
    name = f"missing-{uuid.uuid4().hex}"  # a variable: a traceback shows literals in the source
    with pytest.raises(ResultNotFound) as error:
        S3Store(root, storage_options=options).get(name)
    assert_ours(error.value, root, root.split("/")[2], name)
