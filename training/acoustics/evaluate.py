"""Accuracy of an acoustic DeepONet against the FDTD solver on held-out sources.

Works on an exported model version (`models/<name>/<v>`, run through onnxruntime: the numbers
are those of what is served) or on a training run directory (torch checkpoint). Beside the
model, the baselines that need no training (training/acoustics/baselines.py) are scored on the
same sources, each with its spread over sources, and the bytes each answer needs are compared:
the model's graphs against the stored training fields the baselines read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from training.acoustics.baselines import baseline_predictions
from training.acoustics.dataset import (
    OFFGRID,
    DatasetConfig,
    generate_split,
    load_split,
    split_path,
)
from training.acoustics.metrics import (
    FieldModel,
    predict,
    rel_l2_per_source,
    rmse_norm,
    spread,
)
from training.common.config import from_dict


class OnnxDeepONet:
    """The exported branch and trunk graphs, composed as the service composes them."""

    def __init__(self, model_dir: str | Path, threads: int = 0) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = json.loads((self.model_dir / "manifest.json").read_text())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.branch = ort.InferenceSession(
            str(self.model_dir / "branch.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self.trunk = ort.InferenceSession(
            str(self.model_dir / "trunk.onnx"), opts, providers=["CPUExecutionProvider"]
        )

    def coefficients(self, sources: np.ndarray) -> np.ndarray:
        return self.branch.run(None, {"source": sources.astype(np.float32)})[0]

    def basis(self, points: np.ndarray) -> np.ndarray:
        return self.trunk.run(None, {"points": points.astype(np.float32)})[0]

    def graph_bytes(self) -> int:
        """What serving this model ships: every graph file the manifest names, with the
        external data files of each."""
        return sum(
            (self.model_dir / file).stat().st_size
            for graph in self.manifest["graphs"].values()
            for file in [graph["file"], *graph.get("data", {})]
        )


def ensure_splits(
    cfg: DatasetConfig, data_dir: Path, splits: tuple[str, ...], progress: bool
) -> None:
    for split in splits:
        if not split_path(data_dir, split).exists():
            generate_split(cfg, data_dir, split, progress=progress, sharded=False)


def evaluate(
    model: FieldModel,
    data_dir: Path,
    cfg: DatasetConfig,
    progress: bool = False,
    model_bytes: int | None = None,
) -> dict[str, Any]:
    """Model and baseline errors on the test sources.

    Each error is reported as its mean over test sources (`rel_l2`, `baseline_<name>_rel_l2`),
    the Student-t 95% interval of that mean (`..._ci95`, see metrics.mean_ci95), the 95th
    percentile and the maximum over sources (`..._p95`, `..._max`).

    `model_bytes` is what the model's answer needs stored; an exported version's graph files
    are counted when it is not given, otherwise `bytes_onnx` is null.
    """
    ensure_splits(cfg, data_dir, ("train", "test"), progress)
    test, train = load_split(data_dir, "test"), load_split(data_dir, "train")
    pred = predict(model, test)
    metrics: dict[str, Any] = {
        **spread(rel_l2_per_source(pred, test.pressure), "rel_l2"),
        "rmse_norm": rmse_norm(pred, test.pressure),
    }
    for name, field in baseline_predictions(train.sources, train.pressure, test.sources):
        metrics |= spread(rel_l2_per_source(field, test.pressure), f"baseline_{name}_rel_l2")
    # Between the training receivers: where a trunk that only learned the grid would fail.
    ensure_splits(cfg, data_dir, (OFFGRID,), progress)
    off = load_split(data_dir, OFFGRID)
    metrics |= spread(rel_l2_per_source(predict(model, off), off.pressure), "rel_l2_offgrid")
    same = rel_l2_per_source(pred[: len(off.sources)], test.pressure[: len(off.sources)])
    metrics["rel_l2_ongrid_same_sources"] = float(same.mean())
    if model_bytes is None and isinstance(model, OnnxDeepONet):
        model_bytes = model.graph_bytes()
    return metrics | {
        "bytes_onnx": model_bytes,
        "bytes_training_fields": int(train.pressure.size) * 4,  # stored as float32
        "n_test_sources": len(test.sources),
        "n_offgrid_sources": len(off.sources),
        "n_train_sources": len(train.sources),
        "n_receivers": len(test.receivers),
        "n_times": len(test.times),
    }


def evaluate_model_dir(
    model_dir: str | Path, data_dir: str | Path | None = None, progress: bool = False
) -> dict[str, Any]:
    """Evaluate an exported version or a training run directory."""
    model_dir = Path(model_dir)
    model: FieldModel
    model_bytes: int | None = None
    if (model_dir / "manifest.json").exists():
        onnx_model = OnnxDeepONet(model_dir)
        data_cfg = onnx_model.manifest["training"]["dataset"]
        model = onnx_model
    else:
        # Only a run directory needs torch: imported here so evaluating an export does not.
        from training.acoustics.checkpoint import load_run

        model, model_bytes, ckpt = load_run(model_dir)
        data_cfg = ckpt["dataset_config"]
    cfg = from_dict(DatasetConfig, data_cfg, "dataset")
    data = Path(data_dir) if data_dir else Path("data") / cfg.name
    return evaluate(model, data, cfg, progress, model_bytes)
