"""Triangle meshes (OBJ, STL, PLY) voxelised into a `VoxelScene` for the acoustic solver.

The mesh bounds the air: a cell is air when its centre is inside the mesh by ray parity
(counted here along z; trimesh's `contains` misjudged thousands of cells where furniture sits
flush on a floor or a wall), so furniture modelled as closed shells inside the room's shell comes
out solid, and the orientation of the triangles does not matter. Every wall face of the grid
takes the material of its nearest triangle's group (OBJ `g`/`o`/`usemtl` names as trimesh
reads them; STL and PLY are one group named after the file). The result is numpy only, so its
spec goes into a manifest and the service checks points against it without trimesh.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from numpy.typing import NDArray

from geometry.rooms import Box
from geometry.scenes import Scene
from geometry.voxels import VoxelScene, wall_faces

# Above this many cells the parity count takes minutes on a laptop; a room at fmax 500 Hz
# and 20 points per wavelength is ~10^6, so this refuses typos (a spacing in mm), not rooms.
MAX_CELLS = 20_000_000


def _parts(mesh: trimesh.Trimesh | trimesh.Scene, label: str) -> list[tuple[str, trimesh.Trimesh]]:
    """(group name, mesh in world coordinates) for every geometry of a scene graph."""
    if isinstance(mesh, trimesh.Trimesh):
        return [(label, mesh.copy())]  # copied: voxelising moves it to the origin
    parts = []
    for node in mesh.graph.nodes_geometry:
        transform, geom_name = mesh.graph[node]
        geom = mesh.geometry[geom_name]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue  # points and paths bound nothing
        material = getattr(getattr(geom, "visual", None), "material", None)
        # An OBJ `usemtl` with its .mtl present names the material; else the group does.
        name = getattr(material, "name", None) or str(geom_name)
        parts.append((name, geom.copy().apply_transform(transform)))
    return parts


def load_parts(path: str | Path) -> list[tuple[str, trimesh.Trimesh]]:
    """(group name, triangles) of a mesh file; OBJ objects and groups stay apart, and STL or
    PLY, which carry no group names, are one group named after the file's stem."""
    path = Path(path)
    kwargs: dict[str, Any] = {"force": "scene"}
    if path.suffix.lower() == ".obj":
        kwargs |= {"split_objects": True, "split_groups": True, "group_material": True}
    try:
        loaded = trimesh.load(str(path), **kwargs)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"{path}: cannot read the mesh: {exc}") from None
    if not isinstance(loaded, trimesh.Scene):  # force="scene" promises one; mypy cannot know
        loaded = trimesh.Scene(loaded)
    parts = _parts(loaded, path.stem)
    if path.suffix.lower() != ".obj":
        parts = [(path.stem, mesh) for _, mesh in parts]
    return parts


def open_edges(mesh: trimesh.Trimesh) -> int:
    """Edges used by an odd number of faces once coincident vertices are merged.

    Ray parity is well defined exactly when this is 0; unlike trimesh's `is_watertight` it
    accepts two closed shells touching along an edge (a cabinet in a corner of the room).
    """
    merged = mesh.copy()
    merged.merge_vertices(merge_tex=True, merge_norm=True)
    edges = merged.edges_sorted
    if len(edges) == 0:
        return 0
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int((counts % 2 == 1).sum())


# The vertical rays of the parity test pass this far (in cells) beside the cell centres: a
# centre exactly above a triangle edge or a box face's diagonal would otherwise be counted by
# both triangles or neither. Irrational, so no grid-aligned feature sits on it.
_JITTER = (np.pi * 1e-7, np.e * 1e-7, np.sqrt(2.0) * 1e-7)


def parity_voxels(
    triangles: NDArray[np.float64], counts: tuple[int, int, int], spacing: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Cells whose centre has an odd number of triangles below it along z: inside the mesh.

    Every crossing counts, coincident ones included (a table's underside on the floor is two
    crossings), where trimesh's `contains` merges hits at one location and loses the parity.
    Triangles seen edge-on from below (walls) are parallel to the rays and cross none.
    """
    nx, ny, nz = counts
    hx, hy, hz = (float(v) for v in spacing)
    cx = (np.arange(nx) + 0.5 + _JITTER[0]) * hx
    cy = (np.arange(ny) + 0.5 + _JITTER[1]) * hy
    cz = (np.arange(nz) + 0.5 + _JITTER[2]) * hz
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    keep = np.abs(area) > 1e-14 * max(hx, hy) ** 2
    a, b, c, area = a[keep], b[keep], c[keep], area[keep]
    # Columns whose centre lies in each triangle's xy bounding box: [i0, i1) x [j0, j1).
    xs = np.stack([a[:, 0], b[:, 0], c[:, 0]])
    ys = np.stack([a[:, 1], b[:, 1], c[:, 1]])
    i0, i1 = np.searchsorted(cx, xs.min(0)), np.searchsorted(cx, xs.max(0), side="right")
    j0, j1 = np.searchsorted(cy, ys.min(0)), np.searchsorted(cy, ys.max(0), side="right")
    ni, nj = np.maximum(i1 - i0, 0), np.maximum(j1 - j0, 0)
    starts = np.zeros((nx, ny, nz + 1), dtype=np.int32)  # +1 at the first centre above a hit
    per_triangle = ni * nj
    bounds = np.concatenate([[0], np.cumsum(per_triangle)])
    # Chunks of about 2 million (triangle, column) pairs bound the memory on large meshes.
    edges = np.searchsorted(bounds, np.arange(0, bounds[-1] + 1, 2_000_000))
    chunk_rows = sorted({0, *edges.tolist(), len(per_triangle)})
    for t0, t1 in itertools.pairwise(chunk_rows):
        n = per_triangle[t0:t1]
        tri = np.repeat(np.arange(t0, t1), n)
        if tri.size == 0:
            continue
        local = np.arange(tri.size) - np.repeat(np.cumsum(n) - n, n)
        ii = i0[tri] + local // nj[tri]
        jj = j0[tri] + local % nj[tri]
        px, py = cx[ii], cy[jj]
        ta, tb, tc = a[tri], b[tri], c[tri]
        # Edge functions over the signed area are the barycentric weights of the column.
        wc = (tb[:, 0] - ta[:, 0]) * (py - ta[:, 1]) - (tb[:, 1] - ta[:, 1]) * (px - ta[:, 0])
        wa = (tc[:, 0] - tb[:, 0]) * (py - tb[:, 1]) - (tc[:, 1] - tb[:, 1]) * (px - tb[:, 0])
        wb = (ta[:, 0] - tc[:, 0]) * (py - tc[:, 1]) - (ta[:, 1] - tc[:, 1]) * (px - tc[:, 0])
        d = area[tri]
        wa, wb, wc = wa / d, wb / d, wc / d
        hit = (wa >= 0) & (wb >= 0) & (wc >= 0)
        z = wa * ta[:, 2] + wb * tb[:, 2] + wc * tc[:, 2]
        k = np.searchsorted(cz, z[hit])
        np.add.at(starts, (ii[hit], jj[hit], k), 1)
    below = np.cumsum(starts[:, :, :nz], axis=2)
    out: NDArray[np.bool_] = below % 2 == 1
    return out


def voxelise_mesh(
    mesh: str | Path | trimesh.Trimesh | trimesh.Scene,
    materials: Mapping[str, float],
    *,
    spacing: float | None = None,
    counts: Sequence[int] | None = None,
    groups: Mapping[str, str] | None = None,
    default_material: str | None = None,
    name: str | None = None,
    fmax: float | None = None,
    source_region: Box | None = None,
    wall_margin: float | None = None,
) -> VoxelScene:
    """Voxelise a watertight mesh on a cell-centred grid over its bounding box.

    The grid has `counts` cells per axis, or the fewest at most `spacing` apart (pass the
    solver's dx: the solver then runs on this very grid); the scene's origin is
    the mesh's lower corner (kept as `origin`). `groups` maps a mesh group name to a material
    of `materials`; a group not in it uses its own name if that is a material, else
    `default_material`. ValueError for an open mesh, one with no air at this resolution, or a
    group with no material.
    """
    label = str(mesh) if isinstance(mesh, str | Path) else (name or "mesh")
    parts = load_parts(mesh) if isinstance(mesh, str | Path) else _parts(mesh, label)
    if not parts:
        raise ValueError(f"{label}: no triangles in the mesh")
    groups = dict(groups or {})
    part_materials = []
    for group, _ in parts:
        material = groups.get(group, group if group in materials else default_material)
        if material is None:
            known = sorted({g for g, _ in parts})
            raise ValueError(
                f"{label}: mesh group {group!r} has no material: map it in groups (mesh groups: "
                f"{', '.join(known)}) or give default_material"
            )
        if material not in materials:
            raise ValueError(f"{label}: group {group!r} -> {material!r} is not in materials")
        part_materials.append(material)

    combined = trimesh.util.concatenate([m for _, m in parts])
    assert isinstance(combined, trimesh.Trimesh)  # for mypy: triangles in, triangles out
    n_open = open_edges(combined)
    if n_open:
        raise ValueError(
            f"{label}: the mesh is not watertight: {n_open} open edge(s) (edges not shared by an "
            "even number of faces); close its holes before voxelising"
        )
    lo, hi = np.asarray(combined.bounds[0]), np.asarray(combined.bounds[1])
    size = hi - lo
    if (size <= 0).any():
        raise ValueError(f"{label}: the mesh is flat (extent {size.tolist()}); rooms are 3-D")
    if counts is None:
        if spacing is None or spacing <= 0:
            raise ValueError("give a positive spacing or the counts per axis")
        # At most `spacing`, as the solver reads its dx: the solver aligning its grid to this
        # one's planes then runs on this very grid, not on a doubled one. The slack is float32
        # round-off (STL and PLY store a 1.2 m wall at 1.2000000477 m).
        counts = [max(1, math.ceil(float(s) / spacing * (1.0 - 1e-6))) for s in size]
    grid = tuple(int(n) for n in counts)
    if len(grid) != 3 or min(grid) < 1 or int(np.prod(grid)) > MAX_CELLS:
        raise ValueError(f"counts must be 3 positive integers, at most {MAX_CELLS} cells: {grid}")

    combined.apply_translation(-lo)
    h = size / np.asarray(grid)
    air = parity_voxels(np.asarray(combined.triangles, dtype=np.float64), grid, h)
    if not air.any():
        raise ValueError(
            f"{label}: no cell centre is inside the mesh on the {grid} grid (spacing "
            f"{h.round(4).tolist()} m): the air is thinner than a cell or the mesh is empty"
        )

    # Face label = material of the nearest triangle's group, 1-based (0 = no wall).
    names = sorted(set(part_materials))
    part_label = np.asarray([names.index(m) + 1 for m in part_materials], dtype=np.uint8)
    face_part = np.repeat(np.arange(len(parts)), [len(m.faces) for _, m in parts])
    labels = []
    for a in range(3):
        faces = wall_faces(air, a)
        idx = np.argwhere(faces).astype(np.float64)
        points = (idx + 0.5) * h
        points[:, a] = idx[:, a] * h[a]  # on the face plane, not at a cell centre
        out = np.zeros(faces.shape, dtype=np.uint8)
        if len(points):
            _, _, triangle = trimesh.proximity.closest_point(combined, points)
            out[faces] = part_label[face_part[np.asarray(triangle, dtype=np.int64)]]
        labels.append(out)

    return VoxelScene(
        name=name or Path(label).stem,
        size=tuple(float(s) for s in size),
        air_mask=air,
        materials=dict(materials),
        face_materials=tuple(names),
        face_labels=tuple(labels),
        fmax=fmax,
        source_region=source_region,
        wall_margin=wall_margin,
        origin=tuple(float(v) for v in lo),
        source=Path(label).name if isinstance(mesh, str | Path) else "",
    )


def load_scene(path: str | Path) -> Scene | VoxelScene:
    """A scene file: boxes (see `Scene.from_spec`) or a mesh to voxelise:

    mesh: room.obj            # relative to this file
    spacing: 0.05             # or counts: [nx, ny, nz]
    materials: {plaster: 0.2, wood: 0.1}
    groups: {walls: plaster, table: wood}   # optional; default_material: plaster
    fmax: 500.0
    source_region: {lo: [...], hi: [...]}   # in the scene's frame (mesh corner at 0)
    wall_margin: 0.3
    """
    import yaml

    path = Path(path)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or "mesh" not in spec:
        return Scene.from_yaml(path)
    known = {"name", "mesh", "spacing", "counts", "materials", "groups", "default_material",
             "fmax", "source_region", "wall_margin"}  # fmt: skip
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"{path}: scene key '{unknown[0]}' is not a known key for a mesh scene")
    region = spec.get("source_region")
    try:
        return voxelise_mesh(
            path.parent / str(spec["mesh"]),
            spec.get("materials") or {},
            spacing=spec.get("spacing"),
            counts=spec.get("counts"),
            groups=spec.get("groups"),
            default_material=spec.get("default_material"),
            name=spec.get("name"),
            fmax=spec.get("fmax"),
            source_region=Box.from_spec(region) if region is not None else None,
            wall_margin=spec.get("wall_margin"),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: malformed mesh scene: {exc!r}") from None


def cell_centres(scene: VoxelScene) -> NDArray[np.float64]:
    """The centres of the scene's own grid, C order (for comparing scenes cell for cell)."""
    axes = [(np.arange(n) + 0.5) * h for n, h in zip(scene.counts, scene.spacing, strict=True)]
    return np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=-1)
