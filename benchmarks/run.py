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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common, report  # noqa: E402
from benchmarks._common import GiB, KiB, MiB, parse_size, progress  # noqa: E402

SECTIONS = ("crypto", "e2e", "small", "memory")
FULL_SIZES = [KiB, MiB, 64 * MiB, GiB]
QUICK_SIZES = [KiB, MiB, 64 * MiB]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks for sealed-results (see benchmarks/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="short run (sizes up to 64 MiB)")
    parser.add_argument(
        "--sizes",
        type=lambda text: [parse_size(part) for part in text.split(",") if part.strip()],
        help="payload sizes, e.g. 1KiB,1MiB,64MiB,1GiB (default: those; --quick: up to 64MiB)",
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections to run: " + ",".join(SECTIONS))
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import bench_crypto, bench_e2e, bench_memory, bench_small
    from sealed_results.keyproviders.local import LocalKeyring, create_keyring

    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": {**_common.machine(), **bench_crypto.versions()},
        "settings": {
            "sizes": args.sizes,
            "rounds": args.rounds,
            "min_time": args.min_time,
            "quick": args.quick,
        },
    }
    with tempfile.TemporaryDirectory(prefix="sr-bench-", dir=args.dir) as tmp:
        keyring_path = create_keyring(Path(tmp) / "keys.json")
        keyring = LocalKeyring(keyring_path)
        timing = {"rounds": args.rounds, "min_time": args.min_time}
        if "crypto" in args.only:
            results["crypto"] = bench_crypto.run(args.sizes, keyring, **timing, log=progress)
        if "e2e" in args.only:
            results["e2e"] = bench_e2e.run(
                args.sizes, keyring, **timing, workdir=args.dir, log=progress
            )
        if "small" in args.only:
            results["small"] = bench_small.run(
                keyring_path, **timing, writes=args.writes, workdir=args.dir, log=progress
            )
        if "memory" in args.only:
            results["memory"] = bench_memory.run(
                args.memory_size, keyring_path, workdir=args.dir, log=progress
            )
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
