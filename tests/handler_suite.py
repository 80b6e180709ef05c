"""HandlerSuite: the conformance tests every result handler must pass, whatever its store.

A test module subclasses ``HandlerSuite`` and overrides one fixture, ``store``, returning a
``Store``: a handler factory on fresh roots plus raw access to the objects through the store's
own fsspec filesystem (to tamper with them and to list them). Nothing of ours is mocked: the
tests drive the public API against the real store (or emulator) and inspect what landed there.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import io
import json
import os
import pickle
import random
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fsspec.core import url_to_fs

from sealed_results.errors import IntegrityError, ResultNotFound
from sealed_results.handlers.base import ResultHandler
from sealed_results.keyproviders.base import KeyProvider
from sealed_results.testing import leakscan
from tests.conftest import PLAINTEXT_MARKER

REPO_ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
STREAM_SIZE = 64 * MiB
# A streamed 64 MiB result may hold a few blocks (8 MiB by default) in memory, never itself.
STREAM_MEMORY_BUDGET = 40 * MiB


def is_object_name(name: str) -> bool:
    return name == "keyset" or (len(name) == 32 and all(c in "0123456789abcdef" for c in name))


@dataclass
class Store:
    """One store under test: handlers on fresh roots under ``base_root``, and raw access."""

    handler_cls: type[ResultHandler]
    base_root: str  # each root key gets its own root below it
    storage_options: dict[str, Any]
    keyprovider: KeyProvider
    keyring_path: Path | None = None  # its key material must not appear in a pickle
    handler_options: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # must not appear in a pickle
    large: int = 9 * MiB  # more than one upload block: the multipart/resumable/block path
    # Why racing exclusive creates cannot be tested on this server, if they cannot.
    racy_server: str | None = None

    def __post_init__(self) -> None:
        # Roots, buckets and object names are secrets too: the session's leak scan checks
        # every message and repr of ours against them.
        leakscan.SCAN.add_secret(self.base_root, self.base_root.split("://")[-1].split("/")[0])
        self.fs, self.base = url_to_fs(
            self.base_root, skip_instance_cache=True, **self.storage_options
        )
        self.base = self.base.rstrip("/")

    def root(self, key: str = "main") -> str:
        return f"{self.base_root}/{key}"

    def handler(self, key: str = "main", **options: Any) -> ResultHandler:
        kwargs = {"storage_options": self.storage_options, **self.handler_options, **options}
        if self.handler_cls.__name__ == "LocalHandler":
            kwargs.pop("storage_options")
        return self.handler_cls(root=self.root(key), keyprovider=self.keyprovider, **kwargs)

    def paths(self) -> list[str]:
        """Every object under the base root, by path relative to it."""
        self.fs.invalidate_cache()
        found = self.fs.find(self.base) if self.fs.exists(self.base) else []
        return sorted(p[len(self.base) + 1 :] for p in found)

    def objects(self) -> dict[str, bytes]:
        return {rel: bytes(self.fs.cat_file(f"{self.base}/{rel}")) for rel in self.paths()}

    def result_names(self, key: str = "main") -> list[str]:
        self.fs.invalidate_cache()
        try:
            listed = self.fs.ls(f"{self.base}/{key}", detail=False)
        except FileNotFoundError:
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in listed]
        return sorted(n for n in names if n != "keyset" and not n.startswith(".tmp-"))

    def raw_path(self, name: str, key: str = "main") -> str:
        return f"{self.base}/{key}/{name}"

    def register_names(self) -> None:
        for rel in self.paths():
            name = rel.rsplit("/", 1)[-1]
            # "keyset" is a fixed, public name (errors may say "restore the keyset"); the
            # random result names are the secrets.
            leakscan.SCAN.add_secret(*([] if name == "keyset" else [name]), f"{self.base}/{rel}")


class PatternSource(io.RawIOBase):
    """``size`` deterministic pseudo-random bytes made on the fly (holds no memory itself),
    with the plaintext marker at the start; keeps the SHA-256 of what it gave out."""

    def __init__(self, size: int, fail_after: int | None = None) -> None:
        self.left, self.index, self.fail_after = size, 0, fail_after
        self.given = 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.fail_after is not None and self.given >= self.fail_after:
            raise OSError("the source broke")
        n = min(len(buffer), self.left, MiB)
        if n == 0:
            return 0
        chunk = random.Random(self.index).randbytes(n)
        if self.index == 0:
            marker = PLAINTEXT_MARKER.encode()
            chunk = marker + chunk[len(marker) :]
        self.index += 1
        buffer[:n] = chunk
        self.digest.update(chunk)
        self.left -= n
        self.given += n
        return n


def flip_byte(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


# A child process: unpickle a handler, stream 64 MiB in and out, report time and memory.
STREAM_CHILD = r"""
import hashlib, json, os, pickle, sys, threading, time, tracemalloc
from tests.handler_suite import PatternSource
handler = pickle.loads(sys.stdin.buffer.read())
size = int(sys.argv[1])
handler.write(0)  # connect, load the keyset, import everything before the baseline

def rss():  # resident set size now (Linux); ru_maxrss would keep the import-time peak
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.base = self.peak = rss()
        self.done = threading.Event()
    def run(self):
        while not self.done.wait(0.002):
            self.peak = max(self.peak, rss())
    def stop(self):
        self.done.set(); self.join()
        return self.peak - self.base

tracemalloc.start()
source, sampler = PatternSource(size), Sampler()
sampler.start()
started = time.perf_counter()
token = handler.write_stream(source)
write_seconds = time.perf_counter() - started
write_rss, write_peak = sampler.stop(), tracemalloc.get_traced_memory()[1]
tracemalloc.reset_peak()
digest, total, sampler = hashlib.sha256(), 0, Sampler()
sampler.start()
started = time.perf_counter()
with handler.open(token) as stream:
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
        total += len(chunk)
read_seconds = time.perf_counter() - started
read_rss, read_peak = sampler.stop(), tracemalloc.get_traced_memory()[1]
print(json.dumps({
    "ok": total == size and digest.digest() == source.digest.digest(),
    "write_seconds": write_seconds, "read_seconds": read_seconds,
    "write_peak": write_peak, "read_peak": read_peak, "write_rss": write_rss, "read_rss": read_rss,
}))
"""


def isolated_env() -> dict[str, str]:
    """``os.environ`` without ambient AWS or Azure credentials: a child process given it has
    only the credentials the test adds."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION", "AZURE_STORAGE"))
    } | {"AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull}


def child_process(
    code: str, pickled: object, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``code`` in a fresh Python process with ``pickled`` (a handler or a store) pickled on
    stdin, the repository importable; however it ends."""
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        input=pickle.dumps(pickled),
        capture_output=True,
        env=child_env,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )


def run_child(code: str, pickled: object, *args: str, env: dict[str, str] | None = None) -> Any:
    """``child_process``, which must succeed; the JSON it prints last."""
    done = child_process(code, pickled, *args, env=env)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


VALUES: list[Any] = [
    None,
    True,
    -(2**70),
    3.25,
    f"{PLAINTEXT_MARKER} text",
    PLAINTEXT_MARKER.encode() + bytes(range(256)),
    [1, "two", [3.0]],
    {"nested": {PLAINTEXT_MARKER: [1, 2]}, "t": (1, 2)},
    {1, 2, 3},
    dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
    decimal.Decimal("1.10"),
    uuid.UUID(int=7),
]


class HandlerSuite:
    """Subclass and override ``store``; every test here must pass on every store."""

    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("a HandlerSuite subclass provides the store fixture")

    @pytest.fixture
    def handler(self, store: Store) -> Iterator[Any]:
        """A factory: ``handler(key="main", **options)`` is a handler on root ``key``."""
        yield store.handler
        store.register_names()

    def test_round_trip_of_value_types(self, handler: Any) -> None:
        h = handler()
        tokens = [h.write(value) for value in VALUES]
        assert len(set(tokens)) == len(tokens)
        reader = handler()  # a second handler on the same root reads them too
        for token, value in zip(tokens, VALUES, strict=True):
            assert reader.read(token) == value
        with reader.open(tokens[5]) as stream:  # open() yields the serialized bytes
            assert stream.read()

    def test_exists_and_delete(self, handler: Any) -> None:
        h = handler()
        token = h.write({"value": PLAINTEXT_MARKER})
        assert h.exists(token)
        h.delete(token)
        assert not h.exists(token)
        with pytest.raises(ResultNotFound):
            h.read(token)
        with pytest.raises(ResultNotFound):
            h.open(token)
        with pytest.raises(ResultNotFound):
            h.delete(token)

    def test_tampering_is_detected(self, handler: Any, store: Store) -> None:
        h = handler()
        token = h.write(PLAINTEXT_MARKER * 100)
        (name,) = store.result_names()
        original = bytes(store.fs.cat_file(store.raw_path(name)))
        for position in (5, len(original) // 2, len(original) - 1):
            store.fs.pipe_file(store.raw_path(name), flip_byte(original, position))
            with pytest.raises(IntegrityError):
                h.read(token)
            with pytest.raises(IntegrityError), h.open(token) as stream:
                stream.read()

    def test_truncation_is_detected(self, handler: Any, store: Store) -> None:
        h = handler(segment_size=1 << 16)
        token = h.write(os.urandom(200_000))  # several segments
        (name,) = store.result_names()
        original = bytes(store.fs.cat_file(store.raw_path(name)))
        for cut in (1, 1 << 16, len(original) // 2):
            store.fs.pipe_file(store.raw_path(name), original[:-cut])
            with pytest.raises(IntegrityError):
                h.read(token)
            with pytest.raises(IntegrityError), h.open(token) as stream:
                while stream.read(1 << 16):
                    pass

    def test_list_header_and_rewrap_of_stored_objects(self, handler: Any) -> None:
        # The public primitives maintenance builds on, on every store: list the results
        # (never the keyset), read a header without the payload or a provider, and rewrite
        # only the key section, atomically, with every token still valid.
        h = handler()
        tokens = [h.write({"n": i, "marker": PLAINTEXT_MARKER}) for i in range(3)]
        big = h.write_stream(io.BytesIO(os.urandom(300_000)))
        names = sorted(h.list_objects())
        assert len(names) == 4 and "keyset" not in names
        assert sorted(h.locate_token(t)[0] for t in [*tokens, big]) == names
        before = {name: h.read_header(name) for name in names}
        assert h.read_header("keyset").stanzas
        with pytest.raises(ResultNotFound):
            h.read_header("0" * 32)
        assert not any(h.rewrap(name) for name in names)  # already current
        for provider in h.keyprovider.providers():
            provider.rotate()
        assert all(h.rewrap(name) for name in [*names, "keyset"])
        for name in names:
            after = h.read_header(name)
            assert after.stanzas != before[name].stanzas
            assert after.fixed == before[name].fixed  # same commitment: tokens still name it
        reader = handler()
        assert [reader.read(t) for t in tokens] == [
            {"n": i, "marker": PLAINTEXT_MARKER} for i in range(3)
        ]
        assert len(reader.read(big)) == 300_000

    def test_token_from_another_root_is_rejected(self, handler: Any) -> None:
        token = handler("main").write("value")
        other = handler("other")
        other.write("the other root's keyset")
        for operation in (other.read, other.exists, other.open, other.delete):
            with pytest.raises(IntegrityError):
                operation(token)

    @pytest.mark.slow
    def test_streams_64_mib_in_bounded_memory(self, handler: Any, store: Store) -> None:
        # In a child process, so that only this handler's memory is measured (moto runs in
        # the test process) and so that the handler also proves it travels pickled.
        report = run_child(STREAM_CHILD, handler(), str(STREAM_SIZE))
        summary = ", ".join(
            f"{k} {v / MiB:.1f} MiB" if "seconds" not in k else f"{k} {v:.2f}"
            for k, v in report.items()
            if k != "ok"
        )
        print(f"\n{store.handler_cls.__name__} 64 MiB stream: {summary}")
        assert report["ok"]
        if store.handler_cls.__name__ != "MemoryHandler":  # the memory store is memory
            for measure in ("write_peak", "read_peak", "write_rss", "read_rss"):
                assert report[measure] < STREAM_MEMORY_BUDGET, measure

    def test_concurrent_writers_neither_collide_nor_lose(self, handler: Any, store: Store) -> None:
        threads, per_thread = 8, 25
        results: dict[int, list[tuple[str, str]]] = {}
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads)
        before = 0
        if store.racy_server:  # see Store.racy_server: only the writes race there
            handler().write("creates the keyset")
            before = 1

        def work(index: int) -> None:
            try:
                h = handler()  # one handler each: they also race to create the keyset
                barrier.wait()
                results[index] = [
                    (h.write(f"{index}-{i}"), f"{index}-{i}") for i in range(per_thread)
                ]
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert not errors, errors
        written = [pair for pairs in results.values() for pair in pairs]
        assert len({token for token, _ in written}) == threads * per_thread
        reader = handler()
        for token, value in written:
            assert reader.read(token) == value
        assert len(store.result_names()) == before + threads * per_thread

    @pytest.mark.parametrize("size", ["small", "large"])
    def test_exclusive_create_refuses_to_overwrite(
        self, handler: Any, store: Store, size: str
    ) -> None:
        h = handler()
        h.write("connect")
        length = 1000 if size == "small" else store.large
        name = uuid.uuid4().hex
        with h.store.create(name) as sink:
            sink.write(b"A" * length)
        with pytest.raises(FileExistsError), h.store.create(name) as sink:
            sink.write(b"B" * length)
        assert h.store.get(name) == b"A" * length

    @pytest.mark.parametrize("size", ["small", "large"])
    def test_racing_creates_have_one_winner(self, handler: Any, store: Store, size: str) -> None:
        if store.racy_server:
            pytest.skip(store.racy_server)
        h = handler()
        h.write("connect")
        length = 1000 if size == "small" else store.large
        for _ in range(3):
            name = uuid.uuid4().hex
            outcomes: list[str] = []
            barrier = threading.Barrier(2)

            def race(
                fill: bytes,
                name: str = name,
                outcomes: list[str] = outcomes,
                barrier: threading.Barrier = barrier,
            ) -> None:
                try:
                    with h.store.create(name) as sink:
                        barrier.wait()
                        sink.write(fill * length)
                    outcomes.append("won")
                except FileExistsError:
                    outcomes.append("lost")

            racers = [threading.Thread(target=race, args=(c,)) for c in (b"C", b"D")]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join()
            assert sorted(outcomes) == ["lost", "won"]
            assert h.store.get(name) in (b"C" * length, b"D" * length)

    def test_failed_write_leaves_nothing_readable(self, handler: Any, store: Store) -> None:
        h = handler()
        h.write("connect")
        before = store.objects()
        with pytest.raises(OSError, match="the source broke"):
            h.write_stream(PatternSource(4 * store.large, fail_after=store.large + MiB))
        assert store.objects() == before

    def test_pickles_without_secrets_and_reconnects(self, handler: Any, store: Store) -> None:
        h = handler()
        token = h.write({"value": PLAINTEXT_MARKER})
        blob = pickle.dumps(h)
        for secret in store.secrets:
            assert secret.encode() not in blob
        assert PLAINTEXT_MARKER.encode() not in blob
        if store.keyring_path is not None:
            for entry in json.loads(store.keyring_path.read_text())["keys"].values():
                assert entry["key"].encode() not in blob
        copy = pickle.loads(blob)
        assert copy.read(token) == {"value": PLAINTEXT_MARKER}
        assert copy.read(copy.write("from the copy")) == "from the copy"

    def test_store_holds_only_random_names_and_ciphertext(self, handler: Any, store: Store) -> None:
        h = handler()
        tokens = [h.write({"task": f"{PLAINTEXT_MARKER}-{i}"}) for i in range(5)]
        h.write_stream(PatternSource(2 * MiB))
        h.delete(tokens[0])
        h.rotate_token_keys()
        h.write(PLAINTEXT_MARKER)
        assert store.base_root not in repr(h) and store.base_root not in str(h)
        objects = store.objects()
        assert len(objects) == 1 + 4 + 1 + 1  # keyset, 4 left of 5, the stream, the last
        for rel, data in objects.items():
            key, name = rel.split("/")
            assert key == "main" and is_object_name(name), "unexpected stored name"
            assert PLAINTEXT_MARKER.encode() not in data
            assert PLAINTEXT_MARKER.encode("utf-16-le") not in data
