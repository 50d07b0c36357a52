"""Ground truth for enf2enf on the Geo-FNO elasticity cell: one FEM solve per sample.

Each sample is a random void (training.elasticity.voids) in the unit cell and a load drawn
uniformly from `load`; the fields are von Mises stress and displacement at the vertices of the
sample's own graded mesh (so the point count varies). Samples depend only on (seed, split,
index): a split is written resumably with the project's geometry-dataset format
(training.geometry_data.format), solves run on a process pool, and the parent writes them in
order.

The test split also holds each sample solved on a mesh with half the element size (about 4x
the vertices) as its dense point set: the super-resolution check, and the data's own error
(`data_error`: the coarse fields against the fine solution interpolated at the coarse
vertices, with and without disks of `singular_radius` around the clamped corners).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from training.common.config import to_dict
from training.elasticity.fem import MU, NewtonParams, Solution, SolverError, evaluate, solve
from training.elasticity.mesh import MeshParams, mesh_cell
from training.elasticity.voids import VoidParams, random_void
from training.geometry_data.format import (
    Capacity,
    GeometryDataError,
    Sample,
    Schema,
    Writer,
    existing,
    split_path,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MAX_REDRAWS = 5
TEST_SPLITS = ("test",)
DESCRIPTION = (
    "2-D hyperelastic unit cell with a central void (the Geo-FNO elasticity setting, "
    "nearly incompressible Mooney-Rivlin, plane strain, mixed P2-P1 FEM): von Mises stress and "
    "displacement anywhere in the cell, for a void shape and a top traction"
)
SINGULAR_POINTS = ((0.0, 0.0), (1.0, 0.0))  # where the clamped bottom meets the free sides
ERROR_COLUMNS = ("von_mises", "von_mises_no_corners", "displacement", "displacement_no_corners")

SCHEMA = Schema(
    problem="elasticity",
    field_names=("von_mises", "ux", "uy"),
    field_units=("Pa", "cell length", "cell length"),
    condition_names=("load",),
    condition_units=("Pa",),
    length_unit="cell length",  # the unit cell's side: the fields are scale-free in it
    box=((0.0, 1.0), (0.0, 1.0)),
    box_is_domain=True,
    solver=(
        "plane-strain nearly incompressible Mooney-Rivlin (c1=1.863e5, c2=9.79e3 Pa, "
        "kappa=500 mu), Taylor-Hood P2-P1 FEM (scikit-fem) on graded gmsh meshes, Newton with "
        "line search; bottom clamped, uniform dead traction on top"
    ),
)

Range = tuple[float, float]


@dataclass
class DatasetConfig:
    name: str
    n_train: int = 2000
    n_val: int = 100
    n_test: int = 200
    # the void: r(theta) = r0 + dr / (1 + exp(g(theta))), g a periodic GRF (see voids.py)
    centre: tuple[float, float] = (0.5, 0.5)
    r0: float = 0.2
    dr: float = 0.2
    grf_scale: float = 2.0
    grf_tau: float = 3.0
    grf_alpha: float = 2.5
    n_modes: int = 12
    n_void_points: int = 128
    load: Range = (1.0e4, 1.2e5)  # Pa, top traction; mu = 3.92e5
    # graded mesh (cell lengths); the test split's dense set uses dense_factor x these sizes
    h_min: float = 0.015
    h_max: float = 0.05
    grade_start: float = 0.02
    grade_end: float = 0.3
    dense_factor: float = 0.5
    max_points_margin: float = 1.5  # padding over the largest probe mesh
    singular_radius: float = 0.05  # disks around SINGULAR_POINTS left out of "no_corners" errors
    n_encoder: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        self.centre = (float(self.centre[0]), float(self.centre[1]))
        lo, hi = (float(v) for v in self.load)
        if not 0 < lo <= hi:
            raise ValueError(f"load range must satisfy 0 < lo <= hi, got {self.load}")
        self.load = (lo, hi)
        for key in ("n_train", "n_val", "n_test"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if not 0 < self.dense_factor < 1:
            raise ValueError(f"dense_factor must be in (0, 1), got {self.dense_factor}")
        if self.max_points_margin < 1:
            raise ValueError(f"max_points_margin must be >= 1, got {self.max_points_margin}")
        self.void_params()  # validates the void parameters
        self.mesh_params()

    def void_params(self) -> VoidParams:
        return VoidParams(
            centre=self.centre, r0=self.r0, dr=self.dr, grf_scale=self.grf_scale,
            grf_tau=self.grf_tau, grf_alpha=self.grf_alpha, n_modes=self.n_modes,
            n_points=self.n_void_points,
        )  # fmt: skip

    def mesh_params(self) -> MeshParams:
        return MeshParams(self.h_min, self.h_max, self.grade_start, self.grade_end)

    def count(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
        return int(getattr(self, f"n_{split}"))

    def fingerprint(self) -> str:
        """Hash of everything that determines the data, to refuse resuming a different sweep."""
        blob = json.dumps(to_dict(self), sort_keys=True).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


def void_range(cfg: DatasetConfig) -> dict[str, Any]:
    """The shapes and loads the data covers (for out-of-range warnings)."""
    return {
        "centre": list(cfg.centre),
        "r_min": cfg.r0,
        "r_max": cfg.r0 + cfg.dr,
        "n_void_points": cfg.n_void_points,
        "load": list(cfg.load),
    }


def shape_range(cfg: DatasetConfig) -> dict[str, Any]:
    """The trained shapes as the service's manifest states them: voids star-shaped about the
    centre, radii in [r0, r0 + dr]."""
    return {"kind": "star", "center": list(cfg.centre), "radius": [cfg.r0, cfg.r0 + cfg.dr]}


def sample_case(
    cfg: DatasetConfig, split: str, index: int, attempt: int = 0
) -> tuple[NDArray[np.float64], float]:
    """(void polyline, load) of one sample; depends only on (seed, split, index) and, for a
    redraw after a failed solve, the attempt."""
    key = [cfg.seed, SPLITS.index(split), index] + ([attempt] if attempt else [])
    rng = np.random.default_rng(key)
    void = random_void(cfg.void_params(), rng)
    return void, float(rng.uniform(*cfg.load))


def _corner_mask(points: NDArray[Any], radius: float) -> NDArray[np.bool_]:
    """True away from the singular corners."""
    far = np.ones(len(points), dtype=bool)
    for c in SINGULAR_POINTS:
        far &= np.hypot(points[:, 0] - c[0], points[:, 1] - c[1]) > radius
    return far


def _rel(a: NDArray[Any], b: NDArray[Any]) -> float:
    return float(np.linalg.norm(a - b)) / max(float(np.linalg.norm(b)), 1e-300)


def data_error(coarse: Solution, fine: Solution, radius: float) -> NDArray[np.float64]:
    """ERROR_COLUMNS: rel L2 of the coarse fields against the fine FE solution at the coarse
    vertices (fine P1 von Mises and P2 displacement interpolated exactly there)."""
    vm_f, u_f = evaluate(fine, coarse.nodes)
    far = _corner_mask(coarse.nodes, radius)
    vm_c, u_c = coarse.von_mises, coarse.displacement
    return np.array(
        [
            _rel(vm_c, vm_f),
            _rel(vm_c[far], vm_f[far]),
            _rel(u_c, u_f),
            _rel(u_c[far], u_f[far]),
        ]
    )


def _fields(sol: Solution) -> NDArray[np.float64]:
    return np.column_stack([sol.von_mises, sol.displacement])


def simulate(cfg: DatasetConfig, split: str, index: int) -> dict[str, Any]:
    """Everything the parent writes for one sample (runs in a worker). A case whose Newton
    solve fails even with load steps (a thin ligament at the top of the load range: about 1
    in 300 at 1.2e5 Pa) is redrawn from the sample's own stream, deterministically, and the
    redraw is counted."""
    for attempt in range(MAX_REDRAWS + 1):
        try:
            out = _simulate_case(cfg, split, index, attempt)
        except SolverError:
            if attempt == MAX_REDRAWS:
                raise
            continue
        out["redraws"] = attempt
        return out
    raise AssertionError("unreachable")


def _simulate_case(cfg: DatasetConfig, split: str, index: int, attempt: int) -> dict[str, Any]:
    void, load = sample_case(cfg, split, index, attempt)
    newton = NewtonParams()
    coarse = solve(void, load, cfg.mesh_params(), newton=newton)
    out: dict[str, Any] = {
        "void": void,
        "load": load,
        "points": coarse.nodes,
        "fields": _fields(coarse),
        "seconds": np.array([coarse.seconds + coarse.mesh_seconds, np.nan]),
        "newton_iterations": len(coarse.residuals),
    }
    if split == "test":
        fine = solve(void, load, cfg.mesh_params().scaled(cfg.dense_factor), newton=newton)
        out.update(
            dense_points=fine.nodes,
            dense_fields=_fields(fine),
            data_error=data_error(coarse, fine, cfg.singular_radius),
        )
        out["seconds"][1] = fine.seconds + fine.mesh_seconds
    return out


def _simulate_args(args: tuple[DatasetConfig, str, int]) -> dict[str, Any]:
    return simulate(*args)


def capacity(cfg: DatasetConfig, split: str) -> Capacity:
    """Padded sizes: the largest of a few probe meshes (voids from a generator of their own,
    smallest and largest radius included) times max_points_margin."""
    vp = cfg.void_params()
    rng = np.random.default_rng([cfg.seed, 1000])
    probes = [random_void(vp, rng) for _ in range(6)]
    counts = [len(mesh_cell(v, cfg.mesh_params()).vertices) for v in probes]
    dense = 0
    if split == "test":
        fine = cfg.mesh_params().scaled(cfg.dense_factor)
        dense = int(cfg.max_points_margin * max(len(mesh_cell(v, fine).vertices) for v in probes))
    return Capacity(
        max_polylines=1,
        max_vertices=cfg.n_void_points,
        max_points=int(cfg.max_points_margin * max(counts)),
        n_encoder=cfg.n_encoder,
        max_dense=dense,
    )


_EXTRA: dict[str, tuple[tuple[int, ...], Any]] = {
    "solve_seconds": ((2,), np.float64),  # coarse, fine (NaN off the test split)
    "newton_iterations": ((), np.int32),
    "data_error": ((len(ERROR_COLUMNS),), np.float64),  # NaN off the test split
}


def _previous_extras(path: Path) -> dict[str, NDArray[Any]]:
    """Per-sample extras of a partial file being resumed (for the split's summary attributes)."""
    if not path.exists():
        return {}
    try:
        with h5py.File(path, "r") as f:
            return {k: f["extra"][k][...] for k in _EXTRA if k in f.get("extra", {})}
    except (OSError, KeyError):
        return {}


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _results(
    cfg: DatasetConfig, split: str, todo: list[int], workers: int
) -> Iterator[dict[str, Any]]:
    """simulate() of each index in `todo`, in order."""
    jobs = [(cfg, split, i) for i in todo]
    if workers <= 1 or len(todo) <= 1:
        yield from map(_simulate_args, jobs)
        return
    # spawn: workers start clean (no inherited HDF5 handle, gmsh state or thread pools), and
    # with one BLAS/OpenMP thread each, as the pool already fills the cores (the variables are
    # set while the pool lives: it starts its workers on demand)
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        spawn = mp.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=spawn) as pool:
            yield from pool.map(_simulate_args, jobs, chunksize=1)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def generate_split(
    cfg: DatasetConfig,
    data_dir: str | Path,
    split: str,
    device: str = "cpu",  # accepted for the CLI's sake: the FEM runs on CPU
    progress: bool = True,
    command: str = "",
    workers: int | None = None,
) -> Path:
    """Write (or finish) one split; returns the path of the completed file."""
    del device
    n = cfg.count(split)
    final = split_path(data_dir, split)
    if existing(final, cfg.fingerprint()):
        return final
    previous = _previous_extras(final.with_suffix(".h5.partial"))
    cap = capacity(cfg, split)
    role = split
    t_start = time.perf_counter()
    with Writer(
        data_dir, split, role, SCHEMA, n, cap,
        fingerprint=cfg.fingerprint(), config=to_dict(cfg), command=command, extra=_EXTRA,
    ) as writer:  # fmt: skip
        done = writer.done
        extras = {k: np.full((n, *shape), np.nan) for k, (shape, _) in _EXTRA.items()}
        for k, values in previous.items():
            if len(values) == n:
                extras[k][done] = values[done]
        todo = [int(i) for i in np.flatnonzero(~done)]
        bar = tqdm(
            total=n, initial=n - len(todo), desc=f"fem {cfg.name} {split}", unit="sample",
            disable=not progress,
        )  # fmt: skip
        results = _results(cfg, split, todo, workers or os.cpu_count() or 1)
        redrawn = []
        for i, res in zip(todo, results, strict=True):
            if res["redraws"]:
                log.warning(
                    "%s sample %d: Newton failed, redrawn %d time(s)", split, i, res["redraws"]
                )
                redrawn.append(i)
            _check_fits(res, cap, split, i)
            sample = Sample(
                polylines=[res["void"]],
                conditions=np.array([res["load"]]),
                points=res["points"],
                fields=res["fields"],
                dense_points=res.get("dense_points"),
                dense_fields=res.get("dense_fields"),
                extra={
                    "solve_seconds": res["seconds"],
                    "newton_iterations": np.asarray(res["newton_iterations"], dtype=np.int32),
                    "data_error": res.get("data_error", np.full(len(ERROR_COLUMNS), np.nan)),
                },
            )
            writer.write(i, sample)
            extras["solve_seconds"][i] = res["seconds"]
            extras["newton_iterations"][i] = res["newton_iterations"]
            if "data_error" in res:
                extras["data_error"][i] = res["data_error"]
            bar.update(1)
            bar.set_postfix(s_per_sample=f"{res['seconds'][0]:.2f}")
        bar.close()
        _summarise(writer, cfg, split, extras)
        # (Counted by the run that solved them: a resumed split counts its last run's only.)
        writer.set_attr("redrawn_samples", redrawn)
        log.info("%s: %d samples in %.1f s", split, len(todo), time.perf_counter() - t_start)
        return writer.finish()


def _check_fits(res: dict[str, Any], cap: Capacity, split: str, index: int) -> None:
    for key, limit in (("points", cap.max_points), ("dense_points", cap.max_dense)):
        if key in res and len(res[key]) > limit:
            raise GeometryDataError(
                f"{split} sample {index}: its mesh has {len(res[key])} vertices ({key}), the "
                f"split was sized for {limit}; raise max_points_margin in the dataset config"
            )


def _summarise(
    writer: Writer, cfg: DatasetConfig, split: str, extras: dict[str, NDArray[Any]]
) -> None:
    """Split-level attributes: solve times, Newton counts, and (test) the data's own error."""
    secs = extras["solve_seconds"]
    seconds: dict[str, Any] = {
        "coarse_mean": float(np.nanmean(secs[:, 0])),
        "coarse_max": float(np.nanmax(secs[:, 0])),
        "note": "per sample, one core, meshing included",
    }
    if split == "test":
        seconds["fine_mean"] = float(np.nanmean(secs[:, 1]))
        seconds["fine_max"] = float(np.nanmax(secs[:, 1]))
    writer.set_attr("solve_seconds", seconds)
    writer.set_attr("newton_iterations_mean", float(np.mean(extras["newton_iterations"])))
    writer.set_attr("singular_points", [list(p) for p in SINGULAR_POINTS])
    writer.set_attr("singular_radius", cfg.singular_radius)
    writer.set_attr("shear_modulus", MU)
    writer.set_attr("void_range", void_range(cfg))
    if split == "test":
        err = extras["data_error"]
        writer.set_attr(
            "data_error",
            {
                "reference": (
                    f"the same samples on meshes with {cfg.dense_factor}x the element size, "
                    "interpolated at the coarse vertices"
                ),
                "metric": "relative L2 over the vertices, per sample",
                "singular_radius": cfg.singular_radius,
                **{
                    name: {"mean": float(np.mean(err[:, k])), "max": float(np.max(err[:, k]))}
                    for k, name in enumerate(ERROR_COLUMNS)
                },
            },
        )
