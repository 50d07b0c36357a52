"""Accuracy of an acoustic DeepONet against the FDTD solver on held-out sources.

Works on an exported model version (`models/<name>/<v>`, run through onnxruntime: the numbers
are those of what is served) or on a training run directory (torch checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from training.acoustics.dataset import (
    AcousticSplit,
    DatasetConfig,
    generate_split,
    load_split,
    split_path,
)
from training.common.config import from_dict


class FieldModel(Protocol):
    def coefficients(self, sources: np.ndarray) -> np.ndarray: ...  # (S, dim) -> (S, p+1)
    def basis(self, points: np.ndarray) -> np.ndarray: ...  # (N, dim+1) -> (N, p+1)


class OnnxDeepONet:
    """The exported branch and trunk graphs, composed as the service composes them."""

    def __init__(self, model_dir: str | Path, threads: int = 0) -> None:
        model_dir = Path(model_dir)
        self.manifest = json.loads((model_dir / "manifest.json").read_text())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.branch = ort.InferenceSession(
            str(model_dir / "branch.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self.trunk = ort.InferenceSession(
            str(model_dir / "trunk.onnx"), opts, providers=["CPUExecutionProvider"]
        )

    def coefficients(self, sources: np.ndarray) -> np.ndarray:
        return self.branch.run(None, {"source": sources.astype(np.float32)})[0]

    def basis(self, points: np.ndarray) -> np.ndarray:
        return self.trunk.run(None, {"points": points.astype(np.float32)})[0]


def space_time_grid(receivers: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Every (receiver, time) pair, time-major: (T * P, dim + 1), matching pressure (S, T, P)."""
    t = np.repeat(times, len(receivers))[:, None]  # (T*P, 1)
    x = np.tile(receivers, (len(times), 1))  # (T*P, dim)
    return np.concatenate([x, t], axis=1)


def predict(model: FieldModel, split: AcousticSplit, chunk: int = 65536) -> np.ndarray:
    pts = space_time_grid(split.receivers, split.times)
    coeff = model.coefficients(split.sources)  # (S, p+1)
    out = np.empty((len(split.sources), len(pts)), dtype=np.float32)
    for start in range(0, len(pts), chunk):
        out[:, start : start + chunk] = coeff @ model.basis(pts[start : start + chunk]).T
    return out.reshape(len(split.sources), len(split.times), len(split.receivers))  # (S, T, P)


def rel_l2_per_source(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    axes = tuple(range(1, ref.ndim))
    err = np.sqrt(((pred.astype(np.float64) - ref) ** 2).sum(axis=axes))
    return err / np.sqrt((ref.astype(np.float64) ** 2).sum(axis=axes))


def rmse_norm(pred: np.ndarray, ref: np.ndarray) -> float:
    """Each receiver's impulse response error (RMSE over time) over its reference peak, as the
    paper reports it; averaged over receivers and sources."""
    diff = pred.astype(np.float64) - ref  # (S, T, P)
    rmse = np.sqrt((diff**2).mean(axis=1))  # (S, P)
    peak = np.abs(ref).max(axis=1)  # (S, P)
    return float(np.mean(rmse / peak))


def nearest_source_prediction(train: AcousticSplit, test: AcousticSplit) -> np.ndarray:
    """The field of the nearest training source, used as the prediction: the lookup to beat."""
    d = np.linalg.norm(
        test.sources[:, None, :] - train.sources[None, :, :], axis=-1
    )  # (S_test, S_train)
    return train.pressure[d.argmin(axis=1)]  # (S_test, T, P)


def ensure_splits(
    cfg: DatasetConfig, data_dir: Path, splits: tuple[str, ...], progress: bool
) -> None:
    for split in splits:
        if not split_path(data_dir, split).exists():
            generate_split(cfg, data_dir, split, progress=progress)


def evaluate(
    model: FieldModel, data_dir: Path, cfg: DatasetConfig, progress: bool = False
) -> dict[str, Any]:
    ensure_splits(cfg, data_dir, ("train", "test"), progress)
    test, train = load_split(data_dir, "test"), load_split(data_dir, "train")
    pred = predict(model, test)
    per_source = rel_l2_per_source(pred, test.pressure)
    baseline = rel_l2_per_source(nearest_source_prediction(train, test), test.pressure)
    return {
        "rel_l2": float(per_source.mean()),
        "rel_l2_max": float(per_source.max()),
        "rmse_norm": rmse_norm(pred, test.pressure),
        "baseline_nearest_rel_l2": float(baseline.mean()),
        "n_test_sources": len(test.sources),
        "n_receivers": len(test.receivers),
        "n_times": len(test.times),
    }


def evaluate_model_dir(
    model_dir: str | Path, data_dir: str | Path | None = None, progress: bool = False
) -> dict[str, Any]:
    """Evaluate an exported version or a training run directory."""
    model_dir = Path(model_dir)
    model: FieldModel
    if (model_dir / "manifest.json").exists():
        onnx_model = OnnxDeepONet(model_dir)
        data_cfg = onnx_model.manifest["training"]["dataset"]
        model = onnx_model
    else:
        from training.acoustics.train import TorchDeepONet

        torch_model = TorchDeepONet(model_dir)
        data_cfg = torch_model.dataset_config
        model = torch_model
    cfg = from_dict(DatasetConfig, data_cfg, "dataset")
    return evaluate(model, Path(data_dir) if data_dir else Path("data") / cfg.name, cfg, progress)
