"""The benchmark entry point runs end to end (quick, case A, a tiny model; case G with the tiny
elasticity model beside it) and writes what the lead's full run will; the GPU check answers (and
exits 0) on a machine without a GPU. Numbers are not asserted here: benchmarks are not timed
tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TinyAcoustic, TinyGeometry

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


def test_elasticity_workload_asks_new_voids_at_the_mesh_vertices(
    tiny_elasticity: TinyGeometry,
) -> None:
    from benchmarks.workloads import ElasticityWorkload, load_manifest
    from geometry.polylines import signed_distance
    from training.elasticity.dataset import SPLITS, sample_case

    version_dir = tiny_elasticity.version_dir
    w = ElasticityWorkload(version_dir, load_manifest(version_dir))
    voids = w.voids(3)
    dataset = [sample_case(w.cfg, s, i)[0] for s in SPLITS for i in range(w.cfg.count(s))]
    assert not any(np.allclose(v, d) for v in voids for d in dataset)
    assert not np.allclose(voids[0], voids[1])
    lo, hi = w.manifest["domain"]["conditions"][0]["range"]
    assert lo <= w.load <= hi
    vertices = w.mesh_vertices(voids[0])
    query = w.query(voids[0])
    assert 0.95 * len(vertices) <= len(query) <= len(vertices)
    assert (signed_distance(query, w.polylines(voids[0])) >= 0).all()
    body = w.request(voids[0], query)
    assert body["conditions"] == {"load": w.load} and len(body["geometry"]["curves"]) == 1


@pytest.mark.parametrize("tiny_acoustic", [3], indirect=True, ids=["3d"])
def test_quick_case_g_times_the_fem_against_the_elasticity_model(
    tiny_acoustic: TinyAcoustic, tiny_elasticity: TinyGeometry, tmp_path: Path
) -> None:
    """Case G finds the elasticity model by its task (geometry-fields) beside the acoustic one,
    times the FEM, HTTP and raw onnxruntime on new voids, and scores the 20 x target."""
    models = tmp_path / "models"
    models.mkdir()
    for t in (tiny_acoustic, tiny_elasticity):
        (models / t.name).symlink_to(t.models / t.name, target_is_directory=True)
    out = tmp_path / "bench.json"
    done = _run(
        [
            "-m", "benchmarks", "run", "--quick", "--cases", "G", "--max-reps", "3",
            "--json", str(out), "--model-dir", str(models), "--model", tiny_acoustic.name,
            "--geo-dir", str(tmp_path / "no-geometry-models"),
        ],
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    case = doc["cases"]["G"]
    assert "error" not in case and "elasticity_error" not in case, case.get("notes")
    assert case["elasticity_model"]["name"] == tiny_elasticity.name
    modes = case["modes"]
    for key in ("fem_elasticity", "elasticity/raw_new_geometry", "elasticity/http_new_geometry"):
        row = modes[key]
        assert row["n"] >= 3 and 0 < row["p50_ms"] <= row["p99_ms"], (key, row)
    http_row = modes["elasticity/http_new_geometry"]
    assert http_row["cache"] == {"miss": http_row["n"]} and http_row["cache_ok"]
    assert http_row["max_rel_err_vs_raw"] < 1e-4  # the service answers what the graphs do
    fem = modes["fem_elasticity"]
    assert fem["vertices"] > 0 and 0 < fem["points_compared"] <= fem["vertices"]
    assert fem["speedup_vs_http"] == pytest.approx(fem["p50_ms"] / http_row["p50_ms"], rel=1e-2)
    assert fem["speedup_vs_raw"] > 0
    assert set(fem["surrogate_rel_l2_vs_solver"]) == {"von_mises", "ux", "uy"}
    assert all(np.isfinite(v) for v in fem["surrogate_rel_l2_vs_solver"].values())
    target = {t["id"]: t for t in doc["targets"]}["G.elasticity_speedup_http"]
    assert target["status"] in ("pass", "fail") and target["limit"] == 20.0
    assert target["value"] == pytest.approx(fem["speedup_vs_http"], abs=1e-3)
    assert "G.elasticity_speedup_http" in done.stdout


def test_gpu_check_exits_zero_here() -> None:
    done = _run(["-m", "benchmarks.gpu_check", "--quick"])
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert isinstance(doc["gpu"], bool)
    if not doc["gpu"]:
        assert doc["reason"]
