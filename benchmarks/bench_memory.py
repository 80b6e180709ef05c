"""Peak memory of streaming a large result through ``write_stream`` and ``open``.

Each direction runs in a fresh interpreter: the baseline is ``ru_maxrss`` after the imports,
the keyring and a first small write/read (keyset, caches), and the figure is how far the peak
rose above it while streaming ``size`` bytes (1 MiB reads from a source that makes its bytes
on the fly, so the source holds no memory). The read process also compares what it reads
with what was written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CHILD = r"""
import io, json, os, resource, sys, time
from sealed_results.handlers.local import LocalHandler
from sealed_results.keyproviders.local import LocalKeyring

mode, root, keyring_path, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
handler = LocalHandler(root, LocalKeyring(keyring_path))
handler.read(handler.write(b"warm up"))  # keyset, imports, first allocations
block_path = sys.argv[5]
if mode == "write":
    block = os.urandom(1 << 20)
    with open(block_path, "wb") as f:
        f.write(block)
else:
    with open(block_path, "rb") as f:
        block = f.read()


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class Source(io.RawIOBase):
    # The payload is ``block`` repeated: byte p is block[p % len(block)].
    def __init__(self, n):
        self.pos, self.size = 0, n
    def readable(self):
        return True
    def readinto(self, buf):
        start = self.pos % len(block)
        n = min(len(buf), self.size - self.pos, len(block) - start)
        buf[:n] = block[start : start + n]
        self.pos += n
        return n


baseline = peak()
started = time.perf_counter()
if mode == "write":
    token = handler.write_stream(io.BufferedReader(Source(size), 1 << 20))
    extra = {"token": token}
else:
    expected, total, ok = io.BufferedReader(Source(size), 1 << 20), 0, True
    with handler.open(sys.argv[6]) as stream:
        while chunk := stream.read(1 << 20):
            ok = ok and chunk == expected.read(len(chunk))
            total += len(chunk)
    extra = {"ok": ok and total == size}
elapsed = time.perf_counter() - started
print(json.dumps({"baseline": baseline, "peak_above_baseline": peak() - baseline,
                  "seconds": elapsed, **extra}))
"""


def _child(args: list[str]) -> dict[str, Any]:
    # Not resolve(): the suite may be symlinked into another checkout to measure that one.
    repo = Path(os.path.abspath(__file__)).parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=True, env=env,
        cwd=repo
    )
    return dict(json.loads(out.stdout))


def run(size: int, keyring_path: Path, *, workdir: str | None, log: Callable[[str], None]) -> dict[str, Any]:
    base = tempfile.mkdtemp(prefix="sr-bench-mem-", dir=workdir)
    try:
        root = os.path.join(base, "results")
        log(f"memory: write_stream of {size} bytes in a subprocess")
        block = os.path.join(base, "block")
        written = _child(["write", root, str(keyring_path), str(size), block])
        log(f"memory: open() of {size} bytes in a subprocess")
        read = _child(["read", root, str(keyring_path), str(size), block, written["token"]])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {
        "size": size,
        "write": {k: written[k] for k in ("baseline", "peak_above_baseline", "seconds")},
        "read": {k: read[k] for k in ("baseline", "peak_above_baseline", "seconds", "ok")},
    }
