"""End to end on local disk: ``LocalHandler`` + ``LocalKeyring`` vs plain fsspec and the
unavoidable work, and whether overlapping I/O with encryption would pay.

The value is a ``bytes`` payload; its serialized form is what msgpack makes of it.

- plain fsspec: ``fs.open(path, "wb").write(serialized)`` / ``fs.cat_file(path)``, no crypto.
- unavoidable: the same fsspec write (read) plus raw AES-256-GCM over the same bytes in 1 MiB
  chunks, one after the other (encrypt a chunk, write it; read the whole file, decrypt each
  chunk), with nothing else: no header, no key wrapping, no deserialization, no output buffer.
- overlapped: the unavoidable work split over two threads (AES in one, file I/O in the other,
  a queue of 4 chunks between them), to see what a pipelined handler could gain.
- streaming rows use ``write_stream``/``open`` against the same baselines done in 1 MiB steps;
  the source hands out 1 MiB views of one buffer, so it costs no copy in either.

Files are deleted after each sample (untimed), so the page cache, not the disk, is what
writes hit; that is where the envelope's own cost is most visible.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import fsspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks._common import Case, MiB, fs_type, measure
from sealed_results.handlers import LocalHandler
from sealed_results.handlers.base import object_name
from sealed_results.keyproviders import LocalKeyring
from sealed_results.serializers import MsgpackSerializer

CHUNK = MiB
ONE_SHOT_MAX = 256 * MiB  # write(value)/read(token) hold the value in memory: not above this
_BLOCK = 64 * MiB
_AAD = bytes(104)


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _chunks(data: bytes | memoryview, size: int, step: int = CHUNK) -> Iterator[memoryview]:
    """``size`` bytes as ``step``-sized views of ``data``, repeated as often as needed."""
    view = memoryview(data)
    done = 0
    while done < size:
        start = done % len(view)
        n = min(step, size - done, len(view) - start)
        yield view[start : start + n]
        done += n


class ViewSource:
    """A readable stream of ``size`` bytes, ``data`` repeated, whose reads are views of it: no
    copies, and full reads except where ``data`` wraps around, so the stream rows measure the
    handler, not the source."""

    def __init__(self, data: bytes, size: int) -> None:
        self._view = memoryview(data)
        self._size = size
        self._pos = 0

    def read(self, n: int = -1) -> memoryview:
        start = self._pos % len(self._view)
        left = self._size - self._pos
        n = left if n < 0 else min(n, left)
        n = min(n, len(self._view) - start)
        self._pos += n
        return self._view[start : start + n]


# -- the baselines ---------------------------------------------------------------------------
def plain_write(fs: Any, path: str, parts: Iterator[memoryview] | list[bytes]) -> None:
    with fs.open(path, "wb") as f:
        for part in parts:
            f.write(part)


def aes_write(fs: Any, path: str, key: bytes, size: int, chunks: Iterator[memoryview]) -> None:
    aead = AESGCM(key)
    count = size // CHUNK + 1
    with fs.open(path, "wb") as f:
        index = 0
        for index, chunk in enumerate(chunks):
            f.write(aead.encrypt(_nonce(index, index == count - 1), chunk, _AAD))
        if size % CHUNK == 0:
            f.write(aead.encrypt(_nonce(count - 1, True), b"", _AAD))


def aes_write_overlapped(
    fs: Any, path: str, key: bytes, size: int, chunks: Iterator[memoryview]
) -> None:
    aead = AESGCM(key)
    count = size // CHUNK + 1
    pipe: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    with fs.open(path, "wb") as f:

        def drain() -> None:
            while (item := pipe.get()) is not None:
                f.write(item)

        writer = threading.Thread(target=drain)
        writer.start()
        try:
            for index, chunk in enumerate(chunks):
                pipe.put(aead.encrypt(_nonce(index, index == count - 1), chunk, _AAD))
            if size % CHUNK == 0:
                pipe.put(aead.encrypt(_nonce(count - 1, True), b"", _AAD))
        finally:
            pipe.put(None)
            writer.join()


def aes_read_whole(fs: Any, path: str, key: bytes) -> None:
    data = memoryview(fs.cat_file(path))
    aead, step = AESGCM(key), CHUNK + 16
    count = len(data) // step + 1
    for index in range(count):
        aead.decrypt(
            _nonce(index, index == count - 1), data[index * step : index * step + step], _AAD
        )


def aes_read_stream(fs: Any, path: str, key: bytes, overlapped: bool = False) -> None:
    aead, step = AESGCM(key), CHUNK + 16
    with fs.open(path, "rb") as f:
        if overlapped:
            pipe: queue.Queue[bytes] = queue.Queue(maxsize=4)

            def fill() -> None:
                while True:
                    chunk = f.read(step)
                    pipe.put(chunk)
                    if len(chunk) < step:
                        return

            reader = threading.Thread(target=fill)
            reader.start()
            source: Callable[[], bytes] = pipe.get
        else:
            source = lambda: f.read(step)  # noqa: E731
        index = 0
        while True:
            chunk = source()
            final = len(chunk) < step
            aead.decrypt(_nonce(index, final), chunk, _AAD)
            index += 1
            if final:
                break
        if overlapped:
            reader.join()


def plain_read_stream(fs: Any, path: str) -> None:
    with fs.open(path, "rb") as f:
        while f.read(CHUNK):
            pass


# -- one size --------------------------------------------------------------------------------
def _remover(paths: Callable[[list[Any]], list[str]]) -> Callable[[list[Any]], None]:
    def cleanup(results: list[Any]) -> None:
        for path in paths(results):
            os.unlink(path)

    return cleanup


def run_size(
    size: int, workdir: str, keyring: LocalKeyring, *, rounds: int, min_time: float
) -> dict[str, Any]:
    fs = fsspec.filesystem("file", skip_instance_cache=True)
    root = os.path.join(workdir, "sealed")
    handler = LocalHandler(root, keyring)
    handler.write(0)  # the keyset, before timing
    key = os.urandom(32)
    block = os.urandom(min(size, _BLOCK))
    one_shot = size <= ONE_SHOT_MAX
    counter = iter(range(1 << 62))

    def fresh(kind: str) -> str:
        return os.path.join(workdir, f"{kind}-{next(counter)}")

    def handler_files(tokens: list[str]) -> list[str]:
        return [os.path.join(root, object_name(handler._locate(t)[0])) for t in tokens]

    files = _remover(lambda paths: paths)

    def timed_write(fn: Callable[[str], None], kind: str) -> Callable[[], str]:
        def run() -> str:
            path = fresh(kind)
            fn(path)
            return path

        return run

    out: dict[str, Any] = {}
    groups: dict[str, list[Case]] = {}

    if one_shot:
        value = block if size <= _BLOCK else block * (size // _BLOCK) + block[: size % _BLOCK]
        serialized = MsgpackSerializer().dumps(value)
        groups["write"] = [
            Case(
                "sealed write(value)", lambda: handler.write(value), size, _remover(handler_files)
            ),
            Case(
                "plain fsspec write",
                timed_write(lambda p: plain_write(fs, p, [serialized]), "plain"),
                size,
                files,
            ),
            Case(
                "unavoidable: fsspec write + AES-GCM",
                timed_write(
                    lambda p: aes_write(
                        fs, p, key, len(serialized), _chunks(serialized, len(serialized))
                    ),
                    "aes",
                ),
                size,
                files,
            ),
            Case(
                "overlapped: AES ‖ fsspec write",
                timed_write(
                    lambda p: aes_write_overlapped(
                        fs, p, key, len(serialized), _chunks(serialized, len(serialized))
                    ),
                    "ovl",
                ),
                size,
                files,
            ),
        ]
        token = handler.write(value)
        plain_path, aes_path = fresh("rplain"), fresh("raes")
        plain_write(fs, plain_path, [serialized])
        aes_write(fs, aes_path, key, len(serialized), _chunks(serialized, len(serialized)))
        groups["read"] = [
            Case("sealed read(token)", lambda: handler.read(token), size),
            Case("plain fsspec read", lambda: fs.cat_file(plain_path), size),
            Case(
                "unavoidable: fsspec read + AES-GCM",
                lambda: aes_read_whole(fs, aes_path, key),
                size,
            ),
        ]

    groups["write_stream"] = [
        Case(
            "sealed write_stream(file)",
            lambda: handler.write_stream(ViewSource(block, size)),
            size,
            _remover(handler_files),
        ),
        Case(
            "plain fsspec write",
            timed_write(lambda p: plain_write(fs, p, _chunks(block, size)), "splain"),
            size,
            files,
        ),
        Case(
            "unavoidable: fsspec write + AES-GCM",
            timed_write(lambda p: aes_write(fs, p, key, size, _chunks(block, size)), "saes"),
            size,
            files,
        ),
        Case(
            "overlapped: AES ‖ fsspec write",
            timed_write(
                lambda p: aes_write_overlapped(fs, p, key, size, _chunks(block, size)), "sovl"
            ),
            size,
            files,
        ),
    ]
    stream_token = handler.write_stream(ViewSource(block, size))
    splain, saes = fresh("rsplain"), fresh("rsaes")
    plain_write(fs, splain, _chunks(block, size))
    aes_write(fs, saes, key, size, _chunks(block, size))
    buffer = bytearray(CHUNK)

    def sealed_open() -> None:
        with handler.open(stream_token) as stream:
            while stream.readinto(buffer):
                pass

    groups["open"] = [
        Case("sealed open(token), 1 MiB reads", sealed_open, size),
        Case("plain fsspec read, 1 MiB reads", lambda: plain_read_stream(fs, splain), size),
        Case("unavoidable: fsspec read + AES-GCM", lambda: aes_read_stream(fs, saes, key), size),
        Case("overlapped: fsspec read ‖ AES", lambda: aes_read_stream(fs, saes, key, True), size),
    ]
    for name, cases in groups.items():
        measure(cases, rounds=rounds, min_time=min_time)
        sealed, plain, unavoidable = cases[0], cases[1], cases[2]
        out[name] = {
            case.name: {
                **case.summary(),
                "vs_plain": case.best / plain.best,
                "vs_unavoidable": case.best / unavoidable.best,
            }
            for case in cases
        }
        out[name]["_sealed"] = sealed.name
    handler.delete(stream_token)
    return out


def gil_check(*, size: int, rounds: int, min_time: float) -> dict[str, Any]:
    """Does AESGCM release the GIL? ``size`` bytes of AES in one thread vs half in each of
    two threads: about twice as fast if it does (2 cores), no faster if it does not."""
    key, data = os.urandom(32), os.urandom(size)

    def work(view: memoryview) -> None:
        aead = AESGCM(key)
        for i, chunk in enumerate(_chunks(view, len(view))):
            aead.encrypt(_nonce(i, False), chunk, None)

    def one() -> None:
        work(memoryview(data))

    def two() -> None:
        halves = [memoryview(data)[: size // 2], memoryview(data)[size // 2 :]]
        threads = [threading.Thread(target=work, args=(h,)) for h in halves]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    cases = measure(
        [Case("1 thread", one, len(data)), Case("2 threads", two, len(data))],
        rounds=rounds,
        min_time=min_time,
    )
    speedup = cases[0].best / cases[1].best
    return {
        "one_thread_mib_s": cases[0].mib_s,
        "two_threads_mib_s": cases[1].mib_s,
        "speedup": speedup,
        "releases_gil": speedup > 1.3,
    }


def run(
    sizes: list[int],
    keyring: LocalKeyring,
    *,
    rounds: int,
    min_time: float,
    workdir: str | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    results: dict[str, Any] = {"chunk": CHUNK, "sizes": {}}
    base = tempfile.mkdtemp(prefix="sr-bench-e2e-", dir=workdir)
    try:
        results["workdir_fs"] = fs_type(base)
        for size in sizes:
            log(f"end to end: {size} bytes")
            started = time.perf_counter()
            sub = tempfile.mkdtemp(dir=base)
            results["sizes"][str(size)] = run_size(
                size, sub, keyring, rounds=rounds, min_time=min_time
            )
            shutil.rmtree(sub, ignore_errors=True)
            log(f"  {time.perf_counter() - started:.1f} s")
        log("GIL check")
        gil_size = min(max(4 * MiB, *sizes), 64 * MiB)
        results["gil"] = {
            "size": gil_size,
            **gil_check(size=gil_size, rounds=rounds, min_time=min_time),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results
