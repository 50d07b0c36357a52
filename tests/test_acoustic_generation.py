"""Acoustic data at scale: sharded generation under torchrun, the data's own error, and the
one-command pipeline, on tiny scenes (every stage the real one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml
from conftest import tiny_acoustic_config
from fastapi.testclient import TestClient

from app.errors import InvalidInputError, ManifestError
from app.families.acoustic_domain import AcousticDomain
from app.main import create_app
from app.repository import load_version
from app.runtime import Runtime
from app.settings import Settings
from training.acoustics import dataset as ds
from training.acoustics.evaluate import evaluate_model_dir
from training.cli import main
from training.common.config import from_dict

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, dim: int) -> Path:
    path = tmp_path / f"tiny-{dim}d.yaml"
    path.write_text(yaml.safe_dump(tiny_acoustic_config(dim)))
    return path


def _arrays(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        out = {name: f[name][...] for name in ("sources", "receivers", "times", "pressure")}
        out["data_error_per_source"] = f.attrs["data_error_per_source"]
        return out


def test_two_ranks_write_the_data_of_one_process(tmp_path: Path) -> None:
    config = _config(tmp_path, 2)
    common = ["generate", "acoustics", "--config", str(config), "--splits", "train", "val"]
    assert main(["--threads", "1", *common, "--out", str(tmp_path / "one")]) == 0

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "training", "--threads", "1", *common, "--out", str(tmp_path / "two")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # Rank 0 speaks for the run: one line per split.
    assert done.stdout.count("train: ") == 1 and done.stdout.count("val: ") == 1

    for split in ("train", "val"):
        one = _arrays(ds.split_path(tmp_path / "one", split))
        two = _arrays(ds.split_path(tmp_path / "two", split))
        assert one["pressure"].shape[0] >= 2  # both ranks had sources to solve
        for key, value in one.items():
            np.testing.assert_array_equal(two[key], value, err_msg=f"{split}/{key}")
    # Only the finished splits are left: no shard, no partial file.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["train.h5", "val.h5"]


def test_a_finished_shard_is_kept_and_reused(tmp_path: Path) -> None:
    """An interrupted sharded run resumes: a shard already written is not solved again."""
    cfg = from_dict(ds.DatasetConfig, tiny_acoustic_config(2)["dataset"], "dataset")
    sources, receivers = ds.sources_for(cfg, "val"), ds.receivers_for(cfg)
    sweep = ds.Sweep(cfg, "val", sources, receivers, ds.make_solver(cfg), "")
    partial = tmp_path / "val.h5.partial"
    ds._solve_into(partial, sweep, progress=False)
    with h5py.File(partial, "r") as f:
        assert f["done"][...].all()
        first = f["pressure"][...]
    # Solving again finds every source done and touches nothing.
    calls: list[int] = []
    real = ds.simulate

    def counting(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    ds.simulate = counting  # type: ignore[assignment]
    try:
        ds._solve_into(partial, sweep, progress=False)
    finally:
        ds.simulate = real  # type: ignore[assignment]
    assert calls == []
    with h5py.File(partial, "r") as f:
        np.testing.assert_array_equal(f["pressure"][...], first)


@pytest.mark.parametrize("dim", [2, 3], ids=["2d", "3d"])
def test_the_data_carry_their_own_error(tmp_path: Path, dim: int) -> None:
    config = _config(tmp_path, dim)
    assert main(["generate", "acoustics", "--config", str(config), "--out", str(tmp_path),
                 "--splits", "test"]) == 0  # fmt: skip
    with h5py.File(ds.split_path(tmp_path, "test"), "r") as f:
        errors = f.attrs["data_error_per_source"]
        assert len(errors) == 2 and len(f.attrs["data_error_sources"]) == 2
        # A real difference from the finer grid, and not a broken one: 8 points per wavelength
        # (the tiny config) is coarse, so a few percent to a few tens of percent.
        assert 1e-4 < float(f.attrs["data_error"]) < 0.5
        assert float(f.attrs["data_error"]) == pytest.approx(float(errors.max()))


def test_pipeline_end_to_end_within_a_budget(tmp_path: Path) -> None:
    """A tiny furnished scene, from the scene file to a served version's domain."""
    cfg = tiny_acoustic_config(2)
    dataset = cfg["dataset"]
    del dataset["room"]
    dataset["scene"] = str(ROOT / "configs" / "scenes" / "tiny-furnished-2d.yaml")
    dataset["sources"] = {**dataset["sources"], "region": {"lo": [0.2, 0.35], "hi": [1.0, 1.0]},
                          "wall_margin": 0.15}  # fmt: skip
    cfg["train"] = {**cfg["train"], "steps": 100000}  # the budget, not the steps, stops it
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    models = tmp_path / "models"
    args = ["pipeline", "--config", str(config), "--device", "cpu", "--budget-minutes", "0.6",
            "--reserve-minutes", "0.3", "--data", str(tmp_path / "data"),
            "--run", str(tmp_path / "run"), "--out", str(models)]  # fmt: skip
    assert main(["--threads", "1", *args]) == 0
    manifest = json.loads((models / cfg["dataset"]["name"] / "1" / "manifest.json").read_text())
    assert manifest["metrics"]["n_test_sources"] == 3
    assert manifest["data_error"]["max"] > 0
    assert set(manifest["data_error"]) >= {"train", "val", "test", "max"}
    assert manifest["commands"]["generate"].startswith("python -m training generate acoustics")
    assert "pipeline" in manifest["commands"]["export"]
    assert 0 < manifest["training"]["steps"] < 100000
    # The service checks requests against the scene itself: the table is not air.
    domain = AcousticDomain.from_manifest(manifest["domain"])
    assert manifest["domain"]["scene"]["name"] == "tiny-furnished-2d"
    with pytest.raises(InvalidInputError, match="table"):
        domain.check_source(np.array([0.75, 0.6]))
    assert domain.check_source(np.array([0.4, 0.9])) == []

    # Over HTTP: served, the table refused by name, a grid answered only in the air.
    url = f"/v1/models/{cfg['dataset']['name']}/predict"
    times = {"start": 0.0, "stop": 0.005, "num": 3}
    with TestClient(create_app(Settings(model_dir=models))) as client:
        bad = client.post(url, json={"source": [0.75, 0.6], "receivers": [[0.4, 0.9]],
                                     "times": times})  # fmt: skip
        assert bad.status_code == 422 and bad.json()["field"] == "source"
        assert "table" in bad.json()["error"]
        bad = client.post(url, json={"source": [0.4, 0.9], "receivers": [[0.4, 0.9], [0.8, 0.6]],
                                     "times": times})  # fmt: skip
        assert bad.status_code == 422 and bad.json()["field"].startswith("receivers")
        ok = client.post(url, json={"source": [0.4, 0.9], "receivers": {"grid": {"nx": 16,
                                    "ny": 12}}, "times": times})  # fmt: skip
        assert ok.status_code == 200, ok.text
        kept = np.asarray(ok.json()["receivers"])
        assert domain.room.is_air(kept).all() and len(kept) < 16 * 12


@pytest.mark.parametrize("dim", [2, 3], ids=["2d", "3d"])
def test_pod_pipeline_on_a_scene(tmp_path: Path, dim: int) -> None:
    """The CPU route: a POD-DeepONet fitted by the pipeline, exported, at least as accurate as
    linear interpolation of its own training fields, and served through the same graphs."""
    scene = ROOT / "configs" / "scenes" / f"tiny-furnished-{dim}d.yaml"
    cfg = tiny_acoustic_config(dim)
    dataset = cfg["dataset"]
    del dataset["room"]
    dataset.update(scene=str(scene), physics={"fmax": 400.0, "absorption": None,
                                              "source_taper": 0.5})  # fmt: skip
    dataset["sources"] = {"train_spacing": 0.25, "wall_margin": 0.1 if dim == 2 else 0.05,
                          "n_val": 3, "n_test": 4, "seed": 2}  # fmt: skip
    dataset["output"] = {"t_max": 0.01, "dt": 0.0005, "receiver_spacing": 0.1}
    # 3-D: the quantized table (int8 and 4-bit codes), as the furnished room ships.
    table = "quantized" if dim == 3 else "float16"
    cfg["model"] = {"kind": "pod", "n_modes": 64, "mode_step": 4, "table_dtype": table}
    config = tmp_path / "pod.yaml"
    config.write_text(yaml.safe_dump(cfg))
    models = tmp_path / "models"
    args = ["pipeline", "--config", str(config), "--device", "cpu", "--data",
            str(tmp_path / "data"), "--run", str(tmp_path / "run"),
            "--out", str(models)]  # fmt: skip
    assert main(["--threads", "1", *args]) == 0
    version = models / dataset["name"] / "1"
    manifest = json.loads((version / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert manifest["training"]["kind"] == "pod"
    assert metrics["rel_l2"] <= metrics["baseline_linear_rel_l2"] + 1e-9
    assert metrics["rel_l2"] < metrics["baseline_nearest_rel_l2"]
    # Between the training receivers the table trunk interpolates: reported, and still useful.
    assert metrics["n_offgrid_sources"] == 4
    assert metrics["rel_l2_offgrid"] < metrics["baseline_nearest_rel_l2"]
    # evaluate on the run (torch) and on the export (onnxruntime) agree.
    run_metrics = evaluate_model_dir(tmp_path / "run", tmp_path / "data")
    assert run_metrics["rel_l2"] == pytest.approx(metrics["rel_l2"], rel=1e-4)
    # The service answers with those graphs: a predicted field equals branch @ trunk.
    src = ds.sources_for(from_dict(ds.DatasetConfig, dataset, "dataset"), "test")[0]
    with TestClient(create_app(Settings(model_dir=models))) as client:
        grid = {"nx": 5, "ny": 4, **({"nz": 3} if dim == 3 else {})}
        r = client.post(f"/v1/models/{dataset['name']}/predict",
                        json={"source": src.tolist(), "receivers": {"grid": grid},
                              "times": [0.002, 0.004]})  # fmt: skip
        assert r.status_code == 200, r.text
        assert np.isfinite(np.asarray(r.json()["pressure"])).all()
    # The trunk's table lies in data files the manifest hashes: a changed one is refused.
    data = manifest["graphs"]["trunk"]["data"]
    assert data and all((version / f).exists() for f in data)
    damaged = version / sorted(data)[0]
    raw = damaged.read_bytes()
    damaged.write_bytes(bytes([raw[0] ^ 0xFF]) + raw[1:])
    with pytest.raises(ManifestError, match=sorted(data)[0]):
        load_version(version, dataset["name"], 1, Runtime("cpu"))


@pytest.mark.parametrize("dim", [2, 3], ids=["2d", "3d"])
def test_offgrid_receivers_lie_between_the_training_ones(dim: int) -> None:
    cfg = from_dict(ds.DatasetConfig, tiny_acoustic_config(dim)["dataset"], "dataset")
    grid, off = ds.receivers_for(cfg), ds.receivers_for(cfg, ds.OFFGRID)
    step = cfg.output.receiver_spacing
    nearest = np.linalg.norm(off[:, None, :] - grid[None, :, :], axis=-1).min(axis=1)
    # Half a step along every axis: the centre of a cell of the training grid.
    assert len(off) > 0 and nearest.min() > 0.45 * step * np.sqrt(dim)
    assert cfg.build_room().is_air(off).all()
    np.testing.assert_array_equal(
        ds.sources_for(cfg, ds.OFFGRID), ds.sources_for(cfg, "test")[: ds.N_OFFGRID]
    )
