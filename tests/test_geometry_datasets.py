"""enf2enf on any geometry dataset: the elasticity pipeline's exported graphs and metrics, and a
user's own VTK files imported, trained on, exported and evaluated with a config alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from conftest import TinyGeometry
from test_importers import VTK_ARGS, write_vtk_folder

from geometry.polylines import surface_features
from training.cli import main
from training.enf2enf.train import load_model
from training.geometry_data.format import load_split


def test_elasticity_export_states_its_task_and_metrics(tiny_elasticity: TinyGeometry) -> None:
    manifest = json.loads((tiny_elasticity.version_dir / "manifest.json").read_text())
    assert manifest["task"] == "geometry-fields"
    assert manifest["fields"] == ["von_mises", "ux", "uy"]
    domain = manifest["domain"]
    assert domain["box"] == [[0.0, 1.0], [0.0, 1.0]] and domain["box_is_domain"] is True
    (load,) = domain["conditions"]
    # Stress is the load times what the graph predicts: a load <= 0 is refused, not extrapolated.
    assert load["name"] == "load" and load["units"] == "Pa" and load["positive"] is True
    assert domain["shape"] == {"kind": "star", "center": [0.5, 0.5], "radius": [0.2, 0.4]}
    m = manifest["metrics"]
    for key in ("rel_l2", "rel_l2_outside_singular", "rel_l2_dense", "rel_l2_spread"):
        assert set(m[key]) == {"von_mises", "ux", "uy"}, key
    assert m["superres_ratio"] > 0 and m["n_points_dense"] > 2 * m["n_points"]
    assert m["data_error"]["von_mises"]["mean"] > 0
    assert set(m["baseline_mean"]["test"]) == set(m["baseline_deeponet"]["test"])
    assert "baseline_freestream" not in m  # the airfoil floor only


def test_elasticity_graphs_match_torch(tiny_elasticity: TinyGeometry) -> None:
    """The exported decoder is the torch model, including the load scaling of every field."""
    model, _ = load_model(tiny_elasticity.run)
    test = load_split(tiny_elasticity.data, "test")
    d = tiny_elasticity.version_dir
    enc = ort.InferenceSession(str(d / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(d / "decoder.onnx"), providers=["CPUExecutionProvider"])
    pts, sdf, _ = test.sample_points(0)
    # The tiny model takes the void's shape at each point, as the shipped one.
    shape = surface_features(pts, test.polylines(0))[:, 1:].astype(np.float32)
    latents = enc.run(None, {"points": test.encoder_points[0], "sdf": test.encoder_sdf[0]})[0]
    for load in (2e4, 8e4):
        cond = np.array([load], dtype=np.float32)
        feeds = {"latents": latents, "conditions": cond, "points": pts, "sdf": sdf, "shape": shape}
        got = dec.run(None, feeds)[0]
        with torch.no_grad():
            want = model.decode(*(torch.from_numpy(v)[None] for v in feeds.values()))[0].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def _tiny_model_config(name: str) -> dict[str, object]:
    return {
        "family": "enf2enf",
        "problem": "imported",
        "dataset": {"name": name},
        "model": {"latent_grid": 2, "latent_dim": 4, "enc_hidden": 8, "dec_hidden": 8,
                  "out_width": 8, "latent_bbox": [-0.5, 0.5, -0.5, 0.5]},
        "train": {"steps": 6, "encoder_steps": 3, "encoder_batch": 2, "batch_samples": 2,
                  "batch_points": 32, "warmup_steps": 1, "val_every": 3,
                  "checkpoint_every": 3, "baseline_steps": 3,
                  "baseline": {"sensor_nx": 3, "sensor_ny": 3, "branch_width": 8,
                               "branch_depth": 1, "trunk_width": 8, "trunk_depth": 1,
                               "n_basis": 2, "n_fourier": 2, "val_every": 3}},
    }  # fmt: skip


def test_imported_vtk_folder_trains_exports_and_evaluates(tmp_path: Path) -> None:
    """A user's own solver output: import, then train, export and evaluate with a config and
    the data folder alone (no generator; no val split, so training validates on train)."""
    src, data = tmp_path / "cases", tmp_path / "data"
    write_vtk_folder(src, n_files=5)
    argv = ["import", "vtk", "--src", str(src), "--out", str(data), *VTK_ARGS,
            "--test-fraction", "0.4", "--seed", "1"]  # fmt: skip
    assert main(argv) == 0
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_tiny_model_config("my-cases")))
    run, models = tmp_path / "run", tmp_path / "models"
    args = ["--config", str(config), "--data", str(data), "--out", str(run), "--device", "cpu"]
    assert main(["train", *args]) == 0
    export = ["export", "--run", str(run), "--out", str(models), "--data", str(data)]
    assert main([*export, "--name", "my-cases"]) == 0
    version = models / "my-cases" / "1"
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["task"] == "geometry-fields" and manifest["fields"] == ["p", "u", "v"]
    assert [c["name"] for c in manifest["domain"]["conditions"]] == ["load", "aoa"]
    assert set(manifest["metrics"]["rel_l2"]) == {"p", "u", "v"}
    assert manifest["metrics"]["n_test"] == 2
    assert main(["evaluate", str(version), "--data", str(data), "--json"]) == 0
    # Without a generator, evaluation cannot remake missing test data: it says so.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", str(version), "--data", str(empty), "--json"]) == 2


@pytest.mark.parametrize("bad", ["problem: nowhere", "model.n_fields: 5"])
def test_generate_and_train_refuse_configs_that_do_not_fit(tmp_path: Path, bad: str) -> None:
    cfg = _tiny_model_config("x")
    if bad.startswith("problem"):
        cfg["problem"] = "nowhere"
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(cfg))
        assert main(["generate", "elasticity", "--config", str(path)]) == 2
        return
    src, data = tmp_path / "cases", tmp_path / "data"
    write_vtk_folder(src, n_files=3)
    argv = ["import", "vtk", "--src", str(src), "--out", str(data), *VTK_ARGS,
            "--test-fraction", "0.4"]  # fmt: skip
    assert main(argv) == 0
    cfg["model"]["n_fields"] = 5  # type: ignore[index]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--data", str(data), "--out", str(out)]) == 2
