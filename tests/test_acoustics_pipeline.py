"""The acoustic training side end to end: data, resumable training, export parity, manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import TinyAcoustic, tiny_acoustic_config

from training.acoustics import dataset as ds
from training.acoustics.train import TrainConfig, load_model, train
from training.cli import main
from training.common.config import from_dict
from training.common.files import sha256_file


def test_end_to_end_outputs(tiny_acoustic: TinyAcoustic) -> None:
    with h5py.File(tiny_acoustic.data / "train.h5", "r") as f:
        assert f["done"][...].all()
        assert f.attrs["solver_dt"] * f.attrs["solver_substeps"] == pytest.approx(
            f.attrs["output_dt"]
        )
        assert f["pressure"].shape == (len(f["sources"]), len(f["times"]), len(f["receivers"]))
        # The first frame is the source pulse itself: amplitude 1 at its centre, never above.
        assert 0.3 < float(np.abs(f["pressure"][:, 0]).max()) <= 1.0
    for name in ("checkpoint.pt", "loss.png", "field.png", "history.json"):
        assert (tiny_acoustic.run / name).stat().st_size > 0
    manifest = json.loads((tiny_acoustic.version_dir / "manifest.json").read_text())
    assert manifest["family"] == "deeponet" and manifest["domain"]["dim"] == tiny_acoustic.dim
    for graph in manifest["graphs"].values():
        assert sha256_file(tiny_acoustic.version_dir / graph["file"]) == graph["sha256"]
    assert "train" in " ".join(manifest["commands"]["train"])
    assert manifest["commands"]["generate"].startswith("python -m training generate acoustics")
    assert manifest["metrics"]["n_test_sources"] == 3


@pytest.mark.parametrize("n_points", [7, 1500])
def test_onnx_matches_torch(tiny_acoustic: TinyAcoustic, n_points: int) -> None:
    model, _ = load_model(tiny_acoustic.run)
    manifest = json.loads((tiny_acoustic.version_dir / "manifest.json").read_text())
    room = np.asarray(manifest["domain"]["room"]["size"])
    rng = np.random.default_rng(n_points)
    sources = (rng.uniform(0.3, 0.7, (3, tiny_acoustic.dim)) * room).astype(np.float32)
    t = rng.uniform(0, manifest["domain"]["time_window"][1], (n_points, 1))
    points = np.concatenate([rng.uniform(0, 1, (n_points, tiny_acoustic.dim)) * room, t], 1)
    points = points.astype(np.float32)

    branch = ort.InferenceSession(str(tiny_acoustic.version_dir / "branch.onnx"))
    trunk = ort.InferenceSession(str(tiny_acoustic.version_dir / "trunk.onnx"))
    coeff = branch.run(None, {"source": sources})[0]  # (3, p+1)
    basis = trunk.run(None, {"points": points})[0]  # (N, p+1)
    field_onnx = coeff @ basis.T
    with torch.no_grad():
        field_torch = model(torch.from_numpy(sources), torch.from_numpy(points)).numpy()
    assert basis.shape == (n_points, model.cfg.n_basis + 1)
    peak = np.abs(field_torch).max()
    assert np.abs(field_onnx - field_torch).max() < 1e-4 * peak


def test_manifest_metrics_equal_evaluate(
    tiny_acoustic: TinyAcoustic, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(tiny_acoustic.version_dir),
                "--data",
                str(tiny_acoustic.data),
                "--json",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    manifest = json.loads((tiny_acoustic.version_dir / "manifest.json").read_text())
    assert printed.keys() >= {"rel_l2", "rmse_norm", "baseline_nearest_rel_l2", "n_test_sources"}
    for key, value in manifest["metrics"].items():
        assert printed[key] == pytest.approx(value, rel=1e-6), key


def test_evaluate_regenerates_missing_test_data(
    tiny_acoustic: TinyAcoustic, tmp_path: Path
) -> None:
    """A fresh clone has no data/: evaluate rebuilds the held-out split from the manifest."""
    from training.acoustics.evaluate import evaluate_model_dir

    metrics = evaluate_model_dir(tiny_acoustic.version_dir, data_dir=tmp_path / "fresh")
    manifest = json.loads((tiny_acoustic.version_dir / "manifest.json").read_text())
    assert metrics["rel_l2"] == pytest.approx(manifest["metrics"]["rel_l2"], rel=1e-5)


def test_export_refuses_to_overwrite_a_version(tiny_acoustic: TinyAcoustic) -> None:
    code = main(
        [
            "export",
            "--run",
            str(tiny_acoustic.run),
            "--out",
            str(tiny_acoustic.models),
            "--version",
            "1",
            "--data",
            str(tiny_acoustic.data),
        ]
    )
    assert code == 2
    assert not list((tiny_acoustic.models / tiny_acoustic.name).glob(".*partial"))


def test_resumed_training_equals_uninterrupted(tiny_acoustic: TinyAcoustic, tmp_path: Path) -> None:
    cfg = tiny_acoustic_config(tiny_acoustic.dim)
    tc = from_dict(
        TrainConfig, {**cfg["train"], "steps": 12, "val_every": 6, "checkpoint_every": 6}
    )
    train(tmp_path / "straight", tiny_acoustic.data, cfg["model"], tc, device="cpu", progress=False)
    tc_half = from_dict(
        TrainConfig, {**cfg["train"], "steps": 6, "val_every": 6, "checkpoint_every": 6}
    )
    train(
        tmp_path / "resumed",
        tiny_acoustic.data,
        cfg["model"],
        tc_half,
        device="cpu",
        progress=False,
    )
    state = train(
        tmp_path / "resumed", tiny_acoustic.data, cfg["model"], tc, device="cpu", progress=False
    )
    assert state.step == 12
    a, _ = load_model(tmp_path / "straight")
    b, _ = load_model(tmp_path / "resumed")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=name)


def test_generation_is_deterministic_and_resumes(
    tiny_acoustic: TinyAcoustic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = from_dict(ds.DatasetConfig, tiny_acoustic_config(tiny_acoustic.dim)["dataset"])
    real = ds.simulate
    calls = {"n": 0}

    def crash_after_first_batch(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ds, "simulate", crash_after_first_batch)
    cfg.solver.batch = 1  # one source per batch, so the crash leaves a partial file
    with pytest.raises(KeyboardInterrupt):
        ds.generate_split(cfg, tmp_path, "test", progress=False)
    partial = tmp_path / "test.h5.partial"
    with h5py.File(partial, "r") as f:
        assert f["done"][...].sum() == 1
    assert not (tmp_path / "test.h5").exists()
    monkeypatch.setattr(ds, "simulate", real)
    ds.generate_split(cfg, tmp_path, "test", progress=False)
    assert not partial.exists()
    resumed = ds.load_split(tmp_path, "test")
    # Same seed, same sources and fields as the fixture's uninterrupted run (batch size differs).
    reference = ds.load_split(tiny_acoustic.data, "test")
    np.testing.assert_array_equal(resumed.sources, reference.sources)
    np.testing.assert_allclose(resumed.pressure, reference.pressure, atol=1e-6)


def test_sources_respect_region_and_walls(tiny_acoustic: TinyAcoustic) -> None:
    cfg = from_dict(ds.DatasetConfig, tiny_acoustic_config(tiny_acoustic.dim)["dataset"])
    room, region = cfg.build_room(), cfg.source_region()
    for split in ds.SPLITS:
        src = ds.sources_for(cfg, split)
        assert len(src) > 0
        assert region.contains(src).all()
        assert (room.wall_distance(src) >= cfg.sources.wall_margin).all()
    assert not np.isin(ds.sources_for(cfg, "test"), ds.sources_for(cfg, "val")).all(axis=1).any()


def test_config_errors_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tiny_acoustic_config(2)
    bad["dataset"]["physics"]["fmx"] = 500
    path = tmp_path / "bad.yaml"
    import yaml

    path.write_text(yaml.safe_dump(bad))
    assert main(["generate", "acoustics", "--config", str(path), "--out", str(tmp_path)]) == 2
    assert "fmx" in capsys.readouterr().err
    shutil.rmtree(tmp_path)
