"""POD-DeepONet (training/acoustics/pod.py): it beats the nearest-source lookup on held-out
sources, its exported ONNX graphs compute what torch computes, and a checkpoint round-trips.

Fields are synthesised, not simulated, so the test takes seconds: the closed-form 2-D
free-space response of a Gaussian pulse is replaced by a smooth travelling ring
p(x, t; x0) = exp(-(|x - x0| - c t)^2 / w^2) cos(k |x - x0|) / (1 + |x - x0|), which, like the
acoustic fields, changes on the scale of a wavelength both with the receiver and the source.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from geometry.grids import grid_points
from training.acoustics.dataset import AcousticSplit
from training.acoustics.graphs import external_files
from training.acoustics.metrics import predict, rel_l2_per_source
from training.acoustics.pod import (
    PodConfig,
    PodFit,
    TorchPod,
    dequantize,
    export_pod_graphs,
    fit_pod,
    load_pod,
    quantize,
    save_pod,
)

ROOM = (1.2, 1.0)
C = 343.0


def _field(sources: np.ndarray, receivers: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(S, dim), (P, dim), (T,) -> (S, T, P) float32 pascals."""
    r = np.linalg.norm(sources[:, None, :] - receivers[None, :, :], axis=-1)  # (S, P)
    front = r[:, None, :] - C * times[None, :, None]  # (S, T, P)
    ring = np.exp(-(front**2) / 0.3**2) * np.cos(6.0 * r)[:, None, :]
    return (ring / (1.0 + r[:, None, :])).astype(np.float32)


def _split(sources: np.ndarray, spacing: float = 0.05) -> AcousticSplit:
    counts = [round(length / spacing) for length in ROOM]
    lo = [length / n / 2 for length, n in zip(ROOM, counts, strict=True)]
    hi = [length - length / n / 2 for length, n in zip(ROOM, counts, strict=True)]
    receivers = grid_points(lo, hi, counts)  # (P, 2) cell-centred, as receivers_for
    times = np.arange(21, dtype=np.float64) * 5e-4  # (T,)
    room = {"name": "box", "size": list(ROOM), "solids": []}
    return AcousticSplit(
        sources=sources,
        receivers=receivers,
        times=times,
        pressure=_field(sources, receivers, times),
        attrs={"room": json.dumps(room), "config": json.dumps({"room": room})},
    )


@pytest.fixture(scope="module")
def data() -> dict[str, AcousticSplit]:
    axes = [np.linspace(0.3, 0.9, 9), np.linspace(0.3, 0.7, 7)]
    train = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=1)  # (63, 2)
    rng = np.random.default_rng(0)
    return {
        "train": _split(train),
        "val": _split(rng.uniform([0.35, 0.35], [0.85, 0.65], (6, 2))),
        "test": _split(rng.uniform([0.35, 0.35], [0.85, 0.65], (8, 2))),
    }


# A float16 table, and a quantized one whose byte cap leaves a few int8 modes and whose file
# cap splits both kinds over several tensors (several data files beside the trunk graph).
TABLES = {
    "float16": PodConfig(n_modes=48, mode_step=4),
    "quantized": PodConfig(
        n_modes=48, mode_step=4, table_dtype="quantized", max_trunk_mb=0.3, max_file_mb=0.05
    ),
}


@pytest.fixture(scope="module", params=sorted(TABLES))
def fit(request: pytest.FixtureRequest, data: dict[str, AcousticSplit]) -> PodFit:
    torch.set_num_threads(1)
    return fit_pod(data["train"], data["val"], TABLES[request.param], progress=False)


def _nearest(train: AcousticSplit, test: AcousticSplit) -> np.ndarray:
    d = np.linalg.norm(test.sources[:, None] - train.sources[None], axis=-1)  # (Q, S)
    return train.pressure[d.argmin(axis=1)]


def test_beats_nearest_source_on_and_off_the_training_receivers(
    data: dict[str, AcousticSplit], fit: PodFit
) -> None:
    model = TorchPod(fit)
    test = data["test"]
    err = rel_l2_per_source(predict(model, test), test.pressure)
    nearest = rel_l2_per_source(_nearest(data["train"], test), test.pressure)
    assert err.mean() < 0.5 * nearest.mean(), (err.mean(), nearest.mean())
    assert err.mean() < 0.05
    # Off the receiver grid (shifted by a third of a step) and between the output times: the
    # trunk interpolates the modes, so the error stays of the same order.
    off = _split(test.sources, spacing=0.06)
    off_err = rel_l2_per_source(predict(model, off), off.pressure)
    assert off_err.mean() < 0.5 * nearest.mean(), (off_err.mean(), nearest.mean())
    assert fit.report["modes_used"] <= 48
    assert fit.config.n_modes == fit.report["modes_used"]


def test_quantized_table_is_within_half_a_code_of_the_modes() -> None:
    rng = np.random.default_rng(2)
    # Rows of very different levels, as a field's early and late time steps.
    table = (rng.standard_normal((50, 9)) * np.logspace(-4, 1, 50)[:, None]).astype(np.float32)
    codes8, codes4, scales = quantize(table, int8_modes=4)
    assert codes8.shape == (50, 4) and codes4.shape == (50, 3) and scales.shape == (50, 2)
    step = scales.astype(np.float64)
    decoded = dequantize(codes8, codes4, scales, 9)
    assert (np.abs(decoded - table)[:, :4] <= 0.5001 * step[:, :1]).all()
    assert (np.abs(decoded - table)[:, 4:] <= 0.5001 * step[:, 1:]).all()


def test_onnx_graphs_match_torch(fit: PodFit, tmp_path: Path) -> None:
    paths = export_pod_graphs(fit, tmp_path)
    # The table lies in data files beside the trunk graph, none above the file cap.
    files = external_files(paths["trunk"])
    assert {f"trunk.table_{i}.bin" for i in range(len(fit.trunk.parts))} <= set(files)
    for name in files:
        assert (tmp_path / name).stat().st_size <= fit.config.max_file_mb * 2**20
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    branch = ort.InferenceSession(str(paths["branch"]), opts, providers=["CPUExecutionProvider"])
    trunk = ort.InferenceSession(str(paths["trunk"]), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    sources = rng.uniform([0.3, 0.3], [0.9, 0.7], (7, 2)).astype(np.float32)
    # Points anywhere in the room and the time window, including its corners and edges.
    points = np.concatenate(
        [rng.uniform(0, 1, (500, 2)) * ROOM, rng.uniform(0, 0.01, (500, 1))], axis=1
    ).astype(np.float32)
    points[:4, :2] = np.array([[0, 0], [ROOM[0], 0], [0, ROOM[1]], ROOM])
    points[:4, 2] = [0.0, 0.01, 0.005, 0.0]
    model = TorchPod(fit)
    b_onnx = branch.run(None, {"source": sources})[0]
    t_onnx = trunk.run(None, {"points": points})[0]
    b_torch, t_torch = model.coefficients(sources), model.basis(points)
    assert b_onnx.shape == (7, fit.config.n_modes + 1)
    assert t_onnx.shape == (500, fit.config.n_modes + 1)
    np.testing.assert_allclose(t_onnx[:, -1], 1.0)  # the DeepONet bias column
    assert np.abs(b_onnx - b_torch).max() <= 1e-5 * np.abs(b_torch).max()
    assert np.abs(t_onnx - t_torch).max() <= 1e-5 * np.abs(t_torch).max()
    field_onnx, field_torch = b_onnx @ t_onnx.T, b_torch @ t_torch.T
    assert np.abs(field_onnx - field_torch).max() <= 1e-5 * np.abs(field_torch).max()


def test_checkpoint_round_trip(fit: PodFit, tmp_path: Path) -> None:
    path = save_pod(tmp_path / "pod.pt", fit, {"dataset_config": {"name": "synthetic"}})
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place
    loaded, ckpt = load_pod(path)
    assert loaded.config == fit.config
    assert ckpt["dataset_config"] == {"name": "synthetic"}
    points = torch.tensor([[0.5, 0.5, 0.003], [0.1, 0.9, 0.0]])
    sources = torch.tensor([[0.6, 0.5]])
    with torch.no_grad():
        assert torch.equal(loaded.trunk(points), fit.trunk(points))
        assert torch.equal(loaded.branch(sources), fit.branch(sources))
