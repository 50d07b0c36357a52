"""The enf2enf baselines on tiny but real panel-method data: free stream and geometry DeepONet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from geometry.airfoils import BOX, signed_distance
from training.airfoils.dataset import FIELD_COLUMNS, DatasetConfig, generate_split
from training.airfoils.freestream import freestream_prediction
from training.enf2enf.baselines import (
    GeometryDeepONet,
    GeometryDeepONetConfig,
    OnnxGeometryDeepONet,
    export_geometry_deeponet,
    load_geometry_deeponet,
    predict_torch,
    save_geometry_deeponet,
    sensor_grid,
    sensor_sdf,
    train_geometry_deeponet,
)
from training.enf2enf.metrics import rel_l2_fields, rel_l2_per_sample
from training.geometry_data.format import Split, load_split

TINY_STEPS = 300


@dataclass
class Tiny:
    train: Split
    val: Split
    test: Split
    test_multi: Split
    model: GeometryDeepONet
    onnx: Path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """Real Hess-Smith data (coarse panels, few points), a briefly trained baseline, its graph."""
    root = tmp_path_factory.mktemp("airfoil-baselines")
    cfg = DatasetConfig(
        name="tiny-airfoils",
        n_train_single=48,
        n_train_multi=16,
        n_val_single=4,
        n_val_multi=2,
        n_test=6,
        n_test_multi=3,
        panels_per_element=40,
        n_field=128,
        superres_factor=4,
        n_encoder=32,
        seed=3,
    )
    splits = {}
    for split in ("train", "val", "test", "test_multi"):
        generate_split(cfg, root / "data", split, progress=False)
        splits[split] = load_split(root / "data", split)
    model_cfg = GeometryDeepONetConfig(
        branch_width=32,
        branch_depth=3,
        trunk_width=32,
        trunk_depth=3,
        n_basis=16,
        n_fourier=8,
        lr=5e-3,  # a short run on few samples: the fast end of what trains stably
        batch_samples=8,
        batch_points=128,
        val_every=100,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is as fast and leaves the rest alone
    try:
        model = train_geometry_deeponet(
            splits["train"], splits["val"], model_cfg, TINY_STEPS, "cpu", progress=False
        )
    finally:
        torch.set_num_threads(threads)
    onnx_path = export_geometry_deeponet(model, root / "baseline_deeponet.onnx")
    return Tiny(model=model, onnx=onnx_path, **splits)


def test_freestream_is_exact_uniform_flow() -> None:
    cond = np.array([[0.0, 1.0], [90.0, 2.0], [-5.0, 0.5], [12.0, 1.5]], dtype=np.float32)
    pred = freestream_prediction(cond, 7)
    assert pred.shape == (4, 7, 3) and pred.dtype == np.float32
    alpha = np.deg2rad(cond[:, 0].astype(np.float64))
    expected = np.stack([cond[:, 1] * np.cos(alpha), cond[:, 1] * np.sin(alpha)], axis=1)  # (4, 2)
    for n in range(7):  # the same uniform flow at every point
        np.testing.assert_allclose(pred[:, n, :2], expected, rtol=1e-6, atol=1e-7)
    assert np.all(pred[:, :, 2] == 0.0)
    np.testing.assert_allclose(pred[1, 0, :2], [0.0, 2.0], atol=1e-6)  # straight up


def test_rel_l2_fields_definition() -> None:
    ref = np.ones((2, 4, 3))
    ref[1] *= 2.0
    pred = ref.copy()
    pred[0, :, 0] += 0.5  # u of sample 0 off by 50 %
    pred[1, :, 2] = 0.0  # cp of sample 1 entirely wrong
    out = rel_l2_fields(pred, ref, FIELD_COLUMNS)
    assert out == pytest.approx({"u": 0.25, "v": 0.0, "cp": 0.5})
    assert rel_l2_per_sample(pred, ref).shape == (2, 3)
    with pytest.raises(ValueError):
        rel_l2_fields(pred[:, :, :2], ref[:, :, :2], FIELD_COLUMNS)


def test_sensor_grid_covers_the_box() -> None:
    grid = sensor_grid((16, 12), BOX)
    assert grid.shape == (16 * 12, 2)
    assert grid[:, 0].min() == -0.5 and grid[:, 0].max() == 1.5
    assert grid[:, 1].min() == -0.75 and grid[:, 1].max() == 0.75
    assert np.allclose(grid[1] - grid[0], [0.0, 1.5 / 11])  # x-major: y varies fastest


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="activation"):
        GeometryDeepONetConfig(activation="relu6")
    with pytest.raises(ValueError, match="normalisation"):
        GeometryDeepONet(GeometryDeepONetConfig())


def test_deeponet_beats_freestream(tiny: Tiny) -> None:
    # 64 coarse training samples and 300 steps give about half the free-stream error (ratios
    # 0.23-0.6 over data seeds); the margins leave room for that spread.
    runner = OnnxGeometryDeepONet(tiny.onnx)
    for split, margin in ((tiny.test, {"u": 0.7, "v": 0.6, "cp": 0.6}), (tiny.test_multi, 0.8)):
        ref, names, counts = split.fields, split.schema.field_names, split.n_points
        free = freestream_prediction(split.conditions, ref.shape[1])
        base = rel_l2_fields(free, ref, names, counts)
        pred = rel_l2_fields(runner.predict(split), ref, names, counts)
        for name in ("u", "v", "cp"):
            bar = margin[name] if isinstance(margin, dict) else margin
            assert pred[name] < bar * base[name], (name, pred, base)
    assert tiny.model.history and tiny.model.history[-1]["step"] == TINY_STEPS


def test_onnx_matches_torch_at_two_point_counts(tiny: Tiny) -> None:
    runner = OnnxGeometryDeepONet(tiny.onnx)
    split = tiny.test
    s_sdf = runner.sensor_sdf(split)
    scale = np.abs(split.fields).max(axis=(0, 1))  # (3,) per-field scale
    for dense in (False, True):
        ref = predict_torch(tiny.model, split, s_sdf, dense=dense)
        got = runner.predict(split, dense=dense)
        n = split.points.shape[1] * (4 if dense else 1)
        assert got.shape == ref.shape == (len(split.conditions), n, 3)
        assert np.all(np.abs(got - ref) <= 1e-4 * scale), np.abs(got - ref).max(axis=(0, 1))
    # Batch size is free too: one sample on its own gives what it gave in the batch.
    one = runner.run(s_sdf[:1], split.conditions[:1], split.points[:1, :17], split.sdf[:1, :17])
    np.testing.assert_allclose(one[0], runner.predict(split)[0, :17], atol=1e-5)


def test_onnx_sensor_sdf_is_the_geometry_sdf(tiny: Tiny) -> None:
    runner = OnnxGeometryDeepONet(tiny.onnx)
    np.testing.assert_array_equal(runner.sensors, tiny.model.cfg.sensors())
    split = tiny.test_multi
    got = runner.sensor_sdf(split)
    assert got.shape == (len(split.conditions), 16 * 12)
    for i in range(len(got)):
        expected = signed_distance(runner.sensors, split.polylines(i))
        np.testing.assert_allclose(got[i], expected, rtol=1e-6, atol=1e-7)
    assert np.any(got < 0)  # the grid does reach inside the bodies
    np.testing.assert_array_equal(got, sensor_sdf(split, sensor_grid((16, 12), BOX)))


def test_checkpoint_round_trip(tiny: Tiny, tmp_path: Path) -> None:
    save_geometry_deeponet(tiny.model, tmp_path / "baseline.pt")
    loaded = load_geometry_deeponet(tmp_path / "baseline.pt")
    assert loaded.cfg == tiny.model.cfg and loaded.history == tiny.model.history
    split = tiny.val
    s_sdf = sensor_sdf(split, sensor_grid((16, 12), BOX))
    np.testing.assert_array_equal(
        predict_torch(loaded, split, s_sdf), predict_torch(tiny.model, split, s_sdf)
    )
