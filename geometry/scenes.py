"""Scenes: what the acoustic solver needs to know about a room, and the service to check points.

Two kinds, one protocol (`dim`, `size`, `bounds`, `is_air`, `wall_distance`, `grid_planes`,
`surface_absorption`, `air_volume`, `describe`, `to_spec`):

- `Scene`: the air as a box, an L-shape or a union of boxes, minus furniture boxes, with an
  absorption per material and a material per wall side. Written by hand in YAML.
- `VoxelScene`: the air as a voxel mask with a material label on every wall face, made from a
  triangle mesh by `training.acoustics.meshes` (trimesh lives there, not here) and rebuilt
  here from its spec, numpy only, so the service can check points against it.

Both reduce to a `Room` (the bounding box minus solid boxes) for `wall_distance`: distance to a
union of boxes is the minimum over the boxes, so it stays exact in the air.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geometry.rooms import Box, Room

if TYPE_CHECKING:
    from geometry.voxels import VoxelScene

# Planes closer than this (metres) are one plane: YAML decimals like 0.1 + 0.2 do not land
# exactly on 0.3, and a sliver cell between them would be a phantom wall or air gap.
PLANE_TOL = 1e-9
# How far past a wall face the material probe looks: well below any cell, well above round-off.
_PROBE = 1e-6
SIDE_NAMES = ("x", "y", "z")
_MASK_ENCODING = "packbits+zlib+base64"


class AirRegion(Protocol):
    """What the service needs of a room to check a request against it."""

    @property
    def dim(self) -> int: ...

    @property
    def size(self) -> tuple[float, ...]: ...

    @property
    def bounds(self) -> Box: ...

    def is_air(self, points: ArrayLike) -> NDArray[np.bool_]: ...

    def wall_distance(self, points: ArrayLike) -> NDArray[np.float64]: ...


# --- spec parsing: every error names the key at fault --------------------------------------


def _fail(key: str, problem: str) -> ValueError:
    return ValueError(f"scene key '{key}': {problem}")


def _get(spec: Mapping[str, Any], key: str, where: str = "") -> Any:
    full = f"{where}.{key}" if where else key
    if not isinstance(spec, Mapping):
        raise _fail(where or "scene", f"must be a mapping, got {type(spec).__name__}")
    if key not in spec:
        raise _fail(full, "is missing")
    return spec[key]


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, f"must be a number, got {value!r}")
    out = float(value)
    if not np.isfinite(out):
        raise _fail(key, f"must be finite, got {value!r}")
    return out


def _vector(value: Any, key: str, dim: int | None = None) -> tuple[float, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise _fail(key, f"must be a list of numbers, got {value!r}")
    out = tuple(_number(v, f"{key}[{i}]") for i, v in enumerate(value))
    if dim is not None and len(out) != dim:
        raise _fail(key, f"must have {dim} coordinates (the room is {dim}-D), got {len(out)}")
    return out


def _box(spec: Any, key: str, dim: int) -> Box:
    lo = _vector(_get(spec, "lo", key), f"{key}.lo", dim)
    hi = _vector(_get(spec, "hi", key), f"{key}.hi", dim)
    if any(h <= low for low, h in zip(lo, hi, strict=True)):
        raise _fail(key, f"needs hi > lo on every axis, got lo={list(lo)} hi={list(hi)}")
    return Box(lo, hi)


def _check_inside(box: Box, size: tuple[float, ...], key: str, what: str = "it") -> None:
    if any(v < -PLANE_TOL for v in box.lo) or any(
        h > s + PLANE_TOL for h, s in zip(box.hi, size, strict=True)
    ):
        raise _fail(
            key,
            f"{what} lies outside the room: {list(box.lo)}..{list(box.hi)} is not within "
            f"[0, {list(size)}]",
        )


def _materials(spec: Any, key: str = "materials") -> dict[str, float]:
    if not isinstance(spec, Mapping) or not spec:
        raise _fail(key, f"must be a non-empty mapping of name -> absorption, got {spec!r}")
    out = {}
    for name, value in spec.items():
        alpha = _number(value, f"{key}.{name}")
        if not 0.0 <= alpha <= 1.0:
            raise _fail(f"{key}.{name}", f"absorption must be in [0, 1], got {alpha:g}")
        out[str(name)] = alpha
    return out


def _check_keys(spec: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise _fail(
            f"{where}.{unknown[0]}" if where else unknown[0],
            f"is not a known key (known: {', '.join(sorted(allowed))})",
        )


def _region(spec: Mapping[str, Any], dim: int) -> tuple[Box | None, float | None, float | None]:
    """The optional solver keys shared by both kinds: source_region, wall_margin, fmax."""
    region = _box(spec["source_region"], "source_region", dim) if "source_region" in spec else None
    margin = _number(spec["wall_margin"], "wall_margin") if "wall_margin" in spec else None
    fmax = _number(spec["fmax"], "fmax") if "fmax" in spec else None
    return region, margin, fmax


def _check_region(
    room: AirRegion, region: Box | None, margin: float | None, fmax: float | None
) -> None:
    if fmax is not None and fmax <= 0:
        raise _fail("fmax", f"must be positive, got {fmax:g}")
    if margin is not None and margin < 0:
        raise _fail("wall_margin", f"must be >= 0, got {margin:g}")
    if region is None:
        return
    _check_inside(region, room.size, "source_region")
    # A region where no source can keep the margin would make an empty training set later;
    # a lattice of the region (ends included) finds that now. 17 points a side is plenty for
    # regions drawn by hand, and a few thousand distance evaluations cost nothing.
    axes = [np.linspace(lo, hi, 17) for lo, hi in zip(region.lo, region.hi, strict=True)]
    pts = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=-1)
    if not (room.is_air(pts) & (room.wall_distance(pts) >= (margin or 0.0))).any():
        raise _fail(
            "source_region",
            f"has no point in the air at least wall_margin={margin or 0.0:g} m from every wall "
            "and piece of furniture",
        )


def _region_spec(region: Box | None, margin: float | None, fmax: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if fmax is not None:
        out["fmax"] = fmax
    if region is not None:
        out["source_region"] = region.to_spec()
    if margin is not None:
        out["wall_margin"] = margin
    return out


# --- boxes from a mask: solids as few boxes, so wall_distance loops over few -----------------


def boxes_of_mask(mask: NDArray[np.bool_]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Cover the True cells of `mask` with disjoint boxes of cells: (lo, hi) index pairs, hi
    exclusive. Greedy: runs along the last axis, then equal runs stacked along each axis
    before it. Not minimal, but a room's solids come out as a handful of boxes."""
    if mask.ndim == 1:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
        return [((int(a),), (int(b),)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    out: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    open_boxes: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}  # face -> first slice
    for i in range(mask.shape[0] + 1):
        faces = set(boxes_of_mask(mask[i])) if i < mask.shape[0] else set()
        for face in [f for f in open_boxes if f not in faces]:
            out.append(((open_boxes.pop(face), *face[0]), (i, *face[1])))
        for face in faces:
            open_boxes.setdefault(face, i)
    return out


def _cell_boxes(mask: NDArray[np.bool_], planes: Sequence[NDArray[np.float64]]) -> tuple[Box, ...]:
    return tuple(
        Box(
            tuple(float(p[i]) for p, i in zip(planes, lo, strict=True)),
            tuple(float(p[i]) for p, i in zip(planes, hi, strict=True)),
        )
        for lo, hi in boxes_of_mask(mask)
    )


def _centres(planes: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
    mids = [(p[:-1] + p[1:]) / 2 for p in planes]
    return np.stack([m.ravel() for m in np.meshgrid(*mids, indexing="ij")], axis=-1)


# --- Scene: boxes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Furniture:
    """A solid box standing in the air, e.g. a table, with the material of all its faces."""

    name: str
    box: Box
    material: str

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, **self.box.to_spec(), "material": self.material}


@dataclass(frozen=True)
class _Cells:
    """The scene cut by every plane of every box: each elementary cell is all air or all not."""

    planes: tuple[NDArray[np.float64], ...]
    in_air_box: NDArray[np.bool_]  # inside the union of the air boxes
    air: NDArray[np.bool_]  # ... and outside every piece of furniture
    volume: NDArray[np.float64]


def _planes(size: tuple[float, ...], boxes: Iterable[Box]) -> tuple[NDArray[np.float64], ...]:
    boxes = list(boxes)
    out = []
    for a, s in enumerate(size):
        coords = np.unique([0.0, s, *(b.lo[a] for b in boxes), *(b.hi[a] for b in boxes)])
        coords = np.clip(coords, 0.0, s)
        keep = np.concatenate([[True], np.diff(coords) > PLANE_TOL])
        coords = coords[keep]
        coords[-1] = s  # a plane within tolerance of the far wall is the far wall
        out.append(coords)
    return tuple(out)


@dataclass(frozen=True)
class Scene:
    """Air = union of `air` boxes within [0, size], minus `furniture`.

    `materials` maps a name to its normal-incidence absorption in [0, 1]; `surfaces` assigns
    materials to the room's sides: `walls` (every side, and the inner walls of an L-shape),
    in 3-D `floor` (z = 0) and `ceiling` (z = size), and per side `x0`, `x1`, `y0`, `y1`,
    `z0`, `z1`, the more specific key winning.
    """

    name: str
    size: tuple[float, ...]
    air: tuple[Box, ...]
    furniture: tuple[Furniture, ...]
    materials: Mapping[str, float]
    surfaces: Mapping[str, str]
    fmax: float
    source_region: Box
    wall_margin: float

    def __post_init__(self) -> None:
        if len(self.size) not in (2, 3):
            raise _fail("size", f"a scene is 2-D or 3-D, got {list(self.size)}")
        if any(s <= 0 for s in self.size):
            raise _fail("size", f"must be positive, got {list(self.size)}")
        if not self.air:
            raise _fail("air", "needs at least one air box")
        for i, box in enumerate(self.air):
            if box.dim != self.dim:
                raise _fail(f"air.boxes[{i}]", f"is not {self.dim}-D")
            _check_inside(box, self.size, f"air.boxes[{i}]")
        _materials(self.materials)
        names = [f.name for f in self.furniture]
        for i, item in enumerate(self.furniture):
            key = f"furniture[{i}]"
            if not item.name or names.count(item.name) > 1:
                raise _fail(f"{key}.name", f"must be a unique non-empty name, got {item.name!r}")
            if item.box.dim != self.dim:
                raise _fail(key, f"the {item.name} is not {self.dim}-D")
            _check_inside(item.box, self.size, key, f"the {item.name}")
            if item.material not in self.materials:
                raise _fail(f"{key}.material", f"{item.material!r} is not in materials")
        self._side_materials()  # every side resolves, or the key to add is named
        cells = self._cells
        for i, item in enumerate(self.furniture):
            inside = item.box.contains(_centres(cells.planes)).reshape(cells.air.shape)
            if not (inside & cells.in_air_box).any():
                raise _fail(f"furniture[{i}]", f"the {item.name} lies entirely inside a wall")
        if not cells.air.any():
            raise _fail("furniture", "leaves no air: the scene has no air at all")
        _check_region(self, self.source_region, self.wall_margin, self.fmax)

    # -- derived geometry --

    @property
    def dim(self) -> int:
        return len(self.size)

    @property
    def bounds(self) -> Box:
        return self.room.bounds

    @cached_property
    def _cells(self) -> _Cells:
        planes = _planes(self.size, [*self.air, *(f.box for f in self.furniture)])
        shape = tuple(len(p) - 1 for p in planes)
        centres = _centres(planes)
        in_air_box = np.zeros(len(centres), dtype=bool)
        for box in self.air:
            in_air_box |= box.contains(centres)
        in_furniture = np.zeros(len(centres), dtype=bool)
        for item in self.furniture:
            in_furniture |= item.box.contains(centres)
        widths = np.meshgrid(*[np.diff(p) for p in planes], indexing="ij")
        return _Cells(
            planes,
            in_air_box.reshape(shape),
            (in_air_box & ~in_furniture).reshape(shape),
            np.prod(widths, axis=0),
        )

    @cached_property
    def inner_walls(self) -> tuple[Box, ...]:
        """The bounding box minus the air boxes, as disjoint boxes (the L's missing corner)."""
        return _cell_boxes(~self._cells.in_air_box, self._cells.planes)

    @cached_property
    def room(self) -> Room:
        """The same air as a Room: inner walls and furniture are its solids."""
        solids = (*self.inner_walls, *(f.box for f in self.furniture))
        return Room(size=tuple(self.size), solids=solids, name=self.name)

    def grid_planes(self) -> tuple[NDArray[np.float64], ...]:
        """Per axis, the sorted coordinates of every wall and furniture plane, 0 and size
        included: a grid with a line on each of them voxelises the scene exactly."""
        return tuple(p.copy() for p in self._cells.planes)

    def is_air(self, points: ArrayLike) -> NDArray[np.bool_]:
        return self.room.is_air(points)

    def wall_distance(self, points: ArrayLike) -> NDArray[np.float64]:
        """Signed distance to the nearest wall or piece of furniture, positive in the air."""
        return self.room.wall_distance(points)

    def wall_taper(self, points: ArrayLike, width: float) -> NDArray[np.float64]:
        """The Room's smooth factor vanishing on every wall and piece of furniture (the
        solver's initial pressure is tapered by it)."""
        return self.room.wall_taper(points, width)

    def air_volume(self) -> float:
        """Exact, in m^3 (m^2 in 2-D), whatever the boxes' overlaps."""
        return float(self._cells.volume[self._cells.air].sum())

    def describe(self, point: ArrayLike) -> str:
        """Where a point that is not in the air is, for an error message."""
        p = np.asarray(point, dtype=np.float64).reshape(self.dim)
        if not bool(self.bounds.contains(p)):
            return "outside the room"
        for item in self.furniture:
            if bool(item.box.contains(p)):
                return f"inside the {item.name} (furniture)"
        return "inside a wall"

    # -- materials --

    def _side_materials(self) -> dict[tuple[int, int], str]:
        """(axis, side) -> material of the bounding-box side; side +1 is the far side."""
        allowed = {"walls", *(f"{SIDE_NAMES[a]}{e}" for a in range(self.dim) for e in "01")}
        if self.dim == 3:
            allowed |= {"floor", "ceiling"}
        _check_keys(self.surfaces, allowed, "surfaces")
        for key, material in self.surfaces.items():
            if material not in self.materials:
                raise _fail(f"surfaces.{key}", f"{material!r} is not in materials")
        out = {}
        for a in range(self.dim):
            for side, end in ((-1, "0"), (1, "1")):
                group = ("floor" if side < 0 else "ceiling") if a == 2 else "walls"
                for key in (f"{SIDE_NAMES[a]}{end}", group, "walls"):
                    if key in self.surfaces:
                        out[(a, side)] = self.surfaces[key]
                        break
                else:
                    raise _fail("surfaces.walls", f"is needed: side {SIDE_NAMES[a]}{end} has none")
        if self.inner_walls and "walls" not in self.surfaces:
            raise _fail("surfaces.walls", "is needed for the inner walls of the room")
        return out

    def _inner_material(self, axis: int, side: int) -> str:
        """An inner wall faces the air like a side of the room does: solid above is ceiling,
        below is floor, anything sideways is walls."""
        if axis == 2:
            key = "ceiling" if side > 0 else "floor"
            return self.surfaces.get(key, self.surfaces["walls"])
        return self.surfaces["walls"]

    def surface_absorption(self, points: ArrayLike, axis: int, side: int) -> NDArray[np.float64]:
        """Absorption of wall faces centred at `points` (N, dim), normal along `axis`, the solid
        on the high side of the air cell when `side` = +1, low when -1.

        The solid is found by probing just past the face; on a grid not aligned with the
        scene's planes the nearest solid along that probe still wins (smallest signed
        distance), so a face is never left without a material.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, self.dim)
        if axis not in range(self.dim) or side not in (-1, 1):
            raise ValueError(f"axis must be in 0..{self.dim - 1} and side +-1, got {axis}, {side}")
        probe = pts.copy()
        probe[:, axis] += side * _PROBE
        # Candidates in priority order for ties: furniture, inner walls, the room's side.
        alphas: list[float] = []
        dists: list[NDArray[np.float64]] = []
        for item in self.furniture:
            alphas.append(self.materials[item.material])
            dists.append(item.box.distance(probe))
        inner = self.materials[self._inner_material(axis, side)] if self.inner_walls else 0.0
        for box in self.inner_walls:
            alphas.append(inner)
            dists.append(box.distance(probe))
        alphas.append(self.materials[self._side_materials()[(axis, side)]])
        coord = probe[:, axis]
        dists.append(self.size[axis] - coord if side > 0 else coord)
        nearest = np.argmin(np.stack(dists), axis=0)
        return np.asarray(alphas, dtype=np.float64)[nearest]

    # -- specs --

    def to_spec(self) -> dict[str, Any]:
        return {
            "kind": "boxes",
            "name": self.name,
            "size": list(self.size),
            "air": {"boxes": [b.to_spec() for b in self.air]},
            "furniture": [f.to_spec() for f in self.furniture],
            "materials": dict(self.materials),
            "surfaces": dict(self.surfaces),
            **_region_spec(self.source_region, self.wall_margin, self.fmax),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Scene:
        """Build from a spec (what `to_spec` and the YAML files hold); ValueError names the key.

        `air` is `{shape: box}` (the default), `{shape: l_shape, cut: [...]}` (the corner at
        the far end of every axis removed, as in `Room`) or `{boxes: [{lo, hi}, ...]}`.
        """
        if not isinstance(spec, Mapping):
            raise _fail("scene", f"must be a mapping, got {type(spec).__name__}")
        if "mesh" in spec:
            raise _fail("mesh", "mesh scenes are voxelised by training.acoustics.meshes.load_scene")
        _check_keys(
            spec,
            {
                "kind",
                "name",
                "size",
                "air",
                "furniture",
                "materials",
                "surfaces",
                "fmax",
                "source_region",
                "wall_margin",
            },
            "",
        )
        if spec.get("kind", "boxes") != "boxes":
            raise _fail("kind", f"expected 'boxes', got {spec['kind']!r}")
        size = _vector(_get(spec, "size"), "size")
        dim = len(size)
        if dim not in (2, 3):
            raise _fail("size", f"a scene is 2-D or 3-D, got {list(size)}")
        air = cls._air_from_spec(spec.get("air", {"shape": "box"}), size)
        furniture_spec = spec.get("furniture", [])
        if not isinstance(furniture_spec, Sequence) or isinstance(furniture_spec, str):
            raise _fail("furniture", f"must be a list, got {furniture_spec!r}")
        furniture = []
        for i, item in enumerate(furniture_spec):
            key = f"furniture[{i}]"
            if isinstance(item, Mapping):
                _check_keys(item, {"name", "lo", "hi", "material"}, key)
            name = _get(item, "name", key)
            material = _get(item, "material", key)
            furniture.append(Furniture(str(name), _box(item, key, dim), str(material)))
        surfaces = _get(spec, "surfaces")
        if not isinstance(surfaces, Mapping):
            raise _fail("surfaces", f"must be a mapping of side -> material, got {surfaces!r}")
        region, margin, fmax = _region(spec, dim)
        for key, value in (("fmax", fmax), ("source_region", region), ("wall_margin", margin)):
            if value is None:
                raise _fail(key, "is missing")
        assert region is not None and margin is not None and fmax is not None  # for mypy
        return cls(
            name=str(spec.get("name", "scene")),
            size=size,
            air=air,
            furniture=tuple(furniture),
            materials=_materials(_get(spec, "materials")),
            surfaces={str(k): str(v) for k, v in surfaces.items()},
            fmax=fmax,
            source_region=region,
            wall_margin=margin,
        )

    @staticmethod
    def _air_from_spec(spec: Any, size: tuple[float, ...]) -> tuple[Box, ...]:
        if not isinstance(spec, Mapping):
            raise _fail("air", f"must be a mapping, got {spec!r}")
        dim = len(size)
        if "boxes" in spec:
            _check_keys(spec, {"boxes"}, "air")
            boxes = spec["boxes"]
            if not isinstance(boxes, Sequence) or isinstance(boxes, str) or not boxes:
                raise _fail("air.boxes", f"must be a non-empty list of boxes, got {boxes!r}")
            return tuple(_box(b, f"air.boxes[{i}]", dim) for i, b in enumerate(boxes))
        shape = spec.get("shape", "box")
        if shape == "box":
            _check_keys(spec, {"shape"}, "air")
            return (Box((0.0,) * dim, size),)
        if shape == "l_shape":
            _check_keys(spec, {"shape", "cut"}, "air")
            cut = _vector(_get(spec, "cut", "air"), "air.cut", dim)
            if any(not 0 < c < s for c, s in zip(cut, size, strict=True)):
                raise _fail("air.cut", f"must be in (0, size) on every axis, got {list(cut)}")
            # The union of the slabs below the cut on each axis is everything but the corner.
            return tuple(
                Box((0.0,) * dim, tuple(s - c if b == a else s for b, s in enumerate(size)))
                for a, c in enumerate(cut)
            )
        raise _fail("air.shape", f"must be 'box' or 'l_shape' (or give air.boxes), got {shape!r}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> Scene:
        import yaml  # pyyaml comes with the train and dev extras; the service reads specs

        with open(path, encoding="utf-8") as fh:
            spec = yaml.safe_load(fh)
        try:
            return cls.from_spec(spec)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def scene_from_spec(spec: Mapping[str, Any]) -> Scene | VoxelScene:
    """Either kind, by its `kind` key (`boxes` when absent)."""
    from geometry.voxels import VoxelScene  # voxels builds on this module

    if not isinstance(spec, Mapping):
        raise _fail("scene", f"must be a mapping, got {type(spec).__name__}")
    if spec.get("kind", "boxes") == "voxels":
        return VoxelScene.from_spec(spec)
    return Scene.from_spec(spec)
