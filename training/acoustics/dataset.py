"""Ground truth for the acoustic DeepONet: FDTD runs over a sweep of source positions.

Each split (train, val, test) is one HDF5 file: `sources` (S, dim), `receivers` (P, dim),
`times` (T,), `pressure` (S, T, P) in pascals, and a `done` flag per source; the physics,
solver settings and room are attributes. A split is written as `<split>.h5.partial` and
renamed when complete, so an interrupted run resumes from the sources already done and a
finished file is never half written.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from numpy.typing import NDArray
from tqdm import tqdm

from geometry.grids import grid_points, lattice_in_box
from geometry.rooms import Box, Room
from geometry.scenes import Scene, scene_from_spec
from geometry.voxels import VoxelScene
from training.acoustics.fdtd import FDTD
from training.acoustics.physics import Medium, impedance_from_absorption, pulse_sigma
from training.common.config import to_dict
from training.common.distributed import distributed, single_process

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# The first N_OFFGRID test sources heard at receivers between the training receivers (made on
# demand by evaluation): a trunk must answer anywhere, not only where it was trained.
OFFGRID = "test_offgrid"
N_OFFGRID = 8
EVAL_SPLITS = (OFFGRID,)  # made by the pipeline's generate stage too, on every rank


@dataclass
class PhysicsConfig:
    c: float = 343.0
    rho: float = 1.2
    fmax: float = 500.0
    absorption: float | None = 0.2  # normal-incidence absorption of every wall; None = rigid
    # The source: the Gaussian pulse tapered to zero at the walls over `source_taper` * sigma
    # (see training/acoustics/fdtd.py: what makes wall-touching pulses converge at second
    # order), or None for the bare Gaussian that the first shipped models were trained on.
    source_taper: float | None = None

    def __post_init__(self) -> None:
        if self.absorption is not None and not 0.0 < self.absorption <= 1.0:
            raise ValueError(f"absorption must be in (0, 1] or null, got {self.absorption}")
        if self.fmax <= 0 or self.c <= 0 or self.rho <= 0:
            raise ValueError("c, rho and fmax must be positive")

    @property
    def medium(self) -> Medium:
        return Medium(self.c, self.rho)

    @property
    def sigma(self) -> float:
        return pulse_sigma(self.fmax, self.c)

    @property
    def wavelength(self) -> float:
        return self.c / self.fmax

    @property
    def impedance(self) -> float | None:
        return (
            None
            if self.absorption is None
            else impedance_from_absorption(self.absorption, self.medium)
        )


@dataclass
class SolverConfig:
    points_per_wavelength: float = 20.0  # grid spacing = lambda_min / this
    courant: float = 0.95
    dtype: str = "float32"
    batch: int = 16  # sources marched together
    # Sources of each split solved again at twice the resolution to measure the data's own
    # discretisation error (`data_error`: the largest relative L2 difference among them).
    data_error_sources: int = 2

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"solver dtype must be float32 or float64, got {self.dtype}")


@dataclass
class OutputConfig:
    t_max: float = 0.05
    dt: float = 0.0005  # output time step (2 kHz, as the paper's data)
    receiver_spacing: float = 0.05  # receivers on a cell-centred grid of this spacing

    @property
    def n_times(self) -> int:
        return round(self.t_max / self.dt) + 1


@dataclass
class SourceConfig:
    region: dict[str, list[float]] = field(default_factory=dict)  # {"lo": [...], "hi": [...]}
    wall_margin: float = 0.3  # every source at least this far from any wall, metres
    train_spacing: float = 0.2  # training lattice spacing as a fraction of lambda_min
    n_val: int = 16
    n_test: int = 24
    seed: int = 0


@dataclass
class DatasetConfig:
    name: str
    # The room: a `Room` spec (box, l_shape, obstacle, explicit solids), or instead `scene`:
    # the path of a scene file (boxes with furniture and per-surface absorption, or a mesh
    # to voxelise; see geometry/scenes.py and training/acoustics/meshes.py) or a scene spec.
    room: dict[str, Any] = field(default_factory=dict)
    scene: str | dict[str, Any] | None = None
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    sources: SourceConfig = field(default_factory=SourceConfig)

    def __post_init__(self) -> None:
        if bool(self.room) == (self.scene is not None):
            raise ValueError("dataset: give exactly one of 'room' and 'scene'")

    def build_room(self) -> Room | Scene | VoxelScene:
        if self.scene is None:
            return Room.from_spec(self.room)
        if isinstance(self.scene, str):
            return _load_scene(self.scene)
        return scene_from_spec(self.scene)

    def source_region(self) -> Box:
        room = self.build_room()
        if self.sources.region:
            return Box.from_spec(self.sources.region)
        region = getattr(room, "source_region", None)
        return region if region is not None else room.bounds

    def fingerprint(self) -> str:
        """Hash of everything that determines the data, to refuse resuming a different sweep
        (a scene file counts by its content, not its path)."""
        fields = to_dict(self)
        if isinstance(self.scene, str):
            fields["scene"] = self.build_room().to_spec()
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


@functools.cache
def _load_scene(path: str) -> Scene | VoxelScene:
    """A scene file, read (and a mesh voxelised) once per process."""
    from training.acoustics.meshes import load_scene

    return load_scene(path)


def receivers_for(cfg: DatasetConfig, split: str = "train") -> NDArray[np.float64]:
    """A cell-centred grid of receivers in the air; for the off-grid split the same grid
    moved by half a step along every axis, so every receiver lies between training ones."""
    room = cfg.build_room()
    s = cfg.output.receiver_spacing
    counts = [max(1, round(length / s)) for length in room.size]
    step = [length / n for length, n in zip(room.size, counts, strict=True)]
    lo = [h / 2 for h in step]
    hi = [length - h / 2 for length, h in zip(room.size, step, strict=True)]
    if split == OFFGRID:
        lo, counts = [h for h in step], [max(1, n - 1) for n in counts]
        hi = [length - h for length, h in zip(room.size, step, strict=True)]
    pts = grid_points(lo, hi, counts)
    return pts[room.is_air(pts)]


def sources_for(cfg: DatasetConfig, split: str) -> NDArray[np.float64]:
    """Training: a lattice spaced train_spacing * lambda_min; val/test: seeded uniform draws."""
    if split == OFFGRID:
        return sources_for(cfg, "test")[:N_OFFGRID]
    room, region = cfg.build_room(), cfg.source_region()
    margin = cfg.sources.wall_margin
    if split == "train":
        pts = lattice_in_box(region, cfg.sources.train_spacing * cfg.physics.wavelength)
        return pts[room.wall_distance(pts) >= margin]
    n = cfg.sources.n_val if split == "val" else cfg.sources.n_test
    rng = np.random.default_rng([cfg.sources.seed, SPLITS.index(split)])
    out: list[NDArray[np.float64]] = []
    lo, hi = np.asarray(region.lo), np.asarray(region.hi)
    for _ in range(10_000):
        if len(out) >= n:
            break
        cand = rng.uniform(lo, hi, size=(4 * n, room.dim))
        out.extend(cand[room.wall_distance(cand) >= margin])
    if len(out) < n:
        raise ValueError(
            f"could not place {n} {split} sources in the source region with margin {margin}"
        )
    return np.asarray(out[:n])


def make_solver(cfg: DatasetConfig, device: str | torch.device = "cpu", refine: int = 1) -> FDTD:
    """The solver of the dataset; `refine` = 2 is the same grid with every cell halved."""
    dx = cfg.physics.wavelength / cfg.solver.points_per_wavelength
    return FDTD(
        cfg.build_room(),
        dx,
        medium=cfg.physics.medium,
        wall_impedance=cfg.physics.impedance,
        courant=cfg.solver.courant,
        device=device,
        dtype=getattr(torch, cfg.solver.dtype),
        refine=refine,
    )


def simulate(
    cfg: DatasetConfig, solver: FDTD, sources: NDArray[np.float64], receivers: NDArray[np.float64]
) -> NDArray[np.float32]:
    """Pressure (S, T, P) at the receivers for each source."""
    p0 = solver.gaussian_pulse(sources, cfg.physics.sigma, taper=cfg.physics.source_taper)
    res = solver.run(p0, cfg.output.dt, cfg.output.n_times, receivers=receivers)
    return res.pressure.float().cpu().numpy()


def split_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / f"{split}.h5"


def shard_path(data_dir: str | Path, split: str, rank: int, world: int) -> Path:
    return Path(data_dir) / f"{split}.shard{rank}-of-{world}.h5"


def data_error_indices(n_sources: int, n_check: int) -> NDArray[np.int64]:
    """Which sources of a split are solved again at twice the resolution: spread evenly."""
    n_check = min(n_check, n_sources)
    if n_check <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, n_sources - 1, n_check).round().astype(np.int64))


def measure_data_error(
    cfg: DatasetConfig,
    sources: NDArray[np.float64],
    receivers: NDArray[np.float64],
    coarse: NDArray[np.float32],
    device: str | torch.device = "cpu",
) -> NDArray[np.float64]:
    """Relative L2 (over times x receivers) of each source's data against the same source
    solved on the grid with every cell halved: the data's own discretisation error."""
    fine_solver = make_solver(cfg, device, refine=2)
    out = np.empty(len(sources))
    for i, src in enumerate(sources):
        fine = simulate(cfg, fine_solver, src[None], receivers)[0].astype(np.float64)  # (T, P)
        out[i] = np.linalg.norm(coarse[i] - fine) / np.linalg.norm(fine)
    return out


def generate_split(
    cfg: DatasetConfig,
    data_dir: str | Path,
    split: str,
    device: str = "cpu",
    progress: bool = True,
    command: str = "",
    sharded: bool = True,
) -> Path:
    """Write (or finish) one split; returns the path of the completed file.

    Under torchrun every rank solves a contiguous share of the sources into its own shard
    file (each resumable on its own); rank 0 then joins the shards in source order, measures
    the data error and renames the result. The data do not depend on the number of ranks.
    A caller making several splits holds one process group around them all
    (`training.common.distributed.distributed`), which this uses as it is: ranks that tear a
    group down and make another after rank 0's join have been seen to miss each other.
    `sharded=False` (one rank asking alone, e.g. evaluation under torchrun) makes no group, so
    it never waits for ranks that are not there.
    """
    final = split_path(data_dir, split)
    if final.exists():
        with h5py.File(final, "r") as f:
            if f.attrs.get("fingerprint") == cfg.fingerprint():
                return final
        raise FileExistsError(
            f"{final} was generated from a different config; delete it or choose another --out"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    sources = sources_for(cfg, split)
    receivers = receivers_for(cfg, split)
    # The off-grid split repeats test sources: their data error is the test split's.
    n_check = 0 if split == OFFGRID else cfg.solver.data_error_sources
    group = distributed(device) if sharded else nullcontext(single_process(device))
    with group as ctx:
        sweep = Sweep(cfg, split, sources, receivers, make_solver(cfg, ctx.device), command)
        if not ctx.enabled:
            partial = final.with_suffix(".h5.partial")
            _solve_into(partial, sweep, progress)
            _finish(cfg, partial, final, ctx.device, progress, n_check)
            return final
        mine = ctx.shard(len(sources))
        shard = shard_path(data_dir, split, ctx.rank, ctx.world_size)
        if not shard.exists():
            part = shard.with_suffix(".h5.partial")
            share = dataclasses.replace(sweep, sources=sources[mine])
            _solve_into(part, share, progress and ctx.is_main, offset=mine.start)
            os.replace(part, shard)
        ctx.barrier()
        if ctx.is_main:
            shards = [shard_path(data_dir, split, r, ctx.world_size) for r in range(ctx.world_size)]
            partial = final.with_suffix(".h5.partial")
            _join(shards, partial, sweep)
            _finish(cfg, partial, final, ctx.device, progress, n_check)
            for path in shards:
                path.unlink()
        ctx.barrier()
    return final


@dataclass(frozen=True)
class Sweep:
    """What a split file is made of: the sources to solve, where to listen, and how."""

    cfg: DatasetConfig
    split: str
    sources: NDArray[np.float64]  # (S, dim)
    receivers: NDArray[np.float64]  # (P, dim)
    solver: FDTD
    command: str


def _solve_into(partial: Path, sweep: Sweep, progress: bool, offset: int = 0) -> None:
    """Solve every source not yet done into `partial` (made or resumed), flushing per batch."""
    cfg, sources = sweep.cfg, sweep.sources
    f = _open_partial(partial, sweep)
    try:
        done = f["done"][...]
        todo = np.flatnonzero(~done)
        batch = max(1, cfg.solver.batch)
        desc = f"FDTD {cfg.name} {sweep.split}" + (
            f" [{offset}:{offset + len(sources)}]" if offset else ""
        )
        bar = tqdm(
            total=len(sources),
            initial=int(done.sum()),
            desc=desc,
            unit="src",
            disable=not progress,
        )
        for start in range(0, len(todo), batch):
            idx = todo[start : start + batch]
            f["pressure"][idx] = simulate(cfg, sweep.solver, sources[idx], sweep.receivers)
            f["done"][idx] = True
            f.flush()
            bar.update(len(idx))
        bar.close()
    finally:
        f.close()


def _join(shards: list[Path], partial: Path, sweep: Sweep) -> None:
    """Copy the ranks' shards, in rank order, into one split file."""
    partial.unlink(missing_ok=True)
    sources = sweep.sources
    f = _open_partial(partial, sweep)
    try:
        at = 0
        for path in shards:
            with h5py.File(path, "r") as part:
                n = len(part["sources"])
                if not np.array_equal(part["sources"][...], sources[at : at + n]):
                    raise RuntimeError(
                        f"{path} holds other sources than its share of {sweep.split}"
                    )
                for i in range(n):  # one source at a time: a 3-D shard need not fit in memory
                    f["pressure"][at + i] = part["pressure"][i]
                at += n
        if at != len(sources):
            raise RuntimeError(f"the shards of {sweep.split} hold {at} of {len(sources)} sources")
        f["done"][...] = True
    finally:
        f.close()


def _finish(
    cfg: DatasetConfig,
    partial: Path,
    final: Path,
    device: torch.device,
    progress: bool,
    n_check: int,
) -> None:
    """Measure the data error on `n_check` of the split's sources, then publish the file."""
    with h5py.File(partial, "r+") as f:
        if "data_error" not in f.attrs:
            idx = data_error_indices(len(f["sources"]), n_check)
            if progress and len(idx):
                print(
                    f"data error: {len(idx)} {f.attrs['split']} sources at twice the resolution",
                    flush=True,
                )
            errors = measure_data_error(
                cfg, f["sources"][...][idx], f["receivers"][...], f["pressure"][idx], device
            )
            f.attrs["data_error_sources"] = idx
            f.attrs["data_error_per_source"] = errors
            f.attrs["data_error"] = float(errors.max()) if len(errors) else math.nan
    os.replace(partial, final)


def _open_partial(path: Path, sweep: Sweep) -> h5py.File:
    cfg, sources, receivers, solver = sweep.cfg, sweep.sources, sweep.receivers, sweep.solver
    if path.exists():
        try:
            f = h5py.File(path, "r+")
            if (
                f.attrs.get("fingerprint") == cfg.fingerprint()
                and f["sources"].shape == sources.shape
            ):
                log.info(
                    "resuming %s: %d of %d sources done",
                    path,
                    int(f["done"][...].sum()),
                    len(sources),
                )
                return f
            f.close()
        except OSError:
            log.warning("%s is unreadable (interrupted mid-write); starting it again", path)
        path.unlink()
    f = h5py.File(path, "w")
    n_t = cfg.output.n_times
    dt, substeps = solver.step_plan(cfg.output.dt)
    f.create_dataset("sources", data=sources)
    f.create_dataset("receivers", data=receivers)
    f.create_dataset("times", data=np.arange(n_t) * cfg.output.dt)
    f.create_dataset(
        "pressure",
        shape=(len(sources), n_t, len(receivers)),
        dtype=np.float32,
        chunks=(1, n_t, len(receivers)),
    )
    f.create_dataset("done", data=np.zeros(len(sources), dtype=bool))
    attrs = {
        "fingerprint": cfg.fingerprint(),
        "config": json.dumps(to_dict(cfg)),
        "split": sweep.split,
        "room": json.dumps(cfg.build_room().to_spec()),
        "c": cfg.physics.c,
        "rho": cfg.physics.rho,
        "fmax": cfg.physics.fmax,
        "sigma": cfg.physics.sigma,
        "absorption": -1.0 if cfg.physics.absorption is None else cfg.physics.absorption,
        "impedance": math.inf if cfg.physics.impedance is None else cfg.physics.impedance,
        "solver": "staggered-grid FDTD, 2nd order in space and time",
        "solver_grid": list(solver.shape),
        "solver_spacing": list(solver.spacing),
        "solver_dt": dt,
        "solver_substeps": substeps,
        "output_dt": cfg.output.dt,
        "command": sweep.command,
    }
    for key, value in attrs.items():
        f.attrs[key] = value
    return f


@dataclass
class AcousticSplit:
    """One split in memory."""

    sources: NDArray[np.float64]  # (S, dim)
    receivers: NDArray[np.float64]  # (P, dim)
    times: NDArray[np.float64]  # (T,)
    pressure: NDArray[np.float32]  # (S, T, P)
    attrs: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.attrs["config"])


def load_split(data_dir: str | Path, split: str) -> AcousticSplit:
    path = split_path(data_dir, split)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: run `python -m training generate acoustics` first"
        )
    with h5py.File(path, "r") as f:
        return AcousticSplit(
            sources=f["sources"][...],
            receivers=f["receivers"][...],
            times=f["times"][...],
            pressure=f["pressure"][...],
            attrs=dict(f.attrs),
        )
