"""Accuracy of enf2enf against its solver on held-out geometries, beside the baselines.

Works on an exported model version (`models/<name>/<v>`: encoder.onnx and decoder.onnx through
onnxruntime, composed as the service composes them, so the numbers are those of what is served)
or on a training run directory (torch checkpoint), for any geometry dataset. Every split with
role "test" is scored; the one named `test` gives the headline keys, a split `test_<label>`
(or with a `label` attribute) gets `_<label>` keys:

- `rel_l2` {field: ...}: per-sample relative L2 over each sample's points, averaged
  (training.enf2enf.metrics); `rel_l2_spread` its median, 90th percentile and worst sample.
- Where the dataset names singular points (`singular_points`, `singular_radius` attributes: the
  clamped corners of the elastic cell), `rel_l2_outside_singular` is the same with disks around
  them left out; both are reported.
- `baseline_mean` and `baseline_deeponet` (the geometry DeepONet graph): {label: {field: ...}} on
  the same points, plus the problem's own floor (`baseline_freestream` for airfoils).
- `superres_ratio`: the error on the dense point set (more points, or a finer mesh, of the same
  `test` samples) over the error at training density; per field in `superres_ratio_fields`,
  the headline number is the mean over fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from geometry.polylines import surface_features
from training.enf2enf import problems
from training.enf2enf.metrics import rel_l2_fields, spread
from training.geometry_data.format import Split, load_split, splits_with_role

HEADLINE = "test"


class FieldModel(Protocol):
    surface_shape: bool  # whether decode needs `shape`

    def encode(self, points: np.ndarray, sdf: np.ndarray) -> np.ndarray: ...  # (M,2),(M,)->(L,C)

    def decode(
        self,
        latents: np.ndarray,
        conditions: np.ndarray,
        points: np.ndarray,
        sdf: np.ndarray,
        shape: np.ndarray | None = None,
    ) -> np.ndarray: ...  # (L, C), (K,), (N, 2), (N,), (N, 3) -> (N, F)


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
        self.surface_shape = any(i.name == "shape" for i in self.decoder.get_inputs())

    def encode(self, points: np.ndarray, sdf: np.ndarray) -> np.ndarray:
        feeds = {"points": points.astype(np.float32), "sdf": sdf.astype(np.float32)}
        return np.asarray(self.encoder.run(None, feeds)[0])

    def decode(
        self,
        latents: np.ndarray,
        conditions: np.ndarray,
        points: np.ndarray,
        sdf: np.ndarray,
        shape: np.ndarray | None = None,
    ) -> np.ndarray:
        feeds = {
            "latents": latents.astype(np.float32),
            "conditions": conditions.astype(np.float32),
            "points": points.astype(np.float32),
            "sdf": sdf.astype(np.float32),
        }
        if self.surface_shape:
            if shape is None:
                raise ValueError(f"{self.model_dir}'s decoder needs the surface shape")
            feeds["shape"] = shape.astype(np.float32)
        return np.asarray(self.decoder.run(None, feeds)[0])


def encode_split(model: FieldModel, split: Split, progress: bool = False) -> np.ndarray:
    """(S, L, C) latents of every sample's geometry (from its stored encoder point set)."""
    out = [
        model.encode(split.encoder_points[i], split.encoder_sdf[i])
        for i in tqdm(range(len(split)), desc="encode", disable=not progress)
    ]
    return np.stack(out)


def predict_split(
    model: FieldModel,
    split: Split,
    latents: np.ndarray,
    dense: bool = False,
    chunk: int = 16384,
    progress: bool = False,
) -> np.ndarray:
    """(S, N, F) fields at every sample's real points (its dense points when dense=True);
    padding rows are left zero."""
    points = split.dense_points if dense else split.points
    sdf = split.dense_sdf if dense else split.sdf
    counts = split.n_dense if dense else split.n_points
    if points is None or sdf is None or counts is None:
        raise ValueError(f"{split.path} has no dense point set (only test splits carry one)")
    out = np.zeros((*points.shape[:2], len(split.schema.field_names)), dtype=np.float32)
    for i in tqdm(range(len(points)), desc="decode", disable=not progress):
        n = int(counts[i])
        shape = None
        if model.surface_shape:
            shape = surface_features(points[i, :n], split.polylines(i))[:, 1:]  # (n, 3)
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            out[i, a:b] = model.decode(
                latents[i],
                split.conditions[i],
                points[i, a:b],
                sdf[i, a:b],
                None if shape is None else shape[a:b],
            )
    return out


def _label(split: Split) -> str:
    """'test' -> the headline; 'test_multi' -> 'multi' (or the split's own label)."""
    if "label" in split.attrs:
        return str(split.attrs["label"])
    name = split.name
    return name[len("test_") :] if name.startswith("test_") else name


def _suffix(split: Split) -> str:
    return "" if split.name == HEADLINE else f"_{_label(split)}"


def outside_singular(split: Split, dense: bool = False) -> np.ndarray | None:
    """(S, N) False within `singular_radius` of a `singular_points` entry; None if none."""
    if "singular_points" not in split.attrs:
        return None
    centres = np.asarray(json.loads(split.attrs["singular_points"]), dtype=np.float64)
    radius = float(split.attrs["singular_radius"])
    points = split.dense_points if dense else split.points
    assert points is not None
    dist = np.linalg.norm(points[:, :, None, :] - centres[None, None], axis=-1)  # (S, N, P)
    return np.asarray(dist.min(axis=-1) > radius)


def _scores(
    pred: np.ndarray, split: Split, dense: bool = False
) -> tuple[dict[str, float], dict[str, Any]]:
    """(rel_l2 per field, {spread, and the same outside the singular disks when named})."""
    names = split.schema.field_names
    ref = split.dense_fields if dense else split.fields
    counts = split.n_dense if dense else split.n_points
    assert ref is not None and counts is not None
    extra: dict[str, Any] = {"spread": spread(pred, ref, names, counts)}
    keep = outside_singular(split, dense)
    if keep is not None:
        extra["outside_singular"] = rel_l2_fields(pred, ref, names, counts, keep)
    return rel_l2_fields(pred, ref, names, counts), extra


def ensure_splits(problem: str, data_cfg: dict[str, Any], data_dir: Path, progress: bool) -> None:
    """Generate the held-out splits from the dataset config when they are missing (a fresh
    clone has no data/); an imported dataset must be there already."""
    generator = problems.generator(problem, data_cfg)
    if generator is None:
        if not splits_with_role(data_dir, "test"):
            raise FileNotFoundError(
                f"{data_dir} holds no test split, and the dataset was imported (no generator "
                "config): import it again there or pass --data"
            )
        return
    module, cfg = generator
    for split in module.TEST_SPLITS:
        if not (data_dir / f"{split}.h5").exists():
            module.generate_split(cfg, data_dir, split, progress=progress)


def evaluate(
    model: FieldModel,
    data_dir: Path,
    problem: str,
    dataset_cfg: dict[str, Any],
    baseline: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Every metric in the module docstring; `baseline` is the geometry DeepONet's ONNX graph
    (None: reported as null)."""
    ensure_splits(problem, dataset_cfg, data_dir, progress)
    tests = [load_split(data_dir, name) for name in splits_with_role(data_dir, "test")]
    tests.sort(key=lambda s: (s.name != HEADLINE, s.name))
    metrics: dict[str, Any] = {}
    mean_field = _mean_field(data_dir)
    deeponet = None
    if baseline is not None and baseline.exists():
        from training.enf2enf.baselines import OnnxGeometryDeepONet

        deeponet = OnnxGeometryDeepONet(baseline)
    baselines: dict[str, dict[str, Any]] = {"mean": {}, "deeponet": {}}
    for split in tests:
        latents = encode_split(model, split, progress)
        pred = predict_split(model, split, latents, progress=progress)
        err, extra = _scores(pred, split)
        key = _suffix(split)
        metrics[f"rel_l2{key}"] = err
        metrics[f"rel_l2{key}_spread"] = extra["spread"]
        if "outside_singular" in extra:
            metrics[f"rel_l2{key}_outside_singular"] = extra["outside_singular"]
        metrics[f"n_test{key}"] = len(split)
        label = _label(split)
        if mean_field is not None:
            baselines["mean"][label] = _scores(mean_field.predict(split), split)[0]
        if deeponet is not None:
            scored = _scores(deeponet.predict(split), split)
            baselines["deeponet"][label] = scored[0]
            if "outside_singular" in scored[1]:
                baselines["deeponet"][f"{label}_outside_singular"] = scored[1]["outside_singular"]
        for name, floor in problems.floor_baselines(split).items():
            metrics.setdefault(f"baseline_{name}", {})[label] = floor
        if split.name == HEADLINE and split.dense_points is not None:
            dense = predict_split(model, split, latents, dense=True, progress=progress)
            err_dense, extra_dense = _scores(dense, split, dense=True)
            ratios = {k: err_dense[k] / max(err[k], 1e-12) for k in err}
            metrics["rel_l2_dense"] = err_dense
            if "outside_singular" in extra_dense:
                metrics["rel_l2_dense_outside_singular"] = extra_dense["outside_singular"]
                inner = extra["outside_singular"]
                metrics["superres_ratio_outside_singular"] = float(
                    np.mean(
                        [extra_dense["outside_singular"][k] / max(inner[k], 1e-12) for k in inner]
                    )
                )
            metrics["superres_ratio"] = float(np.mean(list(ratios.values())))
            metrics["superres_ratio_fields"] = ratios
            assert split.n_dense is not None
            metrics["n_points"] = int(split.n_points.max())
            metrics["n_points_dense"] = int(split.n_dense.max())
        if "data_error" in split.attrs:
            metrics[f"data_error{key}"] = json.loads(split.attrs["data_error"])
    metrics["baseline_mean"] = baselines["mean"] or None
    metrics["baseline_deeponet"] = baselines["deeponet"] or None
    return metrics


def _mean_field(data_dir: Path) -> Any:
    """The mean-field baseline from the training split, when it is there."""
    from training.enf2enf.baselines import MeanField

    if not (data_dir / "train.h5").exists():
        return None
    return MeanField(load_split(data_dir, "train"))


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
        problem = problems.problem_of(onnx_model.manifest["training"])
        name = problems.dataset_name(onnx_model.manifest["training"])
        entry = onnx_model.manifest.get("baselines", {}).get("deeponet")
        baseline = model_dir / entry["file"] if entry else None
        model = onnx_model
    else:
        from training.enf2enf.train import BASELINE, TorchEnf2Enf

        torch_model = TorchEnf2Enf(model_dir)
        data_cfg = torch_model.dataset_config
        problem = problems.problem_of(torch_model.checkpoint)
        name = problems.dataset_name(torch_model.checkpoint)
        baseline = _baseline_onnx_from_run(model_dir / BASELINE)
        model = torch_model
    data = Path(data_dir) if data_dir else Path("data") / name
    return evaluate(model, data, problem, data_cfg, baseline, progress)


def _baseline_onnx_from_run(checkpoint: Path) -> Path | None:
    """A run directory holds the baseline as torch weights: export it next to them once."""
    if not checkpoint.exists():
        return None
    from training.enf2enf.baselines import export_geometry_deeponet, load_geometry_deeponet

    onnx_path = checkpoint.with_suffix(".onnx")
    if not onnx_path.exists() or onnx_path.stat().st_mtime < checkpoint.stat().st_mtime:
        export_geometry_deeponet(load_geometry_deeponet(checkpoint), onnx_path)
    return onnx_path
