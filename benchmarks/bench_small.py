"""Small results: write+read pairs per second, and key-provider round trips per 1,000 writes.

A pair is ``token = handler.write(value)`` then ``handler.read(token)`` on a ``LocalHandler``
with a ``LocalKeyring`` on local disk (the blob is a new file each time, as in real use). Two
1 KiB values: a ``dict`` (an id, a name, 100 floats, tags: 944 bytes of msgpack) and 1 KiB of
``bytes``. Baseline in the same rounds: the same value serialized and written to (and read
from) a new file with plain ``open()``, no crypto: what any storage of small results costs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import Case, fs_type, measure
from sealed_results.handlers import LocalHandler
from sealed_results.keyproviders import KeyMaterials, KeyProvider, LocalKeyring
from sealed_results.serializers import MsgpackSerializer

DICT_VALUE = {
    "id": 12345,
    "name": "result-name",
    "values": [i * 0.5 for i in range(100)],
    "tags": ["a", "b"],
}


def _caching(inner: KeyProvider) -> KeyMaterials | None:
    try:
        from sealed_results.keyproviders import CachingKeyProvider
    except ImportError:
        return None
    return CachingKeyProvider(inner)


def pairs(keyring_path: Path, workdir: str, *, rounds: int, min_time: float) -> dict[str, Any]:
    serializer = MsgpackSerializer()
    values = {"dict (944 B msgpack)": DICT_VALUE, "bytes (1 KiB)": os.urandom(1024)}
    keyring = LocalKeyring(keyring_path)
    handlers = {"local keyring": LocalHandler(os.path.join(workdir, "plain"), keyring)}
    cached = _caching(LocalKeyring(keyring_path))
    if cached is not None:
        handlers["local keyring + CachingKeyProvider"] = LocalHandler(
            os.path.join(workdir, "cached"), cached
        )
    # fsync of every result file and its directory: what durable=True costs per pair.
    handlers["local keyring, durable=True"] = LocalHandler(
        os.path.join(workdir, "durable"), keyring, durable=True
    )
    for handler in handlers.values():
        handler.write(0)  # keyset
    plain_dir = os.path.join(workdir, "unencrypted")
    os.makedirs(plain_dir)
    counter = iter(range(1 << 62))

    def pair(handler: LocalHandler, value: Any) -> Callable[[], str]:
        def run() -> str:
            token = handler.write(value)
            handler.read(token)
            return token

        return run

    def unencrypted(value: Any) -> Callable[[], str]:
        def run() -> str:
            path = os.path.join(plain_dir, str(next(counter)))
            with open(path, "xb") as f:
                f.write(serializer.dumps(value))
            with open(path, "rb") as f:
                serializer.loads(f.read())
            return path

        return run

    def delete(handler: LocalHandler) -> Callable[[list[str]], None]:
        return lambda tokens: [handler.delete(t) for t in tokens]  # type: ignore[func-returns-value]

    out: dict[str, Any] = {}
    for label, value in values.items():
        cases = [Case(f"{name}", pair(h, value), cleanup=delete(h)) for name, h in handlers.items()]
        cases.append(
            Case(
                "plain files, no crypto",
                unencrypted(value),
                cleanup=lambda ps: [os.unlink(p) for p in ps],
            )  # type: ignore[func-returns-value]
        )
        measure(cases, rounds=rounds, min_time=min_time)
        out[label] = {
            case.name: {
                **case.summary(),
                "pairs_per_s": 1 / case.best,
                "median_pairs_per_s": 1 / case.median,
            }
            for case in cases
        }
    return out


def roundtrips(keyring_path: Path, writes: int) -> dict[str, Any]:
    """Provider calls for ``writes`` writes and reading them back (fresh reader), cache off/on,
    counted by ``benchmarks/bench_provider_roundtrips.py`` (local keyring only here)."""
    try:
        from benchmarks.bench_provider_roundtrips import measure as count
    except ImportError as exc:
        return {"missing": f"benchmarks/bench_provider_roundtrips.py unavailable ({exc})"}
    rows = {}
    for cache in (False, True):
        _, _, write_calls, read_calls, write_s, read_s = count(
            "local keyring", lambda: [LocalKeyring(keyring_path)], cache, writes
        )
        rows["on" if cache else "off"] = {
            "writes": writes,
            "write_round_trips": write_calls,
            "read_round_trips": read_calls,
            "write_s": float(write_s),
            "read_s": float(read_s),
        }
    return rows


TMPFS = "/dev/shm"


def run(
    keyring_path: Path,
    *,
    rounds: int,
    min_time: float,
    writes: int,
    workdir: str | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Pairs per second on the working directory's filesystem and, for comparison, on tmpfs
    (where file creation costs next to nothing: what is left is this library's CPU time)."""
    places = {"disk": workdir}
    if os.path.isdir(TMPFS) and os.access(TMPFS, os.W_OK):
        places["tmpfs"] = TMPFS
    result: dict[str, Any] = {"pairs": {}}
    for place, directory in places.items():
        base = tempfile.mkdtemp(prefix="sr-bench-small-", dir=directory)
        try:
            log(f"small results: pairs per second ({place})")
            result["pairs"][place] = pairs(keyring_path, base, rounds=rounds, min_time=min_time)
            result.setdefault("fs", {})[place] = fs_type(base)
        finally:
            shutil.rmtree(base, ignore_errors=True)
    log(f"small results: provider round trips for {writes} writes")
    result["roundtrips"] = roundtrips(keyring_path, writes)
    return result
