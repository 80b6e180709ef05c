"""Shared pieces of the benchmark suite: sizes, the machine, interleaved timing, Markdown.

Timing on a shared, noisy machine: every case of a group runs once per round, in the same
round-robin order (baseline and contender interleaved), so a burst of load from another process
hits all of them alike. Each sample repeats the operation enough times to last ``min_time``
seconds; a case's figure is the best sample (the least disturbed one), and the median is kept
for the JSON output. Ratios are always taken between cases of the same run.
"""

from __future__ import annotations

import gc
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
_UNITS = {"": 1, "b": 1, "k": KiB, "kib": KiB, "kb": KiB, "m": MiB, "mib": MiB, "mb": MiB}
_UNITS.update({"g": GiB, "gib": GiB, "gb": GiB})


def parse_size(text: str) -> int:
    """``"64MiB"``, ``"1k"``, ``"1 GiB"``, ``"4096"`` -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 1KiB, 1MiB, 64MiB, 1GiB)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def fmt_size(n: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def machine() -> dict[str, Any]:
    """What the numbers were measured on (they mean little without it)."""
    import cryptography
    from cryptography.hazmat.backends.openssl import backend

    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    cpu = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {
        "cpu": cpu,
        "aes_ni": "aes" in flags if flags else None,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": load,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cryptography": cryptography.__version__,
        "openssl": backend.openssl_version_text(),
        "executable": sys.executable,
    }


@dataclass
class Case:
    """One operation to time. ``run()`` does it once; ``cleanup(results)`` (untimed) gets what
    the sample's runs returned, e.g. to delete written files. ``nbytes`` is the payload size
    for throughput."""

    name: str
    run: Callable[[], Any]
    nbytes: int = 0
    cleanup: Callable[[list[Any]], None] | None = None
    times: list[float] = field(default_factory=list)  # seconds per operation, one per sample

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def mib_s(self) -> float:
        return self.nbytes / MiB / self.best

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "best_s": self.best,
            "median_s": self.median,
            "samples": len(self.times),
        }
        if self.nbytes:
            out["best_mib_s"] = self.mib_s
            out["median_mib_s"] = self.nbytes / MiB / self.median
        return out


def _sample(case: Case, number: int) -> float:
    results: list[Any] = []
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            results.append(case.run())
        elapsed = time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()
    if case.cleanup is not None:
        case.cleanup(results)
    return elapsed


def measure(cases: Sequence[Case], *, rounds: int, min_time: float) -> list[Case]:
    """Time every case ``rounds`` times, round-robin (see the module docstring)."""
    numbers: dict[str, int] = {}
    for case in cases:  # calibration (also the warm-up): grow until a sample lasts min_time
        number = 1
        while True:
            elapsed = _sample(case, number)
            if elapsed >= min_time or number >= 1 << 20:
                break
            number *= max(2, min(10, int(min_time / max(elapsed, 1e-9)) + 1))
        numbers[case.name] = number
    for _ in range(rounds):
        for case in cases:
            case.times.append(_sample(case, numbers[case.name]) / numbers[case.name])
    return list(cases)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_rate(mib_s: float) -> str:
    return f"{mib_s:,.0f}" if mib_s >= 10 else f"{mib_s:.2f}"


def fs_type(path: str) -> str:
    """The filesystem type of ``path`` from /proc/mounts (longest matching mount point)."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and path.startswith(fields[1]) and len(fields[1]) > len(best):
                    best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def progress(message: str) -> None:
    """Progress goes to stderr so that ``--json`` output stays clean."""
    print(message, file=sys.stderr, flush=True)
