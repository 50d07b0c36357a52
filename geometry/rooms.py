"""Rooms: an axis-aligned bounding box with axis-aligned solid boxes carved out of it.

One representation covers the shapes the acoustic solver voxelises (plain boxes, L-shapes,
rooms with pillars or furniture blocks) and the checks the service makes on a request (is the
source in the air, how far is it from a wall), in 2-D and 3-D alike.
"""

from __future__ import annotations

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
