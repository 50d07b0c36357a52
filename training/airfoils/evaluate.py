"""Accuracy of enf2enf against the panel method on held-out geometries, beside both baselines.

Works on an exported model version (`models/<name>/<v>`: encoder.onnx and decoder.onnx through
onnxruntime, composed as the service composes them, so the numbers are those of what is served)
or on a training run directory (torch checkpoint). Metrics:

- `rel_l2` {u, v, cp}: held-out single-element sections (`test`); `rel_l2_multi` the same on
  held-out two-element configurations (`test_multi`); per-sample relative L2, averaged
  (training.airfoils.metrics).
- `baseline_freestream` and `baseline_deeponet`: {single, multi} on the same points.
- `superres_ratio`: enf2enf's error on the dense point set (superres_factor x the training
  density, same distribution) over its error at training density, same `test` samples. Per
  field in `superres_ratio_fields`; the headline number is the mean over u, v and cp.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from training.airfoils.metrics import FIELDS, rel_l2_fields

SINGLE, MULTI = "test", "test_multi"


class FieldModel(Protocol):
    def encode(self, points: np.ndarray, sdf: np.ndarray) -> np.ndarray: ...  # (M,2),(M,)->(L,C)

    def decode(
        self, latents: np.ndarray, conditions: np.ndarray, points: np.ndarray, sdf: np.ndarray
    ) -> np.ndarray: ...  # (L, C), (2,), (N, 2), (N,) -> (N, 3)


class OnnxEnf2Enf:
    """The exported encoder and decoder graphs, one geometry at a time as the service runs
    them."""

    def __init__(self, model_dir: str | Path, threads: int = 0) -> None:
        model_dir = Path(model_dir)
        self.model_dir = model_dir
        self.manifest = json.loads((model_dir / "manifest.json").read_text())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        graphs = self.manifest["graphs"]
        self.encoder = ort.InferenceSession(
            str(model_dir / graphs["encoder"]["file"]), opts, providers=["CPUExecutionProvider"]
        )
        self.decoder = ort.InferenceSession(
            str(model_dir / graphs["decoder"]["file"]), opts, providers=["CPUExecutionProvider"]
        )

    def encode(self, points: np.ndarray, sdf: np.ndarray) -> np.ndarray:
        feeds = {"points": points.astype(np.float32), "sdf": sdf.astype(np.float32)}
        return np.asarray(self.encoder.run(None, feeds)[0])

    def decode(
        self, latents: np.ndarray, conditions: np.ndarray, points: np.ndarray, sdf: np.ndarray
    ) -> np.ndarray:
        feeds = {
            "latents": latents.astype(np.float32),
            "conditions": conditions.astype(np.float32),
            "points": points.astype(np.float32),
            "sdf": sdf.astype(np.float32),
        }
        return np.asarray(self.decoder.run(None, feeds)[0])


def encode_split(model: FieldModel, split: Any, progress: bool = False) -> np.ndarray:
    """(S, L, C) latents of every sample's geometry (from its stored encoder point set)."""
    out = [
        model.encode(split.encoder_points[i], split.encoder_sdf[i])
        for i in tqdm(range(len(split.conditions)), desc="encode", disable=not progress)
    ]
    return np.stack(out)


def predict_split(
    model: FieldModel,
    split: Any,
    latents: np.ndarray,
    dense: bool = False,
    chunk: int = 16384,
    progress: bool = False,
) -> np.ndarray:
    """(S, N, 3) [u, v, cp] at every sample's points (its dense points when dense=True)."""
    points = split.dense_points if dense else split.points
    sdf = split.dense_sdf if dense else split.sdf
    if points is None or sdf is None:
        raise ValueError("this split has no dense point set (only test splits carry one)")
    out = np.empty((*points.shape[:2], len(FIELDS)), dtype=np.float32)
    for i in tqdm(range(len(points)), desc="decode", disable=not progress):
        for a in range(0, points.shape[1], chunk):
            out[i, a : a + chunk] = model.decode(
                latents[i], split.conditions[i], points[i, a : a + chunk], sdf[i, a : a + chunk]
            )
    return out


def ensure_splits(
    cfg: dict[str, Any], data_dir: Path, splits: tuple[str, ...], progress: bool
) -> None:
    """Generate missing held-out splits from the dataset config (a fresh clone has no data/)."""
    from training.airfoils.dataset import DatasetConfig, generate_split, split_path
    from training.common.config import from_dict

    missing = [s for s in splits if not split_path(data_dir, s).exists()]
    if missing:
        data_cfg = from_dict(DatasetConfig, cfg, "dataset")
        for split in missing:
            generate_split(data_cfg, data_dir, split, progress=progress)


def _load(data_dir: Path, split: str) -> Any:
    from training.airfoils.dataset import load_split

    return load_split(data_dir, split)


def _freestream(split: Any) -> dict[str, float]:
    from training.airfoils.baselines import freestream_prediction

    pred = freestream_prediction(split.conditions, split.points.shape[1])
    return rel_l2_fields(pred, split.fields)


def evaluate(
    model: FieldModel,
    data_dir: Path,
    dataset_cfg: dict[str, Any],
    baseline: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Every metric in the module docstring; `baseline` is the geometry DeepONet's ONNX graph
    (None: reported as null)."""
    ensure_splits(dataset_cfg, data_dir, (SINGLE, MULTI), progress)
    single, multi = _load(data_dir, SINGLE), _load(data_dir, MULTI)
    lat_single = encode_split(model, single, progress)
    lat_multi = encode_split(model, multi, progress)
    pred = predict_split(model, single, lat_single, progress=progress)
    pred_multi = predict_split(model, multi, lat_multi, progress=progress)
    pred_dense = predict_split(model, single, lat_single, dense=True, progress=progress)
    err = rel_l2_fields(pred, single.fields)
    err_dense = rel_l2_fields(pred_dense, single.dense_fields)
    ratios = {k: err_dense[k] / err[k] for k in FIELDS}
    metrics: dict[str, Any] = {
        "rel_l2": err,
        "rel_l2_multi": rel_l2_fields(pred_multi, multi.fields),
        "rel_l2_dense": err_dense,
        "superres_ratio": float(np.mean(list(ratios.values()))),
        "superres_ratio_fields": ratios,
        "baseline_freestream": {"single": _freestream(single), "multi": _freestream(multi)},
        "baseline_deeponet": None,
        "n_test": len(single.conditions),
        "n_test_multi": len(multi.conditions),
        "n_points": int(single.points.shape[1]),
        "n_points_dense": int(single.dense_points.shape[1]),
    }
    if baseline is not None and baseline.exists():
        from training.airfoils.baselines import OnnxGeometryDeepONet

        deeponet = OnnxGeometryDeepONet(baseline)
        metrics["baseline_deeponet"] = {
            "single": rel_l2_fields(deeponet.predict(single), single.fields),
            "multi": rel_l2_fields(deeponet.predict(multi), multi.fields),
        }
    return metrics


def evaluate_model_dir(
    model_dir: str | Path, data_dir: str | Path | None = None, progress: bool = False
) -> dict[str, Any]:
    """Evaluate an exported version (ONNX) or a training run directory (torch)."""
    model_dir = Path(model_dir)
    model: FieldModel
    baseline: Path | None
    if (model_dir / "manifest.json").exists():
        onnx_model = OnnxEnf2Enf(model_dir)
        data_cfg = onnx_model.manifest["training"]["dataset"]
        entry = onnx_model.manifest.get("baselines", {}).get("deeponet")
        baseline = model_dir / entry["file"] if entry else None
        model = onnx_model
    else:
        from training.airfoils.train import BASELINE, TorchEnf2Enf

        torch_model = TorchEnf2Enf(model_dir)
        data_cfg = torch_model.dataset_config
        baseline = _baseline_onnx_from_run(model_dir / BASELINE)
        model = torch_model
    data = Path(data_dir) if data_dir else Path("data") / data_cfg["name"]
    return evaluate(model, data, data_cfg, baseline, progress)


def _baseline_onnx_from_run(checkpoint: Path) -> Path | None:
    """A run directory holds the baseline as torch weights: export it next to them once."""
    if not checkpoint.exists():
        return None
    from training.airfoils.baselines import export_geometry_deeponet, load_geometry_deeponet

    onnx_path = checkpoint.with_suffix(".onnx")
    if not onnx_path.exists() or onnx_path.stat().st_mtime < checkpoint.stat().st_mtime:
        export_geometry_deeponet(load_geometry_deeponet(checkpoint), onnx_path)
    return onnx_path
