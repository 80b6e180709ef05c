"""A 1 GiB result streams in and out with bounded memory (measured in a fresh process).

This checks a property (peak memory), not speed: the budget is 64 MiB above the interpreter's
baseline, the figure the foundation issue promises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import io, json, os, sys, hashlib
from sealed_results.handlers import LocalHandler
from sealed_results.keyproviders.local import LocalKeyring, create_keyring

root, size = sys.argv[1], int(sys.argv[2])
keyring = LocalKeyring(create_keyring(os.path.join(root, "k.json")))
handler = LocalHandler(os.path.join(root, "r"), keyring)
handler.write(0)  # keyset and imports, before the baseline

class Source(io.RawIOBase):
    # Deterministic bytes made on the fly, so the source itself holds no memory.
    def __init__(self, n):
        self.left, self.block, self.digest = n, os.urandom(1 << 20), hashlib.sha256()
    def readable(self):
        return True
    def readinto(self, buf):
        n = min(len(buf), self.left, len(self.block))
        buf[:n] = self.block[:n]
        self.digest.update(self.block[:n])
        self.left -= n
        return n

def peak():
    # VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts at its parent's (pytest's) peak,
    # so it would hide growth. Writing 5 to clear_refs resets the high-water mark.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")

def reset_peak():
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")

reset_peak()
baseline = peak()
source = Source(size)
token = handler.write_stream(io.BufferedReader(source, 1 << 20))
after_write = peak()
reset_peak()
baseline_read = peak()
digest = hashlib.sha256()
total = 0
with handler.open(token) as stream:
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
        total += len(chunk)
after_read = peak()
ok = digest.digest() == source.digest.digest() and total == size
print(json.dumps({"write": after_write - baseline, "read": after_read - baseline_read, "ok": ok}))
"""


@pytest.mark.slow
def test_one_gib_streams_with_bounded_memory(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(1 << 30)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    result = json.loads(out.stdout)
    assert result["ok"]
    assert result["write"] < 64 << 20, result
    assert result["read"] < 64 << 20, result
