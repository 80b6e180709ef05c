"""The benchmark suite still runs end to end (tiny sizes, one sample): it must never rot.

Nothing here looks at a timing; only that every section runs, reports and renders.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import report
from benchmarks.bench_crypto import RAW_ONE_SHOT
from benchmarks.run import parse_args, run

REPO = Path(__file__).resolve().parent.parent


def test_every_section_runs_and_renders(tmp_path: Path) -> None:
    args = parse_args(
        ["--sizes", "1KiB,70KiB", "--rounds", "1", "--min-time", "0", "--memory-size", "1MiB",
         "--writes", "3", "--dir", str(tmp_path)]
    )  # fmt: skip
    results = run(args)

    assert set(results) >= {"machine", "crypto", "e2e", "small", "memory", "breakdown", "targets"}
    for size in ("1024", str(70 << 10)):
        crypto = results["crypto"]["sizes"][size]
        assert {"encrypt", "decrypt"} <= set(crypto)
        assert any(name.startswith("blob") for name in crypto["encrypt"])
        for direction, whole in (("encrypt", "seal_blob"), ("decrypt", "open_blob")):
            rows = crypto[direction]
            assert list(rows)[2] == RAW_ONE_SHOT  # right after the new-bytes-per-chunk row
            assert rows[f"blob {whole} (bytes out)"]["ratio_to_raw_one_shot"] > 0
            assert "ratio_to_raw" in rows[f"blob {whole} (bytes out)"]
        assert {"write", "read", "write_stream", "open"} <= set(results["e2e"]["sizes"][size])
    assert results["e2e"]["gil"]["one_thread_mib_s"] > 0
    assert results["small"]["pairs"]["disk"]
    assert results["memory"]["read"]["ok"]
    blob_steps = results["breakdown"]["blob"]["rows"]
    assert all(row["warm_us"] > 0 and row["cold_us"] > 0 for row in blob_steps.values())
    pair = results["breakdown"]["pair"]["disk"]
    assert pair["pair_us"] > 0 and pair["plain_us"] > 0
    assert pair["sum_us"] == sum(pair["rows"].values())
    trips = results["small"]["roundtrips"]
    assert "missing" in trips or set(trips) == {"on", "off"}

    text = report.markdown(results)
    assert "| raw AES-256-GCM" in text and "### Targets" in text
    assert f"| {RAW_ONE_SHOT} |" in text and "cost over plain files" in text
    assert "### Where the time goes" in text and "| measured write+read pair |" in text
    old = json.loads(json.dumps(results))  # JSON from before the one-shot row still renders
    for entry in old["crypto"]["sizes"].values():
        for rows in (entry["encrypt"], entry["decrypt"]):
            rows.pop(RAW_ONE_SHOT)
            for row in rows.values():
                row.pop("ratio_to_raw_one_shot")
    assert RAW_ONE_SHOT not in report.markdown(old)
    json.loads(json.dumps(results))  # --json output is plain JSON
    assert not list(tmp_path.iterdir())  # every temporary file and directory was removed


def test_bytes_out_targets_use_the_one_shot_row() -> None:
    def row(best_s: float, one_shot: float | None) -> dict[str, float]:
        out = {"best_s": best_s, "ratio_to_raw": 0.2 / best_s}
        if one_shot is not None:
            out["ratio_to_raw_one_shot"] = one_shot / best_s
        return out

    def targets(one_shot: float | None) -> dict[str, dict[str, object]]:
        rows = {
            "blob BlobWriter (stream)": row(0.22, one_shot),
            "blob seal_blob (bytes out)": row(1.0, one_shot),
        }
        entry = {"encrypt": rows, "decrypt": {}}
        found = report.targets({"crypto": {"sizes": {str(1 << 20): entry}}})
        return {t["target"]: t for t in found}

    new = targets(0.9)
    seal = new["encrypt 1 MiB: blob seal_blob (bytes out) >= 80% of raw AES-GCM one shot "
               "(same bytes-out shape)"]  # fmt: skip
    assert seal["met"] and seal["value"] == "90% (20% of the *_into limit)"
    assert new["encrypt 1 MiB: blob BlobWriter (stream) >= 80% of raw AES-GCM"]["met"]
    old = targets(None)  # JSON from before the one-shot row: the old target
    assert not old["encrypt 1 MiB: blob seal_blob (bytes out) >= 80% of raw AES-GCM"]["met"]


def test_script_entry_point_parses_options() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert "--quick" in out.stdout and "--sizes" in out.stdout and "--json" in out.stdout
