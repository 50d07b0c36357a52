"""The region an airfoil (enf2enf) model was trained on, its geometries, and the policy for
requests outside it.

Hard errors (422) are requests with no meaningful answer: a malformed body (open, degenerate or
self-intersecting curves, elements that cross or nest, more elements than the model knows, an
invalid NACA code), a free-stream speed that is not positive, and explicit query points inside
a body. Soft ones (warnings) are meaningful requests the network was not trained for: an angle
of attack or speed outside the trained ranges, NACA parameters outside the trained ranges, a
body or query points outside the trained box, query points nearer a wall than the training
data ever came. The model still answers those; the client is told.

Every geometry function is geometry.airfoils' (shared with training), so a NACA section is
exactly the polyline the model was trained on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.cache.keys import digest
from app.errors import InvalidInputError, ManifestError
from app.families.base import Notice
from geometry.airfoils import check_polylines, inside, naca4, parse_naca, signed_distance
from geometry.grids import grid_points

F64 = NDArray[np.float64]
Range = tuple[float, float]

# Vertices of all curves of one geometry together: bounds the cost of the validation (pairs of
# segments) and of every signed distance (query points x segments). Training used 160 panels
# per element.
MAX_CURVE_POINTS = 2048
# Salt of geometry ids: a new canonical form of the polylines gets a new salt.
_GEOMETRY_SALT = "fieldserve-geometry-v1"
# Segment pairs per block of the crossing test (memory ~ 40 bytes x this).
_PAIR_BLOCK = 1 << 18
# Query points x segments per block of a signed distance.
_SDF_BLOCK = 1 << 21
_F32_MAX = float(np.finfo(np.float32).max)


def _fmt(values: Sequence[float] | F64) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"


def geometry_id(polylines: Sequence[F64]) -> str:
    """Content hash of the closed float64 polylines (dtype, shape and bytes of each element):
    the same shape always gets the same id, whichever way it was asked for."""
    return digest(_GEOMETRY_SALT, [np.ascontiguousarray(p, dtype=np.float64) for p in polylines])


@dataclass(frozen=True)
class GridPoints:
    points: F64  # (kept, 2): points in the fluid only
    index: NDArray[np.int64]  # flat C-order index (ix * ny + iy) of each kept point
    counts: tuple[int, int]
    lo: tuple[float, float]
    hi: tuple[float, float]


@dataclass(frozen=True)
class Placed:
    """Query points checked against a geometry: their signed distance and the notices."""

    points: F64
    sdf: F64
    notices: tuple[Notice, ...]


@dataclass(frozen=True)
class AirfoilDomain:
    box: tuple[Range, Range]
    aoa_deg: Range
    speed: Range
    naca: Mapping[str, Range]  # m, p, t (fractions of the chord); may be empty
    max_elements: int
    n_encoder: int
    encoder_seed: int
    panels_per_element: int
    min_wall_distance: float

    @classmethod
    def from_manifest(cls, domain: Mapping[str, Any]) -> AirfoilDomain:
        try:
            (x0, x1), (y0, y1) = ((float(a), float(b)) for a, b in domain["box"])
            aoa = _range(domain["aoa_deg"])
            speed = _range(domain["speed"])
            naca = {k: _range(v) for k, v in dict(domain.get("naca", {})).items()}
            out = cls(
                box=((x0, x1), (y0, y1)),
                aoa_deg=aoa,
                speed=speed,
                naca=naca,
                max_elements=int(domain["max_elements"]),
                n_encoder=int(domain["n_encoder"]),
                encoder_seed=int(domain.get("encoder_seed", 0)),
                panels_per_element=int(domain["panels_per_element"]),
                min_wall_distance=float(domain.get("min_wall_distance", 0.0)),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest domain is incomplete or malformed: {exc!r}") from None
        if not (x1 > x0 and y1 > y0):
            raise ManifestError(f"manifest domain box {domain['box']} is empty")
        if out.max_elements < 1 or out.n_encoder < 2:
            raise ManifestError("manifest domain needs max_elements >= 1 and n_encoder >= 2")
        if out.panels_per_element < 8 or out.panels_per_element % 2:
            raise ManifestError(
                f"manifest panels_per_element must be even and >= 8, got {out.panels_per_element}"
            )
        return out

    # -- geometries ------------------------------------------------------------------------

    def naca_geometry(self, code: str) -> tuple[list[F64], list[Notice]]:
        """The NACA section as training built it: naca4(code, panels_per_element)."""
        try:
            m, p, t = parse_naca(code)
            polylines = [naca4(code, self.panels_per_element)]
        except ValueError as exc:
            raise InvalidInputError(f"geometry.naca: {exc}", "geometry") from None
        _check_crossings(polylines, "geometry.naca")
        notices = []
        values = {"m": m, "p": p, "t": t}
        outside = [
            f"{k} = {values[k]:g} (trained {lo:g}..{hi:g})"
            for k, (lo, hi) in self.naca.items()
            if k in values and not (k == "p" and m == 0.0) and not lo <= values[k] <= hi
        ]
        if outside:
            notices.append(
                Notice(
                    "geometry",
                    "naca_outside_trained_range",
                    f"NACA {code.strip()}: {', '.join(outside)}; the prediction is an "
                    "extrapolation",
                )
            )
        return polylines, notices

    def curve_geometry(self, curves: Sequence[F64]) -> tuple[list[F64], list[Notice]]:
        """Closed polylines from a client: validated, closed explicitly, duplicates dropped."""
        if len(curves) > self.max_elements:
            raise InvalidInputError(
                f"geometry.curves: {len(curves)} elements; the model was trained on at most "
                f"{self.max_elements}",
                "geometry",
            )
        for i, curve in enumerate(curves):
            if curve.shape[1] != 2:
                raise InvalidInputError(
                    f"geometry.curves[{i}]: points must have 2 coordinates [x, y], got "
                    f"{curve.shape[1]}",
                    "geometry",
                )
        total = sum(len(c) for c in curves)
        if total > MAX_CURVE_POINTS:
            raise InvalidInputError(
                f"geometry.curves: {total} points in all, more than the limit of "
                f"{MAX_CURVE_POINTS}",
                "geometry",
            )
        if any(np.abs(c).max() > _F32_MAX for c in curves):
            raise InvalidInputError(
                "geometry.curves: coordinates must lie within the float32 range", "geometry"
            )
        try:
            polylines = check_polylines([_drop_repeats(c) for c in curves])
        except ValueError as exc:
            raise InvalidInputError(f"geometry.curves: {exc}", "geometry") from None
        _check_crossings(polylines, "geometry.curves")
        notices = []
        (x0, x1), (y0, y1) = self.box
        vertices = np.concatenate(polylines)
        out = (
            (vertices[:, 0] < x0)
            | (vertices[:, 0] > x1)
            | (vertices[:, 1] < y0)
            | (vertices[:, 1] > y1)
        )
        if out.any():
            notices.append(
                Notice(
                    "geometry",
                    "geometry_outside_box",
                    f"{int(out.sum())} of {len(vertices)} curve points lie outside the trained "
                    f"box x {_fmt(self.box[0])}, y {_fmt(self.box[1])} chords; the prediction "
                    "is an extrapolation",
                )
            )
        return polylines, notices

    # -- conditions ------------------------------------------------------------------------

    def conditions(
        self, aoa_deg: float, speed: float, field: str = "conditions"
    ) -> tuple[NDArray[np.float32], list[Notice]]:
        """[aoa_deg, speed] for the decoder; a speed <= 0 has no flow to predict (422)."""
        if not speed > 0.0:
            raise InvalidInputError(
                f"{field}.speed must be positive (free-stream speed), got {speed:g}", field
            )
        if abs(aoa_deg) > _F32_MAX or speed > _F32_MAX:
            raise InvalidInputError(f"{field}: values must lie within the float32 range", field)
        notices = []
        for name, value, (lo, hi), unit in (
            ("aoa_deg", aoa_deg, self.aoa_deg, " deg"),
            ("speed", speed, self.speed, ""),
        ):
            if not lo <= value <= hi:
                code = f"{name.removesuffix('_deg')}_outside_trained_range"
                notices.append(
                    Notice(
                        field,
                        code,
                        f"{name} = {value:g} is outside the trained range [{lo:g}, {hi:g}]{unit}; "
                        "the prediction is an extrapolation",
                    )
                )
        return np.array([aoa_deg, speed], dtype=np.float32), notices

    # -- query points ----------------------------------------------------------------------

    def grid_counts(self, nx: int, ny: int, max_points: int) -> None:
        """Checked before any grid is built: a huge nx must cost nothing."""
        if nx * ny > max_points:
            raise InvalidInputError(
                f"a grid of {nx} x {ny} = {nx * ny} points is more than the limit of "
                f"{max_points} points",
                "query",
            )

    def grid(
        self, nx: int, ny: int, bounds: tuple[Range, Range] | None, polylines: Sequence[F64]
    ) -> tuple[GridPoints, F64]:
        """nx x ny points from lo to hi inclusive (the trained box by default), those inside a
        body dropped; and the kept points' signed distance."""
        (x0, x1), (y0, y1) = bounds if bounds is not None else self.box
        for axis, lo, hi in (("x", x0, x1), ("y", y0, y1)):
            if not lo < hi:
                raise InvalidInputError(
                    f"query.grid.bounds: the {axis} range [{lo:g}, {hi:g}] is empty; give "
                    "[[x0, x1], [y0, y1]] with x0 < x1 and y0 < y1",
                    "query",
                )
            if max(abs(lo), abs(hi)) > _F32_MAX:
                raise InvalidInputError(
                    "query.grid.bounds must lie within the float32 range", "query"
                )
        points = grid_points([x0, y0], [x1, y1], [nx, ny])
        sdf = self.signed_distance(points, polylines)
        index = np.flatnonzero(sdf >= 0.0)
        if index.size == 0:
            raise InvalidInputError(
                "query.grid: no point of this grid lies in the fluid; use other bounds", "query"
            )
        grid = GridPoints(points[index], index, (nx, ny), (x0, y0), (x1, y1))
        return grid, sdf[index]

    def place(
        self, points: F64, polylines: Sequence[F64], sdf: F64 | None = None, field: str = "query"
    ) -> Placed:
        """Explicit points: inside a body is refused (422), outside the box or nearer a wall
        than the training data came is answered with a warning."""
        if np.abs(points).max() > _F32_MAX:
            raise InvalidInputError(f"{field}: points must lie within the float32 range", field)
        if sdf is None:
            sdf = self.signed_distance(points, polylines)
        bad = sdf < 0.0
        if bad.any():
            first = int(np.argmax(bad))
            raise InvalidInputError(
                f"{int(bad.sum())} query point(s) lie inside a body, the first "
                f"{field}.points[{first}] = {_fmt(points[first])}; the flow there has no "
                "meaning",
                field,
            )
        return Placed(points, sdf, tuple(self.check_points(points, sdf, field)))

    def check_points(self, points: F64, sdf: F64, field: str = "query") -> list[Notice]:
        notices = []
        (x0, x1), (y0, y1) = self.box
        out = (points[:, 0] < x0) | (points[:, 0] > x1) | (points[:, 1] < y0) | (points[:, 1] > y1)
        if out.any():
            notices.append(
                Notice(
                    field,
                    "query_outside_box",
                    f"{int(out.sum())} of {len(points)} query points lie outside the trained box "
                    f"x {_fmt(self.box[0])}, y {_fmt(self.box[1])} chords; the prediction is an "
                    "extrapolation there",
                )
            )
        near = sdf < self.min_wall_distance
        if near.any():
            notices.append(
                Notice(
                    field,
                    "query_near_wall",
                    f"{int(near.sum())} of {len(points)} query points are closer to a body than "
                    f"{self.min_wall_distance:g} chords, nearer than any training point; the "
                    "prediction may be inaccurate there",
                )
            )
        return notices

    @staticmethod
    def signed_distance(points: F64, polylines: Sequence[F64]) -> F64:
        """geometry.airfoils.signed_distance in blocks, so memory stays bounded for any size."""
        segments = sum(len(p) - 1 for p in polylines)
        rows = max(64, _SDF_BLOCK // max(segments, 1))
        if len(points) <= rows:
            return signed_distance(points, polylines)
        out = np.empty(len(points))
        for start in range(0, len(points), rows):
            out[start : start + rows] = signed_distance(points[start : start + rows], polylines)
        return out


def _range(value: Any) -> Range:
    lo, hi = (float(v) for v in value)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"range {value!r} is not [lo, hi]")
    return lo, hi


def _drop_repeats(curve: F64) -> F64:
    """Consecutive repeated points (zero-length segments) carry nothing: dropped."""
    if len(curve) < 2:
        return curve
    keep = np.ones(len(curve), dtype=bool)
    keep[1:] = np.any(curve[1:] != curve[:-1], axis=1)
    return curve[keep]


def _cross(o: F64, u: F64, v: F64) -> F64:
    return (u[..., 0] - o[..., 0]) * (v[..., 1] - o[..., 1]) - (u[..., 1] - o[..., 1]) * (
        v[..., 0] - o[..., 0]
    )


def _check_crossings(polylines: Sequence[F64], field_path: str) -> None:
    """422 for a self-intersecting curve, a curve that doubles back on itself, two elements
    whose curves cross, or one element inside another."""
    starts = np.concatenate([p[:-1] for p in polylines])
    ends = np.concatenate([p[1:] for p in polylines])
    element = np.concatenate([np.full(len(p) - 1, i) for i, p in enumerate(polylines)])
    position = np.concatenate([np.arange(len(p) - 1) for p in polylines])
    length = np.concatenate([np.full(len(p) - 1, len(p) - 1) for p in polylines])
    n = len(starts)

    # Neighbours share a vertex by construction; they overlap only when the curve turns back.
    nxt = np.where(position + 1 < length, np.arange(n) + 1, np.arange(n) - position)
    u, v = ends - starts, ends[nxt] - starts[nxt]
    turn = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    scale = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
    back = (np.abs(turn) <= 1e-12 * scale) & (np.sum(u * v, axis=1) < 0)
    if back.any():
        i = int(np.argmax(back))
        raise InvalidInputError(
            f"{field_path}[{int(element[i])}] doubles back on itself at point "
            f"{int(position[nxt[i]])}",
            "geometry",
        )

    lo, hi = np.minimum(starts, ends), np.maximum(starts, ends)
    rows = max(1, _PAIR_BLOCK // max(n, 1))
    for first in range(0, n, rows):
        rs = np.arange(first, min(first + rows, n))[:, None]  # (r, 1)
        cs = np.arange(first, n)[None, :]  # (1, n - first): pairs cs > rs only
        a, b, c, d = starts[rs], ends[rs], starts[cs], ends[cs]
        d1, d2 = _cross(c, d, a), _cross(c, d, b)
        d3, d4 = _cross(a, b, c), _cross(a, b, d)
        boxes = np.all((lo[rs] <= hi[cs]) & (lo[cs] <= hi[rs]), axis=-1)
        meet = (d1 * d2 <= 0) & (d3 * d4 <= 0) & boxes
        same = element[rs] == element[cs]
        adjacent = same & ((nxt[rs] == cs) | (nxt[cs] == rs))
        meet &= (cs > rs) & ~adjacent
        if meet.any():
            r, k = (int(v) for v in np.argwhere(meet)[0])
            seg_a, seg_b = first + r, first + k
            ei, ej = int(element[seg_a]), int(element[seg_b])
            if ei == ej:
                raise InvalidInputError(
                    f"{field_path}[{ei}] intersects itself (segments {int(position[seg_a])} "
                    f"and {int(position[seg_b])})",
                    "geometry",
                )
            raise InvalidInputError(
                f"{field_path}: elements {ei} and {ej} cross or touch", "geometry"
            )
    for i, p in enumerate(polylines):
        for j, q in enumerate(polylines):
            if i != j and bool(inside(q[:1], [p])[0]):
                raise InvalidInputError(
                    f"{field_path}: element {j} lies inside element {i}", "geometry"
                )
