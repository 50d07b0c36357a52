"""Export a trained acoustic DeepONet as factored ONNX graphs plus a manifest.

The version folder is assembled under a temporary name and renamed into place only when the
graphs, their hashes and the evaluated metrics are all written: a reader of `models/` never
sees half a version.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from geometry.rooms import Room
from geometry.scenes import Scene
from geometry.voxels import VoxelScene
from training.acoustics.checkpoint import deeponet_from, read_checkpoint
from training.acoustics.dataset import SPLITS, DatasetConfig, split_path
from training.acoustics.evaluate import OnnxDeepONet, evaluate
from training.acoustics.graphs import OPSET, export_factors, external_files
from training.acoustics.model import BranchGraph, DeepONet, TrunkGraph
from training.acoustics.pod import PodFit, export_pod_graphs, pod_from
from training.common.config import from_dict, to_dict
from training.common.files import sha256_file, write_json
from training.common.versions import staged_version


def export_graphs(model: DeepONet, out_dir: Path) -> None:
    export_factors(BranchGraph(model), TrunkGraph(model), model.cfg.room_size, out_dir)


def _walls(room: Room | Scene | VoxelScene, absorption: float | None) -> str:
    if isinstance(room, Room):
        return f"walls absorbing {absorption}"
    return "absorption per surface: " + ", ".join(
        f"{name} {alpha:g}" for name, alpha in sorted(room.materials.items())
    )


def _room_spec(room: Room | Scene | VoxelScene) -> dict[str, Any]:
    """A scene travels whole (furniture, materials, voxels), so the service checks requests
    against it; the room's size stays under `room` for readers that know only that."""
    if isinstance(room, Room):
        return {"room": room.to_spec()}
    return {"scene": room.to_spec(), "room": {"name": room.name, "size": list(room.size)}}


@dataclass(frozen=True)
class Graphs:
    """What differs between the two kinds of acoustic DeepONet in their manifests."""

    dim: int
    k: int  # columns of both factors: p basis functions + the bias column
    branch_computes: str
    trunk_computes: str
    training: dict[str, Any]


def deeponet_graphs(model: DeepONet, ckpt: dict[str, Any]) -> Graphs:
    state = ckpt["state"]
    return Graphs(
        dim=model.cfg.dim,
        k=model.cfg.n_basis + 1,
        branch_computes="source position -> pressure coefficients p_scale * [B_1..B_p, b0]",
        trunk_computes="space-time points -> basis functions [T_1..T_p, 1]",
        training={
            "kind": "deeponet",
            "steps": state["step"],
            "seconds": round(state["seconds"], 1),
            "best_val_rel_l2": state["best_val"],
            "model": to_dict(model.cfg),
            "train": ckpt["train_config"],
        },
    )


def pod_graphs(fit: PodFit, ckpt: dict[str, Any]) -> Graphs:
    state = ckpt["state"]
    return Graphs(
        dim=fit.config.dim,
        k=fit.config.n_modes + 1,
        branch_computes=(
            "source position -> POD coefficients [c_1..c_p, 0] (Pa): a thin-plate spline over "
            "the training sources"
        ),
        trunk_computes=(
            "space-time points -> POD modes [phi_1..phi_p, 1], interpolated from a table on "
            "the training receiver grid (multilinear) x output times "
            f"({fit.config.time_interpolation})"
        ),
        training={
            "kind": "pod",
            "steps": 0,
            "seconds": round(state["seconds"], 1),
            "best_val_rel_l2": state["best_val"],
            "model": to_dict(fit.config),
            "report": fit.report,
        },
    )


def build_manifest(
    graphs: Graphs, ckpt: dict[str, Any], name: str, version: str, command: str
) -> dict[str, Any]:
    data = from_dict(DatasetConfig, ckpt["dataset_config"], "dataset")
    room = data.build_room()
    region = data.source_region()
    dim, k = graphs.dim, graphs.k
    axes = ["x", "y", "z"][:dim]
    state = ckpt["state"]
    return {
        "name": name,
        "version": version,
        "family": "deeponet",
        "task": "acoustics",
        "description": (
            f"Sound pressure of a Gaussian pulse source anywhere in a {dim}-D "
            f"{room.name} room ({_walls(room, data.physics.absorption)}), "
            f"t in [0, {data.output.t_max}] s, up to {data.physics.fmax:g} Hz"
        ),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "graphs": {
            "branch": {
                "file": "branch.onnx",
                "computes": graphs.branch_computes,
                "inputs": [
                    {
                        "name": "source",
                        "dtype": "float32",
                        "shape": [-1, dim],
                        "units": "m",
                        "axes": axes,
                    }
                ],
                "outputs": [
                    {"name": "coefficients", "dtype": "float32", "shape": [-1, k], "units": "Pa"}
                ],
            },
            "trunk": {
                "file": "trunk.onnx",
                "computes": graphs.trunk_computes,
                "inputs": [
                    {
                        "name": "points",
                        "dtype": "float32",
                        "shape": [-1, dim + 1],
                        "units": ["m"] * dim + ["s"],
                        "axes": [*axes, "t"],
                    }
                ],
                "outputs": [{"name": "basis", "dtype": "float32", "shape": [-1, k], "units": "1"}],
            },
        },
        "compose": "pressure[s, n] = sum_k coefficients[s, k] * basis[n, k]",
        "outputs": [{"name": "pressure", "dtype": "float32", "shape": [-1, -1], "units": "Pa"}],
        "domain": {
            "dim": dim,
            **_room_spec(room),
            "source_region": region.to_spec(),
            "wall_margin": data.sources.wall_margin,
            "time_window": [0.0, data.output.t_max],
            "trained_time_step": data.output.dt,
            "trained_receiver_spacing": data.output.receiver_spacing,
            "fmax": data.physics.fmax,
            "c": data.physics.c,
            "rho": data.physics.rho,
            "source_sigma": data.physics.sigma,
            "wall_absorption": data.physics.absorption,
            "wall_impedance": data.physics.impedance,
        },
        "metrics": {},
        "training": {**graphs.training, "dataset": ckpt["dataset_config"]},
        "commands": {
            "generate": ckpt.get("data_command", ""),
            "train": state["commands"],
            "export": command,
        },
        "opset": OPSET,
    }


def data_errors(data_dir: Path) -> dict[str, Any]:
    """Each split's own discretisation error (relative L2 against twice the resolution),
    as the generator measured it."""
    out: dict[str, Any] = {}
    for split in SPLITS:
        path = split_path(data_dir, split)
        if not path.exists():
            continue
        with h5py.File(path, "r") as f:
            if "data_error" in f.attrs:
                out[split] = {
                    "max": float(f.attrs["data_error"]),
                    "per_source": [float(e) for e in f.attrs["data_error_per_source"]],
                    "sources": len(f.attrs["data_error_per_source"]),
                }
    if out:
        out["max"] = max(v["max"] for v in out.values())
    out["meaning"] = (
        "relative L2 over receivers x times of the data against the same sources solved with "
        "every grid cell halved"
    )
    return out


def export(
    run_dir: str | Path,
    models_root: str | Path = "models",
    name: str | None = None,
    version: str | None = None,
    data_dir: str | Path | None = None,
    command: str = "",
    progress: bool = True,
) -> Path:
    ckpt = read_checkpoint(run_dir)
    data_cfg = from_dict(DatasetConfig, ckpt["dataset_config"], "dataset")
    name = name or data_cfg.name
    with staged_version(models_root, name, version) as (tmp, version):
        if ckpt.get("kind") == "pod":
            fit = pod_from(ckpt)
            export_pod_graphs(fit, tmp)
            graphs = pod_graphs(fit, ckpt)
        else:
            model = deeponet_from(ckpt, best=True)
            export_graphs(model, tmp)
            graphs = deeponet_graphs(model, ckpt)
        # The training figures travel with the version, so a user sees how it was trained.
        for figure in ("loss.png", "field.png"):
            if (Path(run_dir) / figure).exists():
                shutil.copyfile(Path(run_dir) / figure, tmp / figure)
        manifest = build_manifest(graphs, ckpt, name, version, command)
        for graph in manifest["graphs"].values():
            graph["sha256"] = sha256_file(tmp / graph["file"])
            files = external_files(tmp / graph["file"])
            if files:
                graph["data"] = {f: sha256_file(tmp / f) for f in files}
        write_json(tmp / "manifest.json", manifest)
        data = Path(data_dir) if data_dir else Path("data") / data_cfg.name
        manifest["metrics"] = evaluate(OnnxDeepONet(tmp), data, data_cfg, progress=progress)
        manifest["data_error"] = data_errors(data)
        write_json(tmp / "manifest.json", manifest)
    return Path(models_root) / name / version
