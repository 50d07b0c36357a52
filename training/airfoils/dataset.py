"""Ground truth for airfoil enf2enf: Hess-Smith panel solutions around NACA sections and
slotted flaps, written in the geometry-dataset format (training.geometry_data.format).

Samples are drawn from their own seeded generator (seed, split, index), so an interrupted run
resumes where it stopped and gives the same file as an uninterrupted one. `train` and `val`
hold the single-element samples first, then the two-element ones; `test` (label "single") is
single-element only and `test_multi` (label "multi") two-element only, and both test splits
also carry a dense point set (superres_factor times n_field points from the same distribution)
for the super-resolution check.

Per sample (K = panels_per_element, N = n_field): polylines = one or two closed clockwise
polylines of K + 1 points from the trailing edge; conditions [aoa_deg, speed]; fields [u, v, cp]
at N points in the fluid; extra/params (P,) PARAM_COLUMNS (the flap columns NaN without a
flap), extra/surface_cp (2, K) Cp at panel midpoints (NaN-padded), extra/cl () the lift
coefficient (Kutta-Joukowski, per reference chord 1).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from geometry.airfoils import (
    BOX,
    NEAR_WALL_OFFSETS,
    field_points,
    naca4,
    signed_distance,
    two_element,
)
from training.airfoils.panel import solve
from training.common.config import to_dict
from training.geometry_data.format import Capacity, Sample, Schema, Writer, existing, split_path

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "test_multi")
TEST_SPLITS = ("test", "test_multi")
LABELS = {"test": "single", "test_multi": "multi"}
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
class Case:
    polylines: list[NDArray[np.float64]]
    params: NDArray[np.float64]  # (P,)
    conditions: NDArray[np.float64]  # (2,) [aoa_deg, speed]


def sample_case(cfg: DatasetConfig, split: str, index: int) -> Case:
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
    return Case(polylines, params, conditions)


def _sample_rng(cfg: DatasetConfig, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, SPLITS.index(split), index])


def schema(cfg: DatasetConfig) -> Schema:
    return Schema(
        problem="airfoils",
        field_names=FIELD_COLUMNS,
        field_units=("free-stream speed units", "free-stream speed units", "1"),
        condition_names=CONDITION_COLUMNS,
        condition_units=("deg", "free-stream speed units"),
        length_unit="chord",
        box=(tuple(cfg.box[0]), tuple(cfg.box[1])),  # type: ignore[arg-type]
        box_is_domain=False,
        solver="Hess-Smith panel method (constant sources, one vortex per body, Kutta)",
    )


def simulate(cfg: DatasetConfig, split: str, index: int) -> Sample:
    """One sample, solved (float64; the writer casts)."""
    case = sample_case(cfg, split, index)
    sol = solve(case.polylines, aoa_deg=case.conditions[0], speed=case.conditions[1])
    # Field points come from a generator of their own, after the case's draws, so changing how
    # points are drawn never changes the geometry of a sample.
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split), index, 1])
    sets: dict[str, tuple[Any, ...]] = {}
    counts = [("", cfg.n_field)]
    if split in TEST_SPLITS:
        counts.append(("dense_", cfg.superres_factor * cfg.n_field))
    for prefix, n in counts:
        pts = field_points(
            case.polylines, n, cfg.box, cfg.wall_offsets, cfg.near_wall_fraction, rng
        )
        sets[prefix] = (pts, signed_distance(pts, case.polylines), sol.fields(pts))
    k = cfg.panels_per_element
    surface_cp = np.full((2, k), np.nan)
    for e in range(len(case.polylines)):
        surface_cp[e] = sol.surface_cp[e * k : (e + 1) * k]
    dense = sets.get("dense_", (None, None, None))
    return Sample(
        polylines=case.polylines,
        conditions=case.conditions,
        points=sets[""][0],
        sdf=sets[""][1],
        fields=sets[""][2],
        dense_points=dense[0],
        dense_sdf=dense[1],
        dense_fields=dense[2],
        extra={"params": case.params, "surface_cp": surface_cp, "cl": np.asarray(sol.cl)},
    )


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
    if existing(split_path(data_dir, split), cfg.fingerprint()):
        return split_path(data_dir, split)
    k = cfg.panels_per_element
    cap = Capacity(
        max_polylines=2,
        max_vertices=k + 1,
        max_points=cfg.n_field,
        n_encoder=cfg.n_encoder,
        max_dense=cfg.superres_factor * cfg.n_field if split in TEST_SPLITS else 0,
    )
    extra = {
        "params": ((len(PARAM_COLUMNS),), np.float64),
        "surface_cp": ((2, k), np.float32),
        "cl": ((), np.float64),
    }
    role = "test" if split in TEST_SPLITS else split
    with Writer(
        data_dir, split, role, schema(cfg), sum(cfg.counts(split)), cap,
        fingerprint=cfg.fingerprint(), config=to_dict(cfg), command=command, extra=extra,
    ) as writer:  # fmt: skip
        n_single, n_multi = cfg.counts(split)
        for key, value in {
            "param_columns": json.dumps(PARAM_COLUMNS),
            "n_single": n_single,
            "n_multi": n_multi,
            "surface_orientation": "clockwise from the trailing edge along the lower surface",
            "reference_chord": 1.0,
            **({"label": LABELS[split]} if split in LABELS else {}),
        }.items():
            writer.set_attr(key, value)
        done = writer.done
        bar = tqdm(
            total=len(done),
            initial=int(done.sum()),
            desc=f"panel {cfg.name} {split}",
            unit="sample",
            disable=not progress,
        )
        for i in np.flatnonzero(~done):
            writer.write(int(i), simulate(cfg, split, int(i)))
            bar.update(1)
        bar.close()
        return writer.finish()
