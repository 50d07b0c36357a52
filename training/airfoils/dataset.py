"""Ground truth for enf2enf: Hess-Smith panel solutions around NACA sections and slotted flaps.

Each split is one HDF5 file written as `<split>.h5.partial` and renamed when complete; samples
are drawn from their own seeded generator (seed, split, index), so an interrupted run resumes
where it stopped and gives the same file as an uninterrupted one. `train` and `val` hold the
single-element samples first, then the two-element ones; `test` is single-element only and
`test_multi` two-element only, and both test splits also carry a dense point set
(superres_factor times n_field points from the same distribution) for the super-resolution
check.

Per sample s (K = panels_per_element, N = n_field, M = n_encoder):
  surfaces (S, 2, K+1, 2) f8   closed clockwise polylines from the trailing edge (element 1
                               NaN for single-element samples); n_elements (S,) i4
  conditions (S, 2) f4         [aoa_deg, speed]
  params (S, P) f8             PARAM_COLUMNS; the flap columns are NaN without a flap
  points (S, N, 2) f4, sdf (S, N) f4, fields (S, N, 3) f4 = [u, v, cp]
  dense_points / dense_sdf / dense_fields   the same with superres_factor * N (test splits only)
  encoder_points (S, M, 2) f4, encoder_sdf (S, M) f4   geometry.airfoils.encoder_points(seed=0)
  surface_cp (S, 2, K) f4      Cp at panel midpoints (NaN-padded); cl (S,) f8 (Kutta-Joukowski,
                               per reference chord 1); done (S,) bool
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from geometry.airfoils import (
    BOX,
    NEAR_WALL_OFFSETS,
    encoder_points,
    field_points,
    naca4,
    signed_distance,
    two_element,
)
from training.airfoils.panel import solve
from training.common.config import to_dict

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "test_multi")
TEST_SPLITS = ("test", "test_multi")
FIELD_COLUMNS = ("u", "v", "cp")
CONDITION_COLUMNS = ("aoa_deg", "speed")
PARAM_COLUMNS = (
    "main_chord",  # 1 for a single section, 1 - flap_chord with a flap
    "m",
    "p",
    "t",
    "flap_chord",
    "flap_m",
    "flap_p",
    "flap_t",
    "flap_deflection_deg",
    "flap_gap",
    "flap_overlap",
)

Range = tuple[float, float]


def _range(value: Any, name: str) -> Range:
    lo, hi = (float(v) for v in value)
    if not lo <= hi:
        raise ValueError(f"{name} range must have lo <= hi, got {value}")
    return lo, hi


@dataclass
class DatasetConfig:
    name: str
    # Sample counts per split and kind (single-element, two-element).
    n_train_single: int = 500
    n_train_multi: int = 150
    n_val_single: int = 50
    n_val_multi: int = 25
    n_test: int = 100  # single-element only
    n_test_multi: int = 50  # two-element only
    panels_per_element: int = 160
    n_field: int = 2048  # training density
    superres_factor: int = 4  # test splits also store superres_factor * n_field points
    n_encoder: int = 1024
    box: tuple[Range, Range] = BOX
    near_wall_fraction: float = 0.5
    wall_offsets: Range = NEAR_WALL_OFFSETS  # log-uniform normal offsets of near-wall points
    m: Range = (0.0, 0.06)
    p: Range = (0.2, 0.6)
    t: Range = (0.08, 0.20)
    aoa_deg: Range = (-5.0, 12.0)
    speed: Range = (0.5, 1.5)
    flap_chord: Range = (0.25, 0.35)
    flap_deflection_deg: Range = (0.0, 20.0)
    flap_gap: Range = (0.01, 0.04)
    flap_overlap: Range = (0.0, 0.03)
    seed: int = 0

    def __post_init__(self) -> None:
        # Plain floats in tuples: a YAML [-5, 12] and the default (-5.0, 12.0) must give the
        # same fingerprint.
        for name in (
            "wall_offsets",
            "m",
            "p",
            "t",
            "aoa_deg",
            "speed",
            "flap_chord",
            "flap_deflection_deg",
            "flap_gap",
            "flap_overlap",
        ):
            setattr(self, name, _range(getattr(self, name), name))
        self.box = (_range(self.box[0], "box x"), _range(self.box[1], "box y"))
        counts = {
            "n_train_single": self.n_train_single,
            "n_train_multi": self.n_train_multi,
            "n_val_single": self.n_val_single,
            "n_val_multi": self.n_val_multi,
            "n_test": self.n_test,
            "n_test_multi": self.n_test_multi,
        }
        for key, value in counts.items():
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
        for split in SPLITS:
            if sum(self.counts(split)) == 0:
                raise ValueError(f"split {split!r} would hold no samples")
        if self.panels_per_element < 8 or self.panels_per_element % 2:
            raise ValueError(
                f"panels_per_element must be even and >= 8, got {self.panels_per_element}"
            )
        for key in ("n_field", "superres_factor", "n_encoder"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.near_wall_fraction <= 1.0:
            raise ValueError(f"near_wall_fraction must be in [0, 1], got {self.near_wall_fraction}")
        if self.speed[0] <= 0:
            raise ValueError(f"speed must be positive, got range {self.speed}")
        if self.wall_offsets[0] <= 0:
            raise ValueError(f"wall_offsets must be positive, got {self.wall_offsets}")
        if self.m[0] < 0 or self.m[1] > 0.095 or self.t[0] <= 0 or self.t[1] > 0.4:
            raise ValueError("sections need m in [0, 0.095] and t in (0, 0.4]")
        if self.p[0] < 0.05 or self.p[1] > 0.95:
            raise ValueError(f"camber position p must be within [0.05, 0.95], got {self.p}")

    def counts(self, split: str) -> tuple[int, int]:
        """(single-element, two-element) sample counts of a split."""
        table = {
            "train": (self.n_train_single, self.n_train_multi),
            "val": (self.n_val_single, self.n_val_multi),
            "test": (self.n_test, 0),
            "test_multi": (0, self.n_test_multi),
        }
        if split not in table:
            raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
        return table[split]

    def fingerprint(self) -> str:
        """Hash of everything that determines the data, to refuse resuming a different sweep."""
        blob = json.dumps(to_dict(self), sort_keys=True).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


@dataclass
class Sample:
    polylines: list[NDArray[np.float64]]
    params: NDArray[np.float64]  # (P,)
    conditions: NDArray[np.float64]  # (2,) [aoa_deg, speed]


def sample_case(cfg: DatasetConfig, split: str, index: int) -> Sample:
    """The geometry and conditions of one sample; depends only on (seed, split, index)."""
    rng = _sample_rng(cfg, split, index)
    n_single, _ = cfg.counts(split)
    params = np.full(len(PARAM_COLUMNS), np.nan)
    main = tuple(rng.uniform(*r) for r in (cfg.m, cfg.p, cfg.t))
    params[1:4] = main
    if index < n_single:
        polylines = [naca4(main, cfg.panels_per_element)]
        params[0] = 1.0
    else:
        flap = tuple(rng.uniform(*r) for r in (cfg.m, cfg.p, cfg.t))
        chord, deflection, gap, overlap = (
            rng.uniform(*r)
            for r in (cfg.flap_chord, cfg.flap_deflection_deg, cfg.flap_gap, cfg.flap_overlap)
        )
        polylines = two_element(main, flap, chord, deflection, gap, cfg.panels_per_element, overlap)
        params[0] = 1.0 - chord
        params[4] = chord
        params[5:8] = flap
        params[8:] = (deflection, gap, overlap)
    conditions = np.array([rng.uniform(*cfg.aoa_deg), rng.uniform(*cfg.speed)])
    return Sample(polylines, params, conditions)


def _sample_rng(cfg: DatasetConfig, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, SPLITS.index(split), index])


def simulate(cfg: DatasetConfig, split: str, index: int) -> dict[str, NDArray[Any]]:
    """Every per-sample array of one sample (float64; the writer casts)."""
    case = sample_case(cfg, split, index)
    sol = solve(case.polylines, aoa_deg=case.conditions[0], speed=case.conditions[1])
    # Field points come from a generator of their own, after the case's draws, so changing how
    # points are drawn never changes the geometry of a sample.
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split), index, 1])
    out: dict[str, NDArray[Any]] = {}
    sets = [("", cfg.n_field)]
    if split in TEST_SPLITS:
        sets.append(("dense_", cfg.superres_factor * cfg.n_field))
    for prefix, n in sets:
        pts = field_points(
            case.polylines, n, cfg.box, cfg.near_wall_fraction, rng, cfg.wall_offsets
        )
        out[f"{prefix}points"] = pts
        out[f"{prefix}sdf"] = signed_distance(pts, case.polylines)
        out[f"{prefix}fields"] = sol.fields(pts)
    enc, enc_sdf = encoder_points(case.polylines, cfg.n_encoder, cfg.box, seed=0)
    k = cfg.panels_per_element
    surfaces = np.full((2, k + 1, 2), np.nan)
    surface_cp = np.full((2, k), np.nan)
    for e, poly in enumerate(case.polylines):
        surfaces[e] = poly
        surface_cp[e] = sol.surface_cp[e * k : (e + 1) * k]
    out.update(
        surfaces=surfaces,
        n_elements=np.asarray(len(case.polylines)),
        conditions=case.conditions,
        params=case.params,
        encoder_points=enc,
        encoder_sdf=enc_sdf,
        surface_cp=surface_cp,
        cl=np.asarray(sol.cl),
    )
    return out


def split_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / f"{split}.h5"


def generate_split(
    cfg: DatasetConfig,
    data_dir: str | Path,
    split: str,
    device: str = "cpu",  # accepted for the CLI's sake: the panel method is numpy
    progress: bool = True,
    command: str = "",
) -> Path:
    """Write (or finish) one split; returns the path of the completed file."""
    del device
    final = split_path(data_dir, split)
    if final.exists():
        with h5py.File(final, "r") as f:
            if f.attrs.get("fingerprint") == cfg.fingerprint():
                return final
        raise FileExistsError(
            f"{final} was generated from a different config; delete it or choose another --out"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_suffix(".h5.partial")
    f = _open_partial(partial, cfg, split, command)
    try:
        done = f["done"][...]
        bar = tqdm(
            total=len(done),
            initial=int(done.sum()),
            desc=f"panel {cfg.name} {split}",
            unit="sample",
            disable=not progress,
        )
        for i in np.flatnonzero(~done):
            for key, value in simulate(cfg, split, int(i)).items():
                f[key][i] = value
            f["done"][i] = True  # last, so a sample counts only once all of it is written
            f.flush()
            bar.update(1)
        bar.close()
    finally:
        f.close()
    os.replace(partial, final)
    return final


def _shapes(cfg: DatasetConfig, split: str) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Per-sample shape and dtype of every array of a split."""
    k, n, m = cfg.panels_per_element, cfg.n_field, cfg.n_encoder
    shapes: dict[str, tuple[tuple[int, ...], Any]] = {
        "surfaces": ((2, k + 1, 2), np.float64),
        "n_elements": ((), np.int32),
        "conditions": ((2,), np.float32),
        "params": ((len(PARAM_COLUMNS),), np.float64),
        "points": ((n, 2), np.float32),
        "sdf": ((n,), np.float32),
        "fields": ((n, 3), np.float32),
        "encoder_points": ((m, 2), np.float32),
        "encoder_sdf": ((m,), np.float32),
        "surface_cp": ((2, k), np.float32),
        "cl": ((), np.float64),
    }
    if split in TEST_SPLITS:
        d = cfg.superres_factor * n
        shapes.update(
            dense_points=((d, 2), np.float32),
            dense_sdf=((d,), np.float32),
            dense_fields=((d, 3), np.float32),
        )
    return shapes


def _open_partial(path: Path, cfg: DatasetConfig, split: str, command: str) -> h5py.File:
    n_samples = sum(cfg.counts(split))
    if path.exists():
        try:
            f = h5py.File(path, "r+")
            if f.attrs.get("fingerprint") == cfg.fingerprint() and len(f["done"]) == n_samples:
                log.info(
                    "resuming %s: %d of %d samples done", path, int(f["done"][...].sum()), n_samples
                )
                return f
            f.close()
        except (OSError, KeyError):
            log.warning("%s is unreadable (interrupted mid-write); starting it again", path)
        path.unlink()
    f = h5py.File(path, "w")
    for key, (shape, dtype) in _shapes(cfg, split).items():
        # One chunk per sample: a resumed run rewrites whole samples, and readers take samples.
        f.create_dataset(
            key,
            shape=(n_samples, *shape),
            dtype=dtype,
            chunks=(1, *shape) if shape else None,
            fillvalue=np.nan if np.dtype(dtype).kind == "f" else 0,
        )
    f.create_dataset("done", data=np.zeros(n_samples, dtype=bool))
    n_single, n_multi = cfg.counts(split)
    attrs = {
        "fingerprint": cfg.fingerprint(),
        "config": json.dumps(to_dict(cfg)),
        "split": split,
        "command": command,
        "box": json.dumps([list(r) for r in cfg.box]),
        "field_columns": json.dumps(FIELD_COLUMNS),
        "condition_columns": json.dumps(CONDITION_COLUMNS),
        "param_columns": json.dumps(PARAM_COLUMNS),
        "n_single": n_single,
        "n_multi": n_multi,
        "panels_per_element": cfg.panels_per_element,
        "superres_factor": cfg.superres_factor,
        "solver": "Hess-Smith panel method (constant sources, one vortex per body, Kutta)",
        "surface_orientation": "clockwise from the trailing edge along the lower surface",
        "reference_chord": 1.0,
    }
    for key, value in attrs.items():
        f.attrs[key] = value
    return f


@dataclass
class AirfoilSplit:
    """One split in memory (shapes in the module docstring)."""

    surfaces: NDArray[np.float64]
    n_elements: NDArray[np.int32]
    conditions: NDArray[np.float32]
    params: NDArray[np.float64]
    points: NDArray[np.float32]
    sdf: NDArray[np.float32]
    fields: NDArray[np.float32]
    encoder_points: NDArray[np.float32]
    encoder_sdf: NDArray[np.float32]
    surface_cp: NDArray[np.float32]
    cl: NDArray[np.float64]
    done: NDArray[np.bool_]
    attrs: dict[str, Any]
    dense_points: NDArray[np.float32] | None = None
    dense_sdf: NDArray[np.float32] | None = None
    dense_fields: NDArray[np.float32] | None = None

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.attrs["config"])

    def __len__(self) -> int:
        return len(self.done)

    def polylines(self, index: int) -> list[NDArray[np.float64]]:
        """The closed element polylines of one sample, padding dropped."""
        return [self.surfaces[index, e] for e in range(int(self.n_elements[index]))]


def load_split(data_dir: str | Path, split: str) -> AirfoilSplit:
    path = split_path(data_dir, split)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: run `python -m training generate airfoils` first"
        )
    with h5py.File(path, "r") as f:
        arrays = {key: f[key][...] for key in f}
        return AirfoilSplit(attrs=dict(f.attrs), **arrays)
