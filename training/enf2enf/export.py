"""Export a trained enf2enf as two ONNX graphs (encoder, decoder), the geometry DeepONet
baseline, and a manifest.

The encoder needs gradients at inference: its K inner-loop steps differentiate the SDF field
with respect to the codes. The exporter cannot trace autograd, so the whole loop (forward and
backward of every step) is first traced into one flat aten graph with make_fx at the fixed
encoder point count (`tracing_mode="real"`: a symbolic point count fails), with the backward
ops decomposed into primitives ONNX has (gelu_backward -> erf/exp, softmax backward ->
mul/sum, ...); that graph module is then exported with the TorchScript exporter like any
module. The decoder has no such need and exports directly with a free point count.

The version folder is assembled under a temporary name and renamed into place only when the
graphs, their hashes and the evaluated metrics are all written.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.func import functional_call
from torch.fx.experimental.proxy_tensor import make_fx

from geometry.polylines import surface_features
from training.common.config import to_dict
from training.common.files import sha256_file, write_json
from training.common.versions import staged_version
from training.enf2enf import problems
from training.enf2enf.evaluate import OnnxEnf2Enf, ensure_splits, evaluate
from training.enf2enf.model import N_SHAPE, DecoderGraph, EncoderGraph, Enf2Enf, Enf2EnfConfig
from training.enf2enf.train import BASELINE, load_model
from training.geometry_data.format import ENCODER_SEED, Split

OPSET = 17
PARITY_TOL = 1e-4  # export refuses a graph further than this (relative to the output scale)

_aten = torch.ops.aten
# Backward (and composite) ops the TorchScript ONNX exporter has no symbolic for, decomposed
# into primitives while tracing.
DECOMPOSITIONS: dict[Any, Any] = torch._decomp.get_decompositions(
    [
        _aten._unsafe_view,
        _aten.gelu,
        _aten.gelu_backward,
        _aten._softmax,
        _aten._softmax_backward_data,
        _aten.native_layer_norm_backward,
        _aten.slice_backward,
        _aten.select_backward,
    ]
)


def example_geometry(
    polylines: list[np.ndarray], n_encoder: int, box: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training geometry's encoder point set: the values only feed the trace (the graph has
    no data-dependent control flow), but real ones make the parity check meaningful."""
    from geometry.polylines import encoder_points

    pts, sdf = encoder_points(polylines, n_encoder, box, seed=ENCODER_SEED)
    return torch.as_tensor(pts, dtype=torch.float32), torch.as_tensor(sdf, dtype=torch.float32)


def trace_encoder(model: Enf2Enf, points: torch.Tensor, sdf: torch.Tensor) -> torch.fx.GraphModule:
    """The encoder with its inner loop unrolled, forward and backward, as one aten graph for
    exactly len(points) encoder points."""
    graph = EncoderGraph(model).eval()
    # Weights enter as constants that need no gradient: only the codes are differentiated.
    params = {k: v.detach() for k, v in graph.named_parameters()}
    params.update(dict(graph.named_buffers()))

    def encoder(points: torch.Tensor, sdf: torch.Tensor) -> torch.Tensor:
        return functional_call(graph, params, (points, sdf))

    return make_fx(encoder, tracing_mode="real", decomposition_table=DECOMPOSITIONS)(points, sdf)


def decoder_inputs(cfg: Enf2EnfConfig) -> list[str]:
    return ["latents", "conditions", "points", "sdf"] + ["shape"] * cfg.surface_shape


def export_graphs(
    model: Enf2Enf, out_dir: Path, polylines: list[np.ndarray], n_encoder: int, box: Any
) -> None:
    model = model.cpu().eval()
    pts, sdf = example_geometry(polylines, n_encoder, box)
    shape = torch.as_tensor(surface_features(pts.numpy(), polylines)[:, 1:], dtype=torch.float32)
    cond = 0.5 * (model.cond_lo + model.cond_hi)  # (K,) mid-range conditions
    traced = trace_encoder(model, pts, sdf)
    cfg = model.cfg
    n_query = 7
    query = pts[:n_query].clone()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but exports these traced graphs exactly.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            traced,
            (pts, sdf),
            str(out_dir / "encoder.onnx"),
            input_names=["points", "sdf"],
            output_names=["latents"],
            opset_version=OPSET,
            dynamo=False,
        )
        latents = model.encode(pts[None], sdf[None])[0].detach()
        example: tuple[torch.Tensor, ...] = (latents, cond, query, sdf[:n_query].clone().abs())
        if cfg.surface_shape:
            example += (shape[:n_query].clone(),)
        names = decoder_inputs(cfg)
        torch.onnx.export(
            DecoderGraph(model).eval(),
            example,
            str(out_dir / "decoder.onnx"),
            input_names=names,
            output_names=["fields"],
            dynamic_axes={**{k: {0: "n"} for k in names[2:]}, "fields": {0: "n"}},
            opset_version=OPSET,
            dynamo=False,
        )
    for name in ("encoder", "decoder"):
        onnx.checker.check_model(str(out_dir / f"{name}.onnx"))
    _check_parity(model, out_dir, pts, sdf, shape, latents, cond.numpy())
    assert latents.shape == (cfg.n_latents, cfg.latent_dim)


def _check_parity(
    model: Enf2Enf,
    out_dir: Path,
    pts: torch.Tensor,
    sdf: torch.Tensor,
    shape: torch.Tensor,
    latents: torch.Tensor,
    cond: np.ndarray,
) -> None:
    """Refuse to ship graphs that disagree with torch (the traced inner loop in particular)."""
    enc = ort.InferenceSession(str(out_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    got = enc.run(None, {"points": pts.numpy(), "sdf": sdf.numpy()})[0]
    ref = latents.numpy()
    scale = float(np.abs(ref).max()) or 1.0
    diff = float(np.abs(got - ref).max())
    if diff > PARITY_TOL * scale:
        raise RuntimeError(f"encoder.onnx differs from torch by {diff:.3g} (scale {scale:.3g})")
    dec = ort.InferenceSession(str(out_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    cond = cond.astype(np.float32)
    values = [ref, cond, pts[::3].numpy(), np.abs(sdf[::3].numpy()), shape[::3].numpy()]
    # A decoder without the surface shape takes the first four of them.
    feeds = dict(zip(decoder_inputs(model.cfg), values, strict=False))
    got = dec.run(None, feeds)[0]
    with torch.no_grad():
        want = DecoderGraph(model)(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    scale = float(np.abs(want).max()) or 1.0
    diff = float(np.abs(got - want).max())
    if diff > PARITY_TOL * scale:
        raise RuntimeError(f"decoder.onnx differs from torch by {diff:.3g} (scale {scale:.3g})")


def deviations(cfg: Enf2EnfConfig) -> list[str]:
    """Where this reproduction departs from the paper, recorded in every manifest."""
    out = [
        f"widths {cfg.enc_hidden} (encoder) / {cfg.dec_hidden} (decoder) instead of 128 / 256",
        f"{cfg.dec_heads} decoder attention head(s) splitting the hidden width (the authors give "
        "each head the full width)",
        "inner loop on all n_encoder points of the fixed sampling (seed 0) rather than fresh "
        "random subsets per step, so training and serving run the same computation",
        "outer meta-loss on the encoder points plus a random subset of the field points",
    ]
    if cfg.dec_shared_relative:
        out.append(
            "one relative-position MLP per (point, latent) pair serves both the query and the "
            "value modulation (the authors have one MLP each)"
        )
    if cfg.dec_rff_features and cfg.dec_rff_features != cfg.dec_hidden:
        out.append(
            f"{cfg.dec_rff_features} Fourier features of x - p_i in the decoder, not the width "
            f"({cfg.dec_hidden})"
        )
    if any(k >= 0 for k in cfg.field_scale):
        out.append(
            "fields predicted divided by the condition they are proportional to "
            f"(field_scale {list(cfg.field_scale)}) and multiplied back inside the graph"
        )
    if cfg.surface_shape:
        out.append(
            "the decoder's output MLP also gets the boundary curvature and outward normal at "
            "each query's nearest surface point, computed exactly from the polylines, weighted "
            f"by exp(-sdf / {cfg.shape_length:g})"
        )
    if cfg.superposition:
        out.append(
            "(u, v) / speed = cos(aoa) A(x) + sin(aoa) B(x) with A, B from the output MLP "
            "(potential flow is linear in the free-stream direction); conditions still enter "
            "every latent as in the paper, and Cp is a direct output"
        )
    return out


def _io(name: str, shape: list[int], units: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "dtype": "float32", "shape": shape, "units": units, **extra}


def _shape_io(length: str) -> dict[str, Any]:
    return _io(
        "shape",
        [-1, N_SHAPE],
        [f"1/{length}", "1", "1"],
        axes=["curvature", "normal_x", "normal_y"],
        note="at each query's nearest surface point: geometry.polylines.surface_features",
    )


def build_manifest(
    model: Enf2Enf, ckpt: dict[str, Any], split: Split, name: str, version: str, command: str
) -> dict[str, Any]:
    cfg = model.cfg
    data, attrs = ckpt["dataset_config"], ckpt["dataset_attrs"]
    fields, conditions = json.loads(attrs["field_names"]), json.loads(attrs["condition_names"])
    field_units = json.loads(attrs["field_units"])
    condition_units = json.loads(attrs["condition_units"])
    length = attrs["length_unit"]
    m, nl, c = split.encoder_points.shape[1], cfg.n_latents, cfg.latent_dim
    state = ckpt["state"]
    serving = problems.serving(problems.problem_of(ckpt), data, split, model)
    return {
        "name": name,
        "version": version,
        "family": "enf2enf",
        "task": serving.task,
        "description": serving.description,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "graphs": {
            "encoder": {
                "file": "encoder.onnx",
                "computes": (
                    f"geometry -> latent point cloud: {cfg.inner_steps} meta-learned gradient "
                    "steps on the latent contexts fitting the signed distance at the encoder "
                    "points (inner loop unrolled into the graph)"
                ),
                "inputs": [
                    _io("points", [m, 2], length, axes=["x", "y"]),
                    _io("sdf", [m], length, note="signed distance, positive in the domain"),
                ],
                "outputs": [_io("latents", [nl, c], "1")],
            },
            "decoder": {
                "file": "decoder.onnx",
                "computes": (
                    "latents + conditions + query points (+ their SDF"
                    + (", the surface's curvature and normal" if cfg.surface_shape else "")
                    + f") -> {fields}"
                ),
                "inputs": [
                    _io("latents", [nl, c], "1"),
                    _io("conditions", [len(conditions)], condition_units, axes=conditions),
                    _io("points", [-1, 2], length, axes=["x", "y"]),
                    _io("sdf", [-1], length),
                    *[_shape_io(length)] * cfg.surface_shape,
                ],
                "outputs": [_io("fields", [-1, len(fields)], field_units, axes=fields)],
            },
        },
        "compose": (
            "points, sdf = geometry.polylines.encoder_points(polylines, domain.n_encoder, "
            "domain.box, seed=domain.encoder_seed); latents = encoder(points, sdf); "
            + (
                "f = geometry.polylines.surface_features(query, polylines); "
                f"fields = decoder(latents, {conditions}, query, f[:, 0], f[:, 1:])"
                if cfg.surface_shape
                else f"fields = decoder(latents, {conditions}, query, "
                "signed_distance(query, polylines))"
            )
        ),
        "fields": fields,
        "field_units": field_units,
        "baselines": {},
        "domain": {**serving.domain, "latents": {"count": nl, "dim": c, "grid": cfg.latent_grid}},
        "metrics": {},
        "training": {
            "steps": state["step"],
            "seconds": round(state["seconds"], 1),
            "encoder_seconds": round(state["encoder_seconds"], 1),
            "baseline_seconds": round(state["baseline_seconds"], 1),
            "best_val_rel_l2": state["best_val"] if np.isfinite(state["best_val"]) else None,
            "final_val": state["history"][-1] if state["history"] else {},
            "model": to_dict(cfg),
            "train": ckpt["train_config"],
            "dataset": data,
            "dataset_attrs": attrs,
            "deviations_from_paper": deviations(cfg),
        },
        "commands": {
            "generate": ckpt.get("data_command", ""),
            "train": state["commands"],
            "export": command,
        },
        "opset": OPSET,
    }


def _export_baseline(run_dir: Path, tmp: Path, manifest: dict[str, Any]) -> None:
    checkpoint = run_dir / BASELINE
    if not checkpoint.exists():
        return
    from training.enf2enf.baselines import export_geometry_deeponet, load_geometry_deeponet

    module = load_geometry_deeponet(checkpoint)
    path = export_geometry_deeponet(module, tmp / "baseline_deeponet.onnx")
    decoder = manifest["graphs"]["decoder"]
    cond, fields = decoder["inputs"][1], decoder["outputs"][0]
    length = decoder["inputs"][2]["units"]
    manifest["baselines"]["deeponet"] = {
        "file": path.name,
        "sha256": sha256_file(path),
        "computes": (
            "geometry DeepONet baseline: SDF on a fixed sensor grid + conditions (branch), "
            f"query point and its SDF (trunk) -> {fields['axes']}"
        ),
        "inputs": [
            _io("sensor_sdf", [-1, module.cfg.n_sensors], length),
            _io("conditions", [-1, *cond["shape"]], cond["units"]),
            _io("points", [-1, -1, 2], length),
            _io("sdf", [-1, -1], length),
        ],
        "outputs": [_io("fields", [-1, *fields["shape"]], fields["units"], axes=fields["axes"])],
    }


def export(
    run_dir: str | Path,
    models_root: str | Path = "models",
    name: str | None = None,
    version: str | None = None,
    data_dir: str | Path | None = None,
    command: str = "",
    progress: bool = True,
) -> Path:
    run_dir = Path(run_dir)
    model, ckpt = load_model(run_dir, "cpu")
    data_cfg = ckpt["dataset_config"]
    name = name or problems.dataset_name(ckpt)
    data = Path(data_dir) if data_dir else Path("data") / problems.dataset_name(ckpt)
    problem = problems.problem_of(ckpt)
    box = json.loads(ckpt["dataset_attrs"]["box"])
    ensure_splits(problem, data_cfg, data, progress)
    split = problems.reference_split(data)
    with staged_version(models_root, name, version) as (tmp, version):
        export_graphs(model, tmp, split.polylines(0), split.encoder_points.shape[1], box)
        manifest = build_manifest(model, ckpt, split, name, version, command)
        for graph in manifest["graphs"].values():
            graph["sha256"] = sha256_file(tmp / graph["file"])
        _export_baseline(run_dir, tmp, manifest)
        write_json(tmp / "manifest.json", manifest)
        baseline = tmp / "baseline_deeponet.onnx"
        manifest["metrics"] = evaluate(
            OnnxEnf2Enf(tmp),
            data,
            problem,
            data_cfg,
            baseline if baseline.exists() else None,
            progress,
        )
        write_json(tmp / "manifest.json", manifest)
    return Path(models_root) / name / version
