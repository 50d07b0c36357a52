"""Rooms: an axis-aligned bounding box with axis-aligned solid boxes carved out of it.

One representation covers the shapes the acoustic solver voxelises (plain boxes, L-shapes,
rooms with pillars or furniture blocks) and the checks the service makes on a request (is the
source in the air, how far is it from a wall), in 2-D and 3-D alike.

Because every wall is an axis-aligned plane, a grid can put every wall on cell faces
(`Room.grid_planes` and `aligned_cells`): the solver then sees the same geometry at every
resolution instead of a staircase that moves with the cell size. `Room.wall_taper` is the
smooth factor that makes an initial field vanish, with its normal derivative, on every wall.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class Box:
    """Closed axis-aligned box [lo, hi] in metres."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.lo) != len(self.hi):
            raise ValueError(f"box corners differ in dimension: {self.lo} vs {self.hi}")
        if any(h <= lo for lo, h in zip(self.lo, self.hi, strict=True)):
            raise ValueError(f"box must have hi > lo on every axis, got lo={self.lo} hi={self.hi}")

    @property
    def dim(self) -> int:
        return len(self.lo)

    def contains(self, points: ArrayLike) -> NDArray[np.bool_]:
        pts = np.asarray(points, dtype=np.float64)
        return np.all((pts >= self.lo) & (pts <= self.hi), axis=-1)

    def distance(self, points: ArrayLike) -> NDArray[np.float64]:
        """Signed distance to the box surface: positive outside, negative inside."""
        pts = np.asarray(points, dtype=np.float64)
        lo, hi = np.asarray(self.lo), np.asarray(self.hi)
        outside = np.linalg.norm(np.maximum(np.maximum(lo - pts, pts - hi), 0.0), axis=-1)
        inside = np.min(np.minimum(pts - lo, hi - pts), axis=-1)
        return np.where(outside > 0.0, outside, -np.maximum(inside, 0.0))

    def to_spec(self) -> dict[str, list[float]]:
        return {"lo": list(self.lo), "hi": list(self.hi)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Box:
        return cls(tuple(float(v) for v in spec["lo"]), tuple(float(v) for v in spec["hi"]))


@dataclass(frozen=True)
class Room:
    """The air region [0, size] minus the union of `solids`."""

    size: tuple[float, ...]
    solids: tuple[Box, ...] = field(default_factory=tuple)
    name: str = "room"

    def __post_init__(self) -> None:
        if len(self.size) not in (2, 3):
            raise ValueError(f"rooms are 2-D or 3-D, got size={self.size}")
        if any(s <= 0 for s in self.size):
            raise ValueError(f"room size must be positive, got {self.size}")
        for solid in self.solids:
            if solid.dim != self.dim:
                raise ValueError(f"solid {solid} is not {self.dim}-D")

    @property
    def dim(self) -> int:
        return len(self.size)

    @property
    def bounds(self) -> Box:
        return Box((0.0,) * self.dim, tuple(self.size))

    def wall_distance(self, points: ArrayLike) -> NDArray[np.float64]:
        """Signed distance to the nearest wall: positive in the air, negative in a wall."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape[-1] != self.dim:
            raise ValueError(f"points must have {self.dim} coordinates, got shape {pts.shape}")
        dist = -self.bounds.distance(pts)
        for solid in self.solids:
            dist = np.minimum(dist, solid.distance(pts))
        return dist

    def is_air(self, points: ArrayLike) -> NDArray[np.bool_]:
        return self.wall_distance(points) > 0.0

    def air_volume(self) -> float:
        """Exact for non-overlapping solids inside the room (the shapes built here)."""
        vol = float(np.prod(self.size))
        for s in self.solids:
            vol -= float(np.prod(np.asarray(s.hi) - np.asarray(s.lo)))
        return vol

    def grid_planes(self) -> tuple[NDArray[np.float64], ...]:
        """Per axis, the sorted coordinates of every wall plane normal to it: 0, size and each
        solid's lo and hi (clipped to the room, where a face outside it bounds no air)."""
        planes = []
        for a, length in enumerate(self.size):
            coords = [0.0, length]
            for s in self.solids:
                coords += [min(max(s.lo[a], 0.0), length), min(max(s.hi[a], 0.0), length)]
            planes.append(np.unique(np.asarray(coords, dtype=np.float64)))
        return tuple(planes)

    def wall_taper(self, points: ArrayLike, width: float) -> NDArray[np.float64]:
        """A smooth factor in [0, 1] that is 0 on (and inside) every wall and tends to 1 away
        from the walls: the product over wall planes of the room of 1 - exp(-d^2 / width^2),
        d the distance to the plane, times 1 - exp(-s / width^2) per solid box.

        s = sqrt(sum_a r_a^4), r_a how far the point is outside the box along axis a, equals
        d^2 beside a face and is C^3 where faces meet (s = d^2 itself, the squared Euclidean
        distance, is only C^1 there). Multiplying an initial pressure by the factor makes it
        vanish with its normal derivative on every wall, compatible with rigid and impedance
        walls alike, and keeps it Gaussian-smooth: 1 - exp(-d^2 / width^2) times a Gaussian is
        a difference of Gaussians, band-limited like the pulse itself.
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape[-1] != self.dim:
            raise ValueError(f"points must have {self.dim} coordinates, got shape {pts.shape}")
        if width <= 0:
            raise ValueError(f"taper width must be positive, got {width}")
        taper = np.ones(pts.shape[:-1])
        for a, length in enumerate(self.size):
            x = np.clip(pts[..., a], 0.0, length)
            ramp = -np.expm1(-((x / width) ** 2)) * -np.expm1(-(((length - x) / width) ** 2))
            taper = taper * ramp
        for solid in self.solids:
            lo, hi = np.asarray(solid.lo), np.asarray(solid.hi)
            r = np.maximum(lo - pts, 0.0) + np.maximum(pts - hi, 0.0)  # (..., dim)
            taper = taper * -np.expm1(-np.sqrt((r**4).sum(-1)) / width**2)
        return taper

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": list(self.size),
            "solids": [s.to_spec() for s in self.solids],
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Room:
        """Build from a spec: `{"size": [...], "solids": [{"lo", "hi"}...]}` or a named shape.

        Named shapes: `{"shape": "box", "size": ...}`, `{"shape": "l_shape", "size": ...,
        "cut": [...]}` (the corner at the far end of every axis removed), `{"shape":
        "obstacle", "size": ..., "lo": ..., "hi": ...}`.
        """
        size = tuple(float(v) for v in spec["size"])
        name = str(spec.get("name", spec.get("shape", "room")))
        shape = spec.get("shape")
        solids: list[Box] = [Box.from_spec(s) for s in spec.get("solids", [])]
        if shape == "l_shape":
            cut = tuple(float(v) for v in spec["cut"])
            solids.append(Box(tuple(s - c for s, c in zip(size, cut, strict=True)), size))
        elif shape == "obstacle":
            solids.append(Box.from_spec(spec))
        elif shape not in (None, "box"):
            raise ValueError(f"unknown room shape {shape!r}")
        return cls(size=size, solids=tuple(solids), name=name)


def aligned_cells(
    planes_per_axis: Sequence[ArrayLike],
    size: Sequence[float],
    dx_max: float,
    max_refine: float = 2.0,
    rtol: float = 1e-9,
) -> tuple[int, ...]:
    """Per axis, the smallest cell count n >= L / dx_max with every plane on a cell face.

    A plane at x lies on a face of the n cells of [0, L] when x n / L is an integer (to `rtol`
    of n). Counts up to `max_refine` times the smallest one are tried: a finer grid than that
    costs more than the caller asked for, so the geometry should change instead. Doubling the
    count keeps every plane on a face, so 2 n (not the count for dx_max / 2, which may differ)
    is the same geometry at half the spacing.
    """
    if dx_max <= 0:
        raise ValueError(f"dx must be positive, got {dx_max}")
    if len(planes_per_axis) != len(size):
        raise ValueError(f"{len(planes_per_axis)} plane lists for a {len(size)}-D room")
    counts = []
    for a, (planes, length) in enumerate(zip(planes_per_axis, size, strict=True)):
        q = np.asarray(planes, dtype=np.float64) / length  # fraction of the axis
        if ((q < -rtol) | (q > 1.0 + rtol)).any():
            raise ValueError(f"a plane on axis {a} lies outside [0, {length}]: {planes}")
        n_min = max(2, math.ceil(length / dx_max * (1.0 - rtol)))
        n_max = max(n_min + 1, math.floor(max_refine * n_min))
        for n in range(n_min, n_max + 1):
            off = np.abs(q * n - np.round(q * n))
            if (off <= rtol * n).all():
                counts.append(n)
                break
        else:
            worst = float(np.asarray(planes, dtype=np.float64)[np.argmax(off)])
            raise ValueError(
                f"axis {a}: the wall plane at {worst!r} m of a {length!r} m room cannot lie on a "
                f"cell face for any spacing between {length / n_max:.4g} and {length / n_min:.4g}"
                f" m (requested dx = {dx_max:.4g} m); round the room size and every wall "
                f"coordinate to a common step that divides the size (e.g. multiples of 0.05 m), "
                f"or request a smaller dx"
            )
    return tuple(counts)
