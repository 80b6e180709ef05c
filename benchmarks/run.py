"""Run the sealed-results benchmark suite and print one Markdown report (or JSON).

    python -m benchmarks              # full run: 1 KiB, 1 MiB, 64 MiB, 1 GiB (several minutes)
    python -m benchmarks --quick      # a short run: 1 KiB, 1 MiB, 64 MiB, fewer rounds
    python benchmarks/run.py --sizes 1KiB,16MiB --only crypto,e2e --json

Sections: ``crypto`` (blob format vs raw AES-256-GCM, aws-encryption-sdk, Tink), ``e2e``
(LocalHandler on local disk vs plain fsspec and the unavoidable work, plus the GIL and overlap
checks), ``small`` (1 KiB write+read pairs per second, provider round trips) and ``memory``
(peak RSS of streaming a large result, in subprocesses). Every ratio compares cases measured in
the same run, interleaved; see benchmarks/_common.py for the method.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _common, report
from benchmarks._common import GiB, KiB, MiB, parse_size, progress

# Not resolve(): the suite may be symlinked into another checkout to measure that one.
REPO = Path(os.path.abspath(__file__)).parent.parent
SECTIONS = ("crypto", "e2e", "small", "memory", "breakdown")
FULL_SIZES = [KiB, MiB, 64 * MiB, GiB]
QUICK_SIZES = [KiB, MiB, 64 * MiB]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks for sealed-results (method: benchmarks/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="short run (sizes up to 64 MiB)")
    parser.add_argument(
        "--sizes",
        type=lambda text: [parse_size(part) for part in text.split(",") if part.strip()],
        help="payload sizes, e.g. 1KiB,1MiB,64MiB,1GiB (default: those; --quick: up to 64MiB)",
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help="sections to run: " + ",".join(SECTIONS)
    )
    parser.add_argument("--rounds", type=int, help="samples per case (default 5; --quick 3)")
    parser.add_argument(
        "--min-time", type=float, help="seconds per sample (default 0.2; --quick 0.05)"
    )
    parser.add_argument(
        "--memory-size", type=parse_size, default=GiB, help="bytes streamed by the memory check"
    )
    parser.add_argument(
        "--writes", type=int, default=1000, help="writes for the provider round-trip count"
    )
    parser.add_argument("--dir", help="working directory for files (default: the system temp)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every section in this process (default: each in a fresh interpreter)",
    )
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if args.sizes is None:
        args.sizes = QUICK_SIZES if args.quick else FULL_SIZES
    if args.rounds is None:
        args.rounds = 3 if args.quick else 5
    if args.min_time is None:
        args.min_time = 0.05 if args.quick else 0.2
    return args


def run_section(section: str, args: argparse.Namespace) -> Any:
    """One section's results, measured in this process."""
    from benchmarks import bench_breakdown, bench_crypto, bench_e2e, bench_memory, bench_small
    from sealed_results.keyproviders import LocalKeyring
    from sealed_results.keyproviders.local import create_keyring

    timing = {"rounds": args.rounds, "min_time": args.min_time}
    with tempfile.TemporaryDirectory(prefix="sr-bench-", dir=args.dir) as tmp:
        keyring_path = create_keyring(Path(tmp) / "keys.json")
        if section == "crypto":
            keyring = LocalKeyring(keyring_path)
            return bench_crypto.run(args.sizes, keyring, **timing, log=progress)
        if section == "e2e":
            keyring = LocalKeyring(keyring_path)
            return bench_e2e.run(args.sizes, keyring, **timing, workdir=args.dir, log=progress)
        if section == "small":
            return bench_small.run(
                keyring_path, **timing, writes=args.writes, workdir=args.dir, log=progress
            )
        if section == "breakdown":
            number = max(200, int(args.min_time * 5000))  # 1,000 samples per step in a full run
            return bench_breakdown.run(keyring_path, number=number, workdir=args.dir, log=progress)
        return bench_memory.run(args.memory_size, keyring_path, workdir=args.dir, log=progress)


def _run_isolated(section: str, args: argparse.Namespace) -> Any:
    """One section in a fresh interpreter. Sections leave the process in different states
    (a heap grown by 1 GiB buffers, pages the allocator kept or returned), and on a VM the
    cost of fresh memory depends on that state: isolated, each section measures alike."""
    argv = [sys.executable, "-m", "benchmarks", "--in-process", "--json", "--only", section]
    argv += ["--sizes", ",".join(str(size) for size in args.sizes)]
    argv += ["--rounds", str(args.rounds), "--min-time", str(args.min_time)]
    argv += ["--memory-size", str(args.memory_size), "--writes", str(args.writes)]
    if args.dir:
        argv += ["--dir", args.dir]
    out = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout)[section]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import bench_crypto

    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": {**_common.machine(), **bench_crypto.versions()},
        "settings": {
            "sizes": args.sizes,
            "rounds": args.rounds,
            "min_time": args.min_time,
            "quick": args.quick,
            "isolated_sections": not args.in_process,
        },
    }
    for section in SECTIONS:
        if section in args.only:
            runner = run_section if args.in_process else _run_isolated
            results[section] = runner(section, args)
    results["seconds"] = time.perf_counter() - started
    results["targets"] = report.targets(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=False))
    else:
        print(report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
