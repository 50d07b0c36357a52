"""The no-training acoustic baselines (nearest, linear, thin-plate spline over the stored training
fields), the spread reported for each, and the byte counts, on analytic fields and on the real
exported tiny models."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import TinyAcoustic

from geometry.grids import lattice_in_box
from geometry.rooms import Box
from training.acoustics.baselines import (
    baseline_predictions,
    delaunay_weights,
    linear_weights,
    multilinear_weights,
    nearest_weights,
    spline_weights,
)
from training.acoustics.metrics import mean_ci95, rel_l2_per_source, spread

ROOT = Path(__file__).resolve().parents[1]
T, P = 12, 30


def lattice_and_queries(dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training lattice spaced 0.125 on the unit box (as sources_for builds it), test sources
    drawn uniformly inside it, and (P, dim) receivers."""
    train = lattice_in_box(Box.from_spec({"lo": [0.0] * dim, "hi": [1.0] * dim}), 0.125)
    rng = np.random.default_rng(seed)
    return train, rng.uniform(0.05, 0.95, (20, dim)), rng.uniform(0.0, 1.0, (P, dim))


def smooth_field(sources: np.ndarray, receivers: np.ndarray) -> np.ndarray:
    """(S, dim), (P, dim) -> (S, T, P): smooth and nonlinear in the source position."""
    t = np.linspace(0.0, 1.0, T)
    r = np.linalg.norm(
        sources[:, None, None, :] - receivers[None, None, :, :], axis=-1
    )  # (S, 1, P)
    return np.cos(3.0 * r - 2.0 * t[None, :, None]) * np.exp(-r)  # (S, T, P)


def linear_field(sources: np.ndarray, receivers: np.ndarray) -> np.ndarray:
    """(S, dim), (P, dim) -> (S, T, P): a(x, t) + s . b(x, t), affine in the source position."""
    t = np.linspace(0.0, 1.0, T)
    a = np.sin(receivers.sum(axis=1))[None, :] + t[:, None]  # (T, P)
    b = np.cos(receivers[None, :, :] + t[:, None, None])  # (T, P, dim)
    return a[None] + np.einsum("sd,tpd->stp", sources, b)  # (S, T, P)


@pytest.mark.parametrize("dim", [2, 3])
def test_spline_beats_linear_beats_nearest(dim: int) -> None:
    train, test, receivers = lattice_and_queries(dim)
    preds = dict(baseline_predictions(train, smooth_field(train, receivers), test))
    ref = smooth_field(test, receivers)
    err = {name: rel_l2_per_source(pred, ref).mean() for name, pred in preds.items()}
    assert err["spline"] < err["linear"] < err["nearest"], err
    assert err["spline"] < 0.2 * err["nearest"], err


@pytest.mark.parametrize("dim", [2, 3])
def test_linear_and_spline_are_exact_for_a_linear_field(dim: int) -> None:
    train, test, receivers = lattice_and_queries(dim, seed=1)
    # Clip the lattice as the wall margin does, so cells near the cut lack corners and the
    # Delaunay fallback is exercised too.
    train = train[~((train[:, 0] > 0.6) & (train[:, 1] > 0.6))]
    test = test[~((test[:, 0] > 0.6) & (test[:, 1] > 0.6))]
    assert np.isnan(multilinear_weights(train, test)).any(axis=1).any()
    assert not np.isnan(multilinear_weights(train, test)).all(axis=1).all()
    fields, ref = linear_field(train, receivers), linear_field(test, receivers)
    preds = dict(baseline_predictions(train, fields, test))
    for name in ("linear", "spline"):
        np.testing.assert_allclose(preds[name], ref, atol=1e-5, err_msg=name)
    assert rel_l2_per_source(preds["nearest"], ref).min() > 1e-3


def test_weights_reproduce_constants_and_fall_back() -> None:
    train, test, _ = lattice_and_queries(2)
    outside = np.array([[2.0, 2.0], [-1.0, 0.5]])
    for weights in (linear_weights, spline_weights, nearest_weights):
        w = weights(train, np.concatenate([test, outside]))  # (Q, S)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-9, err_msg=weights.__name__)
    # Outside the hull linear is the nearest source; Delaunay alone has nothing there.
    np.testing.assert_array_equal(linear_weights(train, outside), nearest_weights(train, outside))
    assert np.isnan(delaunay_weights(train, outside)).all()
    # A sweep of one source or one lattice line (the tiny 3-D fixture) degrades to nearest.
    for degenerate in (train[:1], train[train[:, 1] == train[0, 1]]):
        for weights in (linear_weights, spline_weights):
            np.testing.assert_array_equal(
                weights(degenerate, test), nearest_weights(degenerate, test)
            )


def test_multilinear_is_the_tensor_product_on_a_full_cell() -> None:
    train, _, _ = lattice_and_queries(2)
    q = np.array([[0.125 * 3 + 0.03, 0.125 * 5 + 0.1]])
    w = multilinear_weights(train, q)[0]
    fx, fy = 0.03 / 0.125, 0.1 / 0.125
    expect = sorted([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    np.testing.assert_allclose(sorted(w[w > 0]), expect)


def test_spread_and_ci() -> None:
    rng = np.random.default_rng(2)
    values = rng.gamma(2.0, 0.05, size=24)
    s = spread(values, "rel_l2")
    lo, hi = s["rel_l2_ci95"]
    assert lo <= s["rel_l2"] <= hi
    assert s["rel_l2"] == pytest.approx(values.mean())
    assert s["rel_l2_max"] == values.max() and s["rel_l2"] < s["rel_l2_p95"] <= s["rel_l2_max"]
    # t-interval: half width t_{0.975, 23} * sd / sqrt(24), t_{0.975, 23} = 2.0687.
    assert (hi - lo) / 2 == pytest.approx(2.0687 * values.std(ddof=1) / np.sqrt(24), rel=1e-4)
    assert mean_ci95(np.array([0.1])) is None
    assert mean_ci95(np.array([0.0, 0.0, 1.0]))[0] == 0.0  # type: ignore[index]


def test_training_and_evaluation_do_not_import_each_other() -> None:
    def imported(path: str) -> set[str]:
        tree = ast.parse((ROOT / path).read_text())
        return {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}

    assert "training.acoustics.evaluate" not in imported("training/acoustics/train.py")
    assert "training.acoustics.train" not in imported("training/acoustics/evaluate.py")
    assert "training.acoustics.train" not in imported("training/acoustics/metrics.py")
    assert "training.acoustics.evaluate" not in imported("training/acoustics/metrics.py")


def test_exported_metrics_have_baselines_spread_and_bytes(tiny_acoustic: TinyAcoustic) -> None:
    """The real path: export ran `evaluate` on real FDTD data and real graphs."""
    metrics = json.loads((tiny_acoustic.version_dir / "manifest.json").read_text())["metrics"]
    for key in ("rel_l2", *(f"baseline_{b}_rel_l2" for b in ("nearest", "linear", "spline"))):
        lo, hi = metrics[f"{key}_ci95"]
        assert 0 <= lo <= metrics[key] <= hi, key
        assert metrics[key] <= metrics[f"{key}_max"], key
        assert metrics[f"{key}_p95"] <= metrics[f"{key}_max"], key
    graphs = ("branch.onnx", "trunk.onnx")
    assert metrics["bytes_onnx"] == sum(
        (tiny_acoustic.version_dir / g).stat().st_size for g in graphs
    )
    with h5py.File(tiny_acoustic.data / "train.h5", "r") as f:
        s, t, p = f["pressure"].shape
        assert metrics["n_train_sources"] == s
    assert metrics["bytes_training_fields"] == s * t * p * 4


def test_run_directory_bytes_are_its_parameters(tiny_acoustic: TinyAcoustic) -> None:
    from training.acoustics.evaluate import evaluate_model_dir
    from training.acoustics.train import load_model

    metrics = evaluate_model_dir(tiny_acoustic.run, tiny_acoustic.data)
    model, _ = load_model(tiny_acoustic.run)
    n_values = sum(v.numel() for v in model.state_dict().values())
    assert metrics["bytes_onnx"] == 4 * n_values  # float32 parameters and buffers
    manifest = json.loads((tiny_acoustic.version_dir / "manifest.json").read_text())
    # The baselines read only the data, so the run directory and its export agree on them.
    for key in ("baseline_linear_rel_l2", "baseline_spline_rel_l2", "baseline_nearest_rel_l2"):
        assert metrics[key] == pytest.approx(manifest["metrics"][key], rel=1e-9)
