"""The region an acoustic model was trained on, and the policy for requests outside it.

Hard errors (422) are requests with no physical meaning: a source or receiver inside a wall,
inside a piece of furniture or outside the room. The room is the manifest's `scene` (boxes
with furniture, or a voxelised mesh) when it has one, else its `room` (older manifests).
Soft ones (warnings) are meaningful requests the network was not trained for: a source
outside the trained region or nearer a wall than the trained margin, times outside the
trained window. The model still answers those; the client is told.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.errors import InvalidInputError, ManifestError
from app.families.base import Notice
from geometry import AirRegion, Box, Room, Scene, VoxelScene, grid_points, scene_from_spec


def _where(room: AirRegion, point: NDArray[np.float64]) -> str:
    """Why a point is not in the air, as precisely as the room can say."""
    if isinstance(room, Scene | VoxelScene):
        return room.describe(point)  # a scene names the piece of furniture
    return "inside a wall" if bool(room.bounds.contains(point)) else "outside the room"


def _fmt(values: NDArray[np.float64] | tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"


@dataclass(frozen=True)
class GridPoints:
    points: NDArray[np.float64]  # (kept, dim): air cells only
    index: NDArray[np.int64]  # flat C-order index of each kept point in the full grid
    counts: tuple[int, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]


@dataclass(frozen=True)
class AcousticDomain:
    room: AirRegion  # a Room, a Scene or a VoxelScene
    source_region: Box
    wall_margin: float
    time_window: tuple[float, float]

    @property
    def dim(self) -> int:
        return self.room.dim

    @classmethod
    def from_manifest(cls, domain: Mapping[str, Any]) -> AcousticDomain:
        room: AirRegion
        try:
            if "scene" in domain:
                scene = scene_from_spec(domain["scene"])
                # The domain's own region and margin win (what training sampled); a scene's
                # are the fallback.
                region = (
                    Box.from_spec(domain["source_region"])
                    if "source_region" in domain
                    else scene.source_region
                )
                margin_value = domain.get("wall_margin", scene.wall_margin)
                if region is None or margin_value is None:
                    raise KeyError("source_region and wall_margin, in the domain or its scene")
                room, margin = scene, float(margin_value)
            else:
                room = Room.from_spec(domain["room"])
                region = Box.from_spec(domain["source_region"])
                margin = float(domain["wall_margin"])
            t0, t1 = (float(t) for t in domain["time_window"])
            dim = int(domain.get("dim", room.dim))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest domain is incomplete or malformed: {exc!r}") from None
        if dim != room.dim or region.dim != room.dim:
            raise ManifestError(
                f"manifest domain disagrees on the dimension: dim={dim}, room {room.dim}-D, "
                f"source region {region.dim}-D"
            )
        if not t1 > t0:
            raise ManifestError(f"manifest time_window [{t0}, {t1}] is empty")
        return cls(room, region, margin, (t0, t1))

    def check_source(self, source: NDArray[np.float64]) -> list[Notice]:
        distance = float(self.room.wall_distance(source[None, :])[0])
        if distance <= 0.0:
            raise InvalidInputError(
                f"source {_fmt(source)} is {_where(self.room, source)}: sound sources must be "
                f"in the air of the room {_fmt(self.room.size)} m",
                "source",
            )
        notices = []
        if not bool(self.source_region.contains(source)):
            notices.append(
                Notice(
                    "source",
                    "source_outside_trained_region",
                    f"source {_fmt(source)} is outside the trained source region "
                    f"{_fmt(self.source_region.lo)}..{_fmt(self.source_region.hi)} m; "
                    "the prediction is an extrapolation",
                )
            )
        if distance < self.wall_margin:
            notices.append(
                Notice(
                    "source",
                    "source_near_wall",
                    f"source is {distance:.3g} m from the nearest wall, closer than the trained "
                    f"margin {self.wall_margin:g} m; the prediction may be inaccurate",
                )
            )
        return notices

    def check_sources(self, sources: NDArray[np.float64], field: str) -> list[Notice]:
        """Many sources at once (the tensor interface): same policy, one notice per kind."""
        distance = self.room.wall_distance(sources)
        bad = distance <= 0.0
        if bad.any():
            first = int(np.argmax(bad))
            raise InvalidInputError(
                f"{int(bad.sum())} source(s) are inside a wall or outside the room, the first "
                f"{field}[{first}] = {_fmt(sources[first])} is "
                f"{_where(self.room, sources[first])}",
                field,
            )
        notices = []
        outside = ~self.source_region.contains(sources)
        if outside.any():
            notices.append(
                Notice(
                    field,
                    "source_outside_trained_region",
                    f"{int(outside.sum())} of {len(sources)} sources lie outside the trained "
                    "source region; the prediction is an extrapolation there",
                )
            )
        near = distance < self.wall_margin
        if near.any():
            notices.append(
                Notice(
                    field,
                    "source_near_wall",
                    f"{int(near.sum())} of {len(sources)} sources are closer to a wall than the "
                    f"trained margin {self.wall_margin:g} m; the prediction may be inaccurate",
                )
            )
        return notices

    def check_receivers(self, receivers: NDArray[np.float64], field: str = "receivers") -> None:
        bad = ~self.room.is_air(receivers)
        if bad.any():
            first = int(np.argmax(bad))
            raise InvalidInputError(
                f"{int(bad.sum())} receiver(s) are inside a wall or outside the room, the first "
                f"{field}[{first}] = {_fmt(receivers[first])} is "
                f"{_where(self.room, receivers[first])}",
                field,
            )

    def check_listener(self, listener: NDArray[np.float64], field: str = "listener") -> None:
        """One receiver, named as the request names it (an impulse response's listener)."""
        if not bool(self.room.is_air(listener[None, :])[0]):
            raise InvalidInputError(
                f"{field} {_fmt(listener)} is {_where(self.room, listener)}: a listener must be "
                f"in the air of the room {_fmt(self.room.size)} m",
                field,
            )

    def check_times(self, times: NDArray[np.float64], field: str = "times") -> list[Notice]:
        t0, t1 = self.time_window
        outside = (times < t0) | (times > t1)
        if not outside.any():
            return []
        return [
            Notice(
                field,
                "times_outside_trained_window",
                f"{int(outside.sum())} of {times.size} times lie outside the trained window "
                f"[{t0:g}, {t1:g}] s; the prediction is an extrapolation there",
            )
        ]

    def grid(self, counts: tuple[int, ...]) -> GridPoints:
        """Cell centres over the room's bounding box, keeping only those in the air.

        Cell centres rather than a lattice from wall to wall: a lattice's outer ring lies on
        the walls and would always be dropped.
        """
        lo = np.zeros(self.dim)
        size = np.asarray(self.room.size)
        step = size / np.asarray(counts)
        first, last = lo + step / 2, size - step / 2
        points = grid_points(first.tolist(), last.tolist(), counts)
        air = self.room.is_air(points)
        index = np.flatnonzero(air)
        return GridPoints(points[index], index, counts, tuple(first.tolist()), tuple(last.tolist()))
