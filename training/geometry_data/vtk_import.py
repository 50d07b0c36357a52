"""Import a folder of 2-D VTU/VTK files (one sample per file, read with meshio).

    python -m training import vtk --src FOLDER --out DATA_DIR --fields p,u=U:0,v=U:1
        --conditions load,angle=aoa [--field-units Pa,m/s,m/s] [--condition-units N,deg]
        [--test-fraction 0.2] [--seed S] [--points N] [--boundary auto|lines]
        [--problem NAME] [--solver TEXT] [--length-unit m]

Files: every `*.vtu` and `*.vtk` directly in FOLDER, sorted by name. The mesh must be 2-D:
triangle and quad cells (higher-order ones by their corners), points with a constant z if they
have one. Nodes at the same coordinates are merged (a mesh written in patches repeats its seams).

Fields (`--fields`, comma-separated): `NAME` takes the point-data array NAME; `NAME=ARRAY` the
point-data array ARRAY; `NAME=ARRAY:K` component K of a vector array (`u=U:0,v=U:1`). Units
(`--field-units`) in the same order, default empty.

Conditions (`--conditions`, comma-separated `NAME` or `NAME=KEY`, KEY defaulting to NAME; at
least one): one number per sample, taken from
  1. the sidecar `<file>.json` next to the file (`case.vtu` -> `case.vtu.json`), when it
     exists: `{"conditions": {"KEY": number, ...}}`, every condition from there; else
  2. the mesh's field data (meshio `mesh.field_data[KEY]`, a single number). VTK, ParaView and
     pyvista write a VTU's field data; meshio reads it but does not write it, so files
     written by meshio need the sidecar.

Boundary (`--boundary`):
- `auto` (default): the edges of the 2-D cells that belong to one cell, chained into closed
  loops. The loop enclosing the largest area is the outer boundary, the others are the bodies
  (at least one is needed). When every sample's outer loop is the same rectangle (its
  bounding box), that rectangle is the domain (box_is_domain true); otherwise the outer loops
  are dropped and the box is the bounding box of all samples' nodes (box_is_domain false).
- `lines`: the bodies are the mesh's line cells chained into closed loops (a body whose inside
  is meshed too, tagged by its boundary curve); nodes inside a body are dropped; the box is
  decided as for `auto` from the outer loop of the 2-D cells.

Points: every node of the 2-D cells (on a body's surface too, where the SDF is 0), or
`--points N` of them drawn without replacement, seeded with (--seed, the file's name).
Split: a shuffle seeded with --seed puts round(test_fraction * files) files (at least one when
the fraction is above 0 and there are two files or more) in `test.h5`, the rest in `train.h5`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from geometry.polylines import signed_distance
from training.common.config import ConfigError
from training.geometry_data.boundary import (
    LoopError,
    boundary_edges,
    chain_loops,
    closed_ccw,
    is_bounding_rectangle,
    merge_points,
    signed_area,
)
from training.geometry_data.format import F64, GeometryDataError, Sample, Schema
from training.geometry_data.importers import subsample, write_splits

log = logging.getLogger(__name__)

BOUNDARY_MODES = ("auto", "lines")
SUFFIXES = (".vtu", ".vtk")
# meshio cell type -> how many leading nodes are the polygon's corners, in order
CELLS_2D = {
    "triangle": 3, "triangle6": 3, "triangle7": 3,
    "quad": 4, "quad8": 4, "quad9": 4,
}  # fmt: skip
CELLS_3D = {
    "tetra", "tetra10", "hexahedron", "hexahedron20", "hexahedron24", "hexahedron27",
    "wedge", "wedge12", "wedge15", "pyramid", "pyramid13", "pyramid14", "polyhedron",
}  # fmt: skip
CELLS_LINE = {"line": 2, "line3": 2}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    array: str
    component: int | None
    unit: str


@dataclass(frozen=True)
class ConditionSpec:
    name: str
    key: str
    unit: str


def _units(text: str | None, n: int, option: str) -> list[str]:
    if text is None:
        return [""] * n
    units = [u.strip() for u in text.split(",")]
    if len(units) != n:
        raise ConfigError(f"{option} {text!r}: {len(units)} units for {n} names")
    return units


def parse_fields(text: str, units: str | None = None) -> list[FieldSpec]:
    """`p,u=U:0,v=U:1` -> field specs (see the module docstring)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError("--fields: at least one field is needed")
    out = []
    for item, unit in zip(items, _units(units, len(items), "--field-units"), strict=True):
        name, _, source = item.partition("=")
        array, _, comp = (source or name).partition(":")
        try:
            component = int(comp) if comp else None
        except ValueError as exc:
            raise ConfigError(f"--fields {item!r}: the component must be an integer") from exc
        if not name or not array or (component is not None and component < 0):
            raise ConfigError(f"--fields {item!r}: expected NAME, NAME=ARRAY or NAME=ARRAY:K")
        out.append(FieldSpec(name.strip(), array.strip(), component, unit))
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"--fields: a name appears twice in {names}")
    return out


def parse_conditions(text: str, units: str | None = None) -> list[ConditionSpec]:
    """`load,angle=aoa` -> condition specs (see the module docstring)."""
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not items:
        # format.Writer stores conditions in (S, C) datasets chunked per sample: C = 0 fails.
        raise ConfigError("--conditions: at least one condition is needed")
    out = []
    for item, unit in zip(items, _units(units, len(items), "--condition-units"), strict=True):
        name, _, key = item.partition("=")
        if not name.strip():
            raise ConfigError(f"--conditions {item!r}: expected NAME or NAME=KEY")
        out.append(ConditionSpec(name.strip(), (key or name).strip(), unit))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"--conditions: a name appears twice in {names}")
    return out


@dataclass
class MeshSample:
    """One file read: the sample, and what decides the split's box."""

    sample: Sample
    bbox: F64  # (2, 2) [[x0, x1], [y0, y1]] of its nodes
    outer_is_box: bool


def _field_values(mesh: Any, spec: FieldSpec, n: int, path: Path) -> NDArray[np.float64]:
    if spec.array not in mesh.point_data:
        raise GeometryDataError(
            f"{path}: field {spec.name!r}: no point-data array {spec.array!r} "
            f"(the file has {sorted(mesh.point_data)})"
        )
    arr = np.asarray(mesh.point_data[spec.array], dtype=np.float64).reshape(n, -1)
    if spec.component is None:
        if arr.shape[1] != 1:
            raise GeometryDataError(
                f"{path}: field {spec.name!r}: array {spec.array!r} has {arr.shape[1]} "
                f"components; name one, as {spec.name}={spec.array}:0"
            )
        return arr[:, 0]
    if spec.component >= arr.shape[1]:
        raise GeometryDataError(
            f"{path}: field {spec.name!r}: array {spec.array!r} has {arr.shape[1]} components, "
            f"no component {spec.component}"
        )
    return arr[:, spec.component]


def read_conditions(mesh: Any, specs: Sequence[ConditionSpec], path: Path) -> F64:
    sidecar = path.with_name(path.name + ".json")
    values = []
    if sidecar.exists():
        try:
            table = json.loads(sidecar.read_text())["conditions"]
            if not isinstance(table, dict):
                raise TypeError("'conditions' is not an object")
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise GeometryDataError(
                f'{sidecar}: expected {{"conditions": {{NAME: number, ...}}}} ({exc})'
            ) from exc
        for spec in specs:
            if spec.key not in table:
                raise GeometryDataError(
                    f"{sidecar}: condition {spec.name!r}: no key {spec.key!r} under "
                    f"'conditions' (it has {sorted(table)})"
                )
            values.append((spec, table[spec.key], sidecar))
    else:
        for spec in specs:
            if spec.key not in mesh.field_data:
                raise GeometryDataError(
                    f"{path}: condition {spec.name!r}: no field-data array {spec.key!r} "
                    f"(the file has {sorted(mesh.field_data)}) and no sidecar {sidecar.name}"
                )
            values.append((spec, mesh.field_data[spec.key], path))
    out = []
    for spec, raw, source in values:
        try:
            arr = np.asarray(raw, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise GeometryDataError(
                f"{source}: condition {spec.name!r} is not a number: {raw!r}"
            ) from exc
        if arr.size != 1:
            raise GeometryDataError(
                f"{source}: condition {spec.name!r} must be one number, got {arr.size} values"
            )
        if not math.isfinite(arr[0]):
            raise GeometryDataError(f"{source}: condition {spec.name!r} is {arr[0]}")
        out.append(arr[0])
    return np.asarray(out, dtype=np.float64)


def _cells(mesh: Any, path: Path) -> tuple[list[NDArray[np.int64]], list[NDArray[np.int64]]]:
    """(2-D cell blocks as corner indices, line cells as (K, 2) edges)."""
    faces, lines = [], []
    for block in mesh.cells:
        kind = block.type
        data = np.asarray(block.data, dtype=np.int64)
        if kind in CELLS_3D:
            raise GeometryDataError(f"{path}: a 3-D mesh ({kind} cells); 2-D is expected")
        if kind in CELLS_2D:
            faces.append(data[:, : CELLS_2D[kind]])
        elif kind == "polygon":
            faces.append(data)
        elif kind in CELLS_LINE:
            lines.append(data[:, :2])
        elif kind != "vertex":
            log.warning("%s: %s cells ignored", path, kind)
    if not faces:
        raise GeometryDataError(f"{path}: no 2-D cells (triangles or quads)")
    return faces, lines


def read_mesh_sample(
    path: Path,
    fields: Sequence[FieldSpec],
    conditions: Sequence[ConditionSpec],
    *,
    boundary: str = "auto",
    points: int | None = None,
    seed: int = 0,
) -> MeshSample:
    """One file as a sample (see the module docstring)."""
    import meshio

    try:
        mesh = meshio.read(path)
    except (Exception, SystemExit) as exc:  # meshio raises many kinds, and calls sys.exit(1)
        why = "not parseable" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
        raise GeometryDataError(f"{path}: meshio cannot read it: {why}") from exc
    raw = np.asarray(mesh.points, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] not in (2, 3) or len(raw) == 0:
        raise GeometryDataError(f"{path}: no points, or points of shape {raw.shape}")
    if not np.isfinite(raw).all():
        first = np.argwhere(~np.isfinite(raw))[0].tolist()
        raise GeometryDataError(f"{path}: points hold NaN or infinity (first at index {first})")
    if raw.shape[1] == 3:
        z = raw[:, 2]
        scale = max(1.0, float(np.abs(raw).max()))
        if float(np.ptp(z)) > 1e-9 * scale:
            raise GeometryDataError(
                f"{path}: a 3-D mesh (z spans {float(np.ptp(z)):.3g}); 2-D is expected"
            )
    faces, lines = _cells(mesh, path)
    values = np.stack([_field_values(mesh, f, len(raw), path) for f in fields], axis=1)
    cond = read_conditions(mesh, conditions, path)

    unique, first, inverse = merge_points(raw[:, :2])
    faces = [inverse[f] for f in faces]
    try:
        loops = [unique[ids] for ids in chain_loops(boundary_edges(faces))]
    except LoopError as exc:
        if boundary == "auto":
            raise GeometryDataError(f"{path}: the boundary of its 2-D cells: {exc}") from exc
        loops = []
    areas = [abs(signed_area(loop)) for loop in loops]
    outer = int(np.argmax(areas)) if loops else -1
    outer_is_box = outer >= 0 and is_bounding_rectangle(loops[outer])
    if boundary == "auto":
        bodies = [closed_ccw(loop) for i, loop in enumerate(loops) if i != outer]
        if not bodies:
            raise GeometryDataError(
                f"{path}: no boundary: its 2-D cells have one boundary loop, the outer one, "
                "and no inner loop (a body)"
            )
    else:
        if not lines:
            raise GeometryDataError(f"{path}: no line cells, and --boundary lines needs them")
        try:
            body_ids = chain_loops(inverse[np.concatenate(lines)])
        except LoopError as exc:
            raise GeometryDataError(f"{path}: the line cells: {exc}") from exc
        bodies = [closed_ccw(unique[ids]) for ids in body_ids]
    used = np.unique(np.concatenate([f.reshape(-1) for f in faces]))
    pts, vals = unique[used], values[first[used]]
    if boundary == "lines":  # drop the nodes inside a body, keep those on its surface
        scale = float(np.max(np.abs(pts))) or 1.0
        keep = signed_distance(pts, bodies) >= -1e-9 * scale
        pts, vals = pts[keep], vals[keep]
    pick = subsample(len(pts), points, seed, path.name)
    bbox = np.stack([unique[used].min(axis=0), unique[used].max(axis=0)], axis=1)
    return MeshSample(
        Sample(polylines=bodies, conditions=cond, points=pts[pick], fields=vals[pick]),
        bbox=bbox,
        outer_is_box=outer_is_box,
    )


def split_files(
    files: Sequence[Path], test_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices of (train, test) files by a seeded shuffle, each sorted."""
    n = len(files)
    n_test = round(test_fraction * n)
    if test_fraction > 0 and n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    elif n < 2:
        n_test = 0
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(perm[n_test:].tolist()), sorted(perm[:n_test].tolist())


def decide_box(
    samples: Sequence[MeshSample],
) -> tuple[tuple[tuple[float, float], tuple[float, float]], bool]:
    """The split's box and whether it is the domain (see `--boundary` in the docstring)."""
    boxes = np.stack([s.bbox for s in samples])  # (S, 2, 2)
    lo, hi = boxes[:, :, 0].min(axis=0), boxes[:, :, 1].max(axis=0)
    tol = 1e-9 * float(np.max(hi - lo))
    same = bool(np.all(np.abs(boxes - boxes[0]) <= tol))
    is_domain = same and all(s.outer_is_box for s in samples)
    if not is_domain and any(s.outer_is_box for s in samples):
        log.warning(
            "the samples' outer rectangles differ; the box is their union and not the domain"
        )
    box = ((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])))
    return box, is_domain


def import_vtk(
    src: str | Path,
    out: str | Path,
    *,
    fields: Sequence[FieldSpec],
    conditions: Sequence[ConditionSpec] = (),
    test_fraction: float = 0.2,
    seed: int = 0,
    points: int | None = None,
    boundary: str = "auto",
    problem: str | None = None,
    solver: str = "unknown (imported VTK files)",
    length_unit: str = "m",
    command: str = "",
    progress: bool = True,
) -> list[Path]:
    """Write `train.h5` (and `test.h5`) into `out` from a folder of VTU/VTK files."""
    if boundary not in BOUNDARY_MODES:
        raise ConfigError(f"boundary must be one of {BOUNDARY_MODES}, got {boundary!r}")
    folder = Path(src)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder} holds no *.vtu or *.vtk file")
    read = [
        read_mesh_sample(p, fields, conditions, boundary=boundary, points=points, seed=seed)
        for p in tqdm(files, desc="vtk import", unit="file", disable=not progress)
    ]
    box, box_is_domain = decide_box(read)
    schema = Schema(
        problem=problem or folder.resolve().name,
        field_names=tuple(f.name for f in fields),
        field_units=tuple(f.unit for f in fields),
        condition_names=tuple(c.name for c in conditions),
        condition_units=tuple(c.unit for c in conditions),
        length_unit=length_unit,
        box=box,
        box_is_domain=box_is_domain,
        solver=solver,
    )
    train, test = split_files(files, test_fraction, seed)
    splits = [
        (
            split,
            split,
            [(f"{files[i]} ({split} sample {k})", read[i].sample) for k, i in enumerate(idx)],
        )
        for split, idx in (("train", train), ("test", test))
    ]
    config = {
        "importer": "vtk",
        "src": str(folder.resolve()),
        "files": [p.name for p in files],
        "fields": [f.__dict__ for f in fields],
        "conditions": [c.__dict__ for c in conditions],
        "test_fraction": test_fraction,
        "seed": seed,
        "points": points,
        "boundary": boundary,
    }
    return write_splits(out, schema, splits, config=config, command=command)
