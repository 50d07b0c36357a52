"""The benchmark entry point runs end to end (quick, case A, a tiny model) and writes what the
lead's full run will; the GPU check answers (and exits 0) on a machine without a GPU. Numbers
are not asserted here: benchmarks are not timed tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TinyAcoustic

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("tiny_acoustic", [3], indirect=True, ids=["3d"])
def test_quick_case_a_writes_the_json(tiny_acoustic: TinyAcoustic, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _run(
        [
            "-m", "benchmarks", "run", "--quick", "--cases", "A", "--max-reps", "10",
            "--json", str(out),
            "--model-dir", str(tiny_acoustic.models), "--model", tiny_acoustic.name,
            "--geo-dir", str(tmp_path / "no-geometry-models"),
        ]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    machine = doc["machine"]
    assert machine["cores"] >= 1 and machine["cpu_model"]
    assert "onnxruntime" in machine["versions"]
    assert doc["service"]["provider"] == "CPUExecutionProvider"
    assert doc["model"]["name"] == tiny_acoustic.name
    assert list(doc["cases"]) == ["A"]
    modes = doc["cases"]["A"]["modes"]
    for key in ("http_json_miss", "http_json_partial", "http_binary_miss", "http_floor",
                "raw_ort", "raw_ort_cached_basis"):  # fmt: skip
        row = modes[key]
        assert row["n"] >= 3 and 0 < row["p50_ms"] <= row["p99_ms"], (key, row)
    # Every timed answer said what the case meant it to be, and matches onnxruntime by hand.
    for key, state in (("http_json_miss", "miss"), ("http_json_partial", "partial")):
        assert modes[key]["cache"] == {state: modes[key]["n"]}
        assert modes[key]["max_rel_err_vs_raw"] < 1e-4
    targets = {t["id"]: t for t in doc["targets"]}
    assert targets["A.p50"]["status"] in ("pass", "fail")
    miss_p50 = modes["http_json_miss"]["p50_ms"]
    assert targets["A.vs_raw"]["value"] == pytest.approx(miss_p50, abs=1e-3)
    assert targets["B.binary_vs_raw"]["status"] == "skipped"
    assert "A.p50" in done.stdout and "http" in done.stdout.lower()


def test_gpu_check_exits_zero_here() -> None:
    done = _run(["-m", "benchmarks.gpu_check", "--quick"])
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert isinstance(doc["gpu"], bool)
    if not doc["gpu"]:
        assert doc["reason"]
