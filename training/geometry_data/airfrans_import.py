"""Import a local copy of AirfRANS (RANS around NACA airfoils) into the geometry-dataset format.

    python -m training import airfrans --src AIRFRANS_ROOT --out DATA_DIR [--task full]
        [--max-samples N] [--points N] [--box X0,X1,Y0,Y1] [--seed S]

The root holds `manifest.json` ({"full_train": [names], "full_test": [...], "scarce_train",
"reynolds_train", "reynolds_test", "aoa_train", "aoa_test"}) and one folder per simulation,
`airFoil2D_SST_<Uinf>_<aoa>_<NACA parameters...>`, holding `<name>_internal.vtu` and
`<name>_aerofoil.vtp` (and `<name>_freestream.vtp`, which is not needed). Each simulation is
read with `airfrans.Simulation(root, name)`; it needs the internal mesh's point arrays `U`,
`p`, `nut` and `implicit_distance`, and the aerofoil's point array `Normals` and line cells.

The task picks the manifest's splits: `<task>_train` becomes `train.h5` (role train) and
`<task>_test` becomes `test.h5` (role test); `scarce` has no test split of its own and uses
`full_test`, as `airfrans.dataset.load` does. `--max-samples N` keeps the first N of each split.

A sample:
- conditions `aoa_deg` (deg) and `speed` (m/s, the inlet velocity's magnitude), parsed from the
  simulation's name (the same order as the panel-method dataset of `training.airfoils`);
- fields `u`, `v` (m/s), `p` (m^2/s^2, the pressure over the density) and `nut` (m^2/s), at the
  internal mesh's nodes inside the box (default [-0.5, 1.5] x [-0.75, 0.75]: the chord is 1 m,
  from (0, 0) to (1, 0)), all of them or `--points` of them drawn without replacement by a
  generator seeded with (--seed, the simulation's name);
- one boundary polyline: the airfoil surface, closed and counter-clockwise, ordered by walking
  the aerofoil's line cells (nodes repeated at the same coordinates are merged first, so a
  trailing edge written twice still joins); without usable line cells, by angle about the
  centroid, refused unless the result is a simple polygon.
The box only bounds the sampled region (box_is_domain false); lengths are in m.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from training.common.config import ConfigError
from training.geometry_data.boundary import (
    LoopError,
    chain_loops,
    closed_ccw,
    is_simple,
    line_cell_edges,
    merge_points,
    order_by_angle,
)
from training.geometry_data.format import F64, GeometryDataError, Sample, Schema
from training.geometry_data.importers import subsample, write_splits

log = logging.getLogger(__name__)

# task -> (train split, test split) of manifest.json
TASK_SPLITS = {
    "full": ("full_train", "full_test"),
    "scarce": ("scarce_train", "full_test"),
    "reynolds": ("reynolds_train", "reynolds_test"),
    "aoa": ("aoa_train", "aoa_test"),
}
DEFAULT_BOX = ((-0.5, 1.5), (-0.75, 0.75))
DEFAULT_BOX_TEXT = "-0.5,1.5,-0.75,0.75"
FIELD_NAMES = ("u", "v", "p", "nut")
FIELD_UNITS = ("m/s", "m/s", "m^2/s^2", "m^2/s")
CONDITION_NAMES = ("aoa_deg", "speed")
CONDITION_UNITS = ("deg", "m/s")
SOLVER = "OpenFOAM simpleFoam, k-omega SST (AirfRANS)"
Box = tuple[tuple[float, float], tuple[float, float]]


def schema(task: str, box: Box) -> Schema:
    return Schema(
        problem=f"airfrans-{task}",
        field_names=FIELD_NAMES,
        field_units=FIELD_UNITS,
        condition_names=CONDITION_NAMES,
        condition_units=CONDITION_UNITS,
        length_unit="m",
        box=box,
        box_is_domain=False,
        solver=SOLVER,
    )


def conditions_from_name(name: str, where: str) -> F64:
    """[aoa_deg, speed] from `airFoil2D_SST_<Uinf>_<aoa>_...`."""
    parts = name.split("_")
    try:
        speed, aoa = float(parts[2]), float(parts[3])
    except (IndexError, ValueError) as exc:
        raise GeometryDataError(
            f"{where}: the name {name!r} is not airFoil2D_SST_<Uinf>_<aoa>_<NACA parameters>"
        ) from exc
    if not (math.isfinite(speed) and math.isfinite(aoa)):
        raise GeometryDataError(
            f"{where}: conditions hold NaN or infinity (Uinf {speed}, aoa {aoa})"
        )
    return np.array([aoa, speed])


def airfoil_loop(points: F64, lines: Any, where: str) -> F64:
    """The airfoil surface as one closed counter-clockwise polyline."""
    if len(points) < 3:
        raise GeometryDataError(f"{where}: the airfoil surface is empty ({len(points)} points)")
    unique, _, inverse = merge_points(points)
    flat = np.asarray(lines, dtype=np.int64).reshape(-1)
    if flat.size:
        try:
            loops = chain_loops(inverse[line_cell_edges(flat)])
        except LoopError as exc:
            log.warning("%s: line cells unusable (%s); ordering by angle", where, exc)
        else:
            if len(loops) != 1:
                raise GeometryDataError(
                    f"{where}: the airfoil's line cells form {len(loops)} closed loops, not one"
                )
            if len(loops[0]) < len(unique):
                log.warning(
                    "%s: %d surface points lie on no line cell; dropped",
                    where,
                    len(unique) - len(loops[0]),
                )
            return closed_ccw(unique[loops[0]])
    ordered = order_by_angle(unique)
    if not is_simple(ordered):
        raise GeometryDataError(
            f"{where}: the airfoil has no usable line cells, and ordering its points by angle "
            "about their centroid does not give a simple polygon"
        )
    return closed_ccw(ordered)


def read_simulation(
    root: Path, name: str, box: Box, points: int | None, seed: int, where: str
) -> Sample:
    """One AirfRANS simulation as a sample (see the module docstring)."""
    import airfrans
    import pyvista as pv

    folder = root / name
    internal, aerofoil = folder / f"{name}_internal.vtu", folder / f"{name}_aerofoil.vtp"
    for path in (internal, aerofoil):
        if not path.exists():
            raise GeometryDataError(f"{where}: {path} is missing")
    conditions = conditions_from_name(name, where)
    try:
        surface = pv.read(aerofoil)
    except Exception as exc:
        raise GeometryDataError(f"{where}: cannot read {aerofoil}: {exc}") from exc
    if surface.n_points < 3:
        raise GeometryDataError(f"{where}: {aerofoil} holds no airfoil surface (empty)")
    try:
        sim = airfrans.Simulation(root=str(root), name=name)
    except Exception as exc:  # the package raises whatever its readers raise
        raise GeometryDataError(
            f"{where}: airfrans.Simulation cannot read {folder}: {type(exc).__name__}: {exc} "
            "(it needs point arrays U, p, nut, implicit_distance in the internal mesh and "
            "Normals on the aerofoil)"
        ) from exc
    for label, mesh, path in (
        ("internal mesh", sim.internal, internal),
        ("airfoil", sim.airfoil, aerofoil),
    ):
        z = np.asarray(mesh.points)[:, 2]
        if z.size and float(np.ptp(z)) > 1e-9 * max(1.0, float(np.abs(z).max())):
            raise GeometryDataError(
                f"{where}: {path}: a 3-D {label} (z spans {float(np.ptp(z)):.3g}); 2-D is expected"
            )
    loop = airfoil_loop(np.asarray(sim.airfoil_position), sim.airfoil.lines, f"{where}: {aerofoil}")
    (x0, x1), (y0, y1) = box
    if not (
        loop[:, 0].min() > x0 and loop[:, 0].max() < x1 and loop[:, 1].min() > y0
        and loop[:, 1].max() < y1
    ):  # fmt: skip
        raise GeometryDataError(f"{where}: the airfoil does not lie inside the box {box}")
    pos = np.asarray(sim.position)
    values = np.concatenate([sim.velocity, sim.pressure, sim.nu_t], axis=1)  # (n, 4)
    keep = np.flatnonzero(
        (pos[:, 0] >= x0) & (pos[:, 0] <= x1) & (pos[:, 1] >= y0) & (pos[:, 1] <= y1)
    )
    if len(keep) == 0:
        raise GeometryDataError(f"{where}: {internal}: no mesh node inside the box {box}")
    keep = keep[subsample(len(keep), points, seed, name)]
    return Sample(
        polylines=[loop],
        conditions=conditions,
        points=pos[keep].astype(np.float32),
        fields=values[keep].astype(np.float32),
    )


def manifest_names(root: Path, task: str) -> tuple[list[str], list[str]]:
    path = root / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (is {root} an AirfRANS root?)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GeometryDataError(f"{path}: not JSON: {exc}") from exc
    out = []
    for key in TASK_SPLITS[task]:
        names = manifest.get(key) if isinstance(manifest, dict) else None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise GeometryDataError(f"{path}: no list of simulation names under {key!r}")
        out.append(names)
    return out[0], out[1]


def import_airfrans(
    src: str | Path,
    out: str | Path,
    *,
    task: str = "full",
    max_samples: int | None = None,
    points: int | None = None,
    box: Box = DEFAULT_BOX,
    seed: int = 0,
    command: str = "",
    progress: bool = True,
) -> list[Path]:
    """Write `train.h5` and `test.h5` into `out` from an AirfRANS root; returns their paths."""
    if task not in TASK_SPLITS:
        raise ConfigError(f"task must be one of {sorted(TASK_SPLITS)}, got {task!r}")
    root = Path(src)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    train, test = manifest_names(root, task)
    chosen: dict[str, Sequence[str]] = {
        "train": train[:max_samples] if max_samples else train,
        "test": test[:max_samples] if max_samples else test,
    }
    splits = []
    for split, names in chosen.items():
        items = []
        bar = tqdm(names, desc=f"airfrans {task} {split}", unit="sim", disable=not progress)
        for i, name in enumerate(bar):
            where = f"{root / name} ({split} sample {i})"
            items.append((where, read_simulation(root, name, box, points, seed, where)))
        splits.append((split, split, items))
    config = {
        "importer": "airfrans",
        "src": str(root.resolve()),
        "task": task,
        "max_samples": max_samples,
        "points": points,
        "box": [list(r) for r in box],
        "seed": seed,
        "names": {k: list(v) for k, v in chosen.items()},
    }
    return write_splits(out, schema(task, box), splits, config=config, command=command)
