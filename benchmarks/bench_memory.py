"""Peak memory of streaming a large result through ``write_stream`` and ``open``.

Each direction runs in a fresh interpreter: the baseline is the peak RSS after the imports,
the keyring and a first small write/read (keyset, caches), and the figure is how far the peak
rose above it while streaming ``size`` bytes. The peak is VmHWM, reset at the baseline through
/proc/self/clear_refs, because a child's ``ru_maxrss`` starts at its parent's peak on Linux;
``ru_maxrss`` is reported too, and agrees whenever the parent is smaller than the child.
Writes read 1 MiB at a time from a source that makes its bytes on the fly (it holds no
memory); the read process compares what it reads with what was written.
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
from sealed_results.handlers import LocalHandler
from sealed_results.keyproviders import LocalKeyring

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


def hwm():
    # VmHWM, this process's own peak RSS. ru_maxrss would be wrong here: across fork/vfork
    # and exec, Linux carries the parent's peak into the child's ru_maxrss, so a child of a
    # big parent (this suite, a test runner) would report the parent's peak and hide its own.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak():
    own = hwm()
    return own if own is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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


try:  # start the peak from here (Linux >= 4.0); else it includes the imports' own peak
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
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
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"baseline": baseline, "peak_above_baseline": peak() - baseline,
                  "method": "VmHWM" if hwm() is not None else "ru_maxrss",
                  "ru_maxrss_at_baseline": inherited,
                  "ru_maxrss_above_baseline": maxrss - inherited,
                  "seconds": elapsed, **extra}))
"""


def _child(args: list[str]) -> dict[str, Any]:
    # Not resolve(): the suite may be symlinked into another checkout to measure that one.
    repo = Path(os.path.abspath(__file__)).parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
    }
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=repo,
    )
    return dict(json.loads(out.stdout))


def run(
    size: int, keyring_path: Path, *, workdir: str | None, log: Callable[[str], None]
) -> dict[str, Any]:
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
        "write": {k: v for k, v in written.items() if k != "token"},
        "read": read,
    }
