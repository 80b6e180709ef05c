"""The benchmark suite still runs end to end (tiny sizes, one sample): it must never rot.

Nothing here looks at a timing; only that every section runs, reports and renders.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import report
from benchmarks.run import parse_args, run

REPO = Path(__file__).resolve().parent.parent


def test_every_section_runs_and_renders(tmp_path: Path) -> None:
    args = parse_args(
        ["--sizes", "1KiB,70KiB", "--rounds", "1", "--min-time", "0", "--memory-size", "1MiB",
         "--writes", "3", "--dir", str(tmp_path)]
    )  # fmt: skip
    results = run(args)

    assert set(results) >= {"machine", "crypto", "e2e", "small", "memory", "targets"}
    for size in ("1024", str(70 << 10)):
        crypto = results["crypto"]["sizes"][size]
        assert {"encrypt", "decrypt"} <= set(crypto)
        assert any(name.startswith("blob") for name in crypto["encrypt"])
        assert {"write", "read", "write_stream", "open"} <= set(results["e2e"]["sizes"][size])
    assert results["e2e"]["gil"]["one_thread_mib_s"] > 0
    assert results["small"]["pairs"]["disk"]
    assert results["memory"]["read"]["ok"]
    trips = results["small"]["roundtrips"]
    assert "missing" in trips or set(trips) == {"on", "off"}

    text = report.markdown(results)
    assert "| raw AES-256-GCM" in text and "### Targets" in text
    json.loads(json.dumps(results))  # --json output is plain JSON
    assert not list(tmp_path.iterdir())  # every temporary file and directory was removed


def test_script_entry_point_parses_options() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert "--quick" in out.stdout and "--sizes" in out.stdout and "--json" in out.stdout
