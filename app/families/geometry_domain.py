"""The region an enf2enf geometry model was trained on, its geometries, its conditions, and the
policy for requests outside it.

One `GeometryDomain` serves every enf2enf task: the generic manifest ("geometry-fields": a box,
named conditions, optionally a trained shape range) and the airfoil one ("airfoil-flow": aoa_deg
and speed, NACA sections), mapped onto the same fields.

Hard errors (422) are requests with no meaningful answer: a malformed body (open, degenerate or
self-intersecting curves, elements that cross or nest, more elements than the model knows, an
invalid NACA code, a NACA code for a model that takes none), a condition missing, unknown, not
finite or not positive where it must be, explicit query points inside a body, and, where the box
is the domain itself (`box_is_domain`), query points or curves outside it. Soft ones (warnings)
are meaningful requests the network was not trained for: conditions outside the trained ranges,
NACA parameters or a shape outside the trained ones, a body or query points outside the trained
box, query points nearer a wall than the training data ever came. The model still answers
those; the client is told.

Every geometry function is geometry.polylines' or geometry.airfoils' (shared with training), so
a NACA section is exactly the polyline the model was trained on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from app.cache.keys import digest
from app.errors import InvalidInputError, ManifestError
from app.families.base import Notice
from geometry.airfoils import naca4, parse_naca
from geometry.grids import grid_points
from geometry.polylines import check_polylines, inside, signed_distance, surface_features

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
_F32_MAX = float(np.finfo(np.float32).max)
# The task whose manifest names aoa_deg, speed, naca and panels_per_element itself.
AIRFOIL_TASK = "airfoil-flow"


def _fmt(values: Sequence[float] | F64) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"


def refuse_points(
    bad: NDArray[np.bool_], what: str, first: Callable[[int], str], field: str
) -> None:
    """422 naming `field` when any point is `bad`: how many, `what` they are, the first one."""
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInputError(
            f"{int(bad.sum())} {what}, the first {first(i)}; the field there has no meaning",
            field,
        )


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
    """Query points checked against a geometry: their signed distance, the surface's shape at
    their nearest surface points when asked for, and the notices."""

    points: F64
    sdf: F64
    notices: tuple[Notice, ...]
    shape: F64 | None = None  # (N, 3) curvature, outward normal


def distances(points: F64, polylines: Sequence[F64], shape: bool) -> tuple[F64, F64 | None]:
    """Signed distance (N,), and with `shape` the surface's curvature and outward normal at
    each point's nearest surface point (N, 3), from one nearest-point search."""
    if not shape:
        return signed_distance(points, polylines), None
    features = surface_features(points, polylines)
    return features[:, 0], features[:, 1:]


@dataclass(frozen=True)
class Condition:
    """One global parameter of the decoder, in the order of its `conditions` input."""

    name: str
    units: str = ""
    range: Range | None = None  # trained range: outside it is answered with a warning
    positive: bool = False  # a value <= 0 has no meaning (422)
    description: str = ""


@dataclass(frozen=True)
class StarShape:
    """Trained shapes star-shaped about `center`: every vertex's radius within `radius`."""

    center: tuple[float, float]
    radius: Range

    # Slack before a shape counts as outside the trained ones: 5% of the radius range for the
    # vertices, 5% of the smallest radius for the centroid.
    RADIUS_SLACK = 0.05
    CENTER_SLACK = 0.05

    @property
    def max_centroid_offset(self) -> float:
        """The farthest the area centroid of a shape with every radius in [r0, r1] lies from
        the centre: radius r1 on one half, r0 on the other. (Trained shapes are not centred
        on their centroid: Geo-FNO's random voids, radii in (0.2, 0.4), have theirs 0.05 from
        the centre at the median, 0.11 at the 99th percentile; this bound is 0.119.)"""
        r0, r1 = self.radius
        return 4.0 * (r1**3 - r0**3) / (3.0 * math.pi * (r1**2 + r0**2))


@dataclass(frozen=True)
class GeometryDomain:
    box: tuple[Range, Range]
    conditions: tuple[Condition, ...]
    max_elements: int
    n_encoder: int
    encoder_seed: int = 0
    min_wall_distance: float = 0.0
    # Points outside the box are outside the domain (a unit cell): refused, not warned about.
    box_is_domain: bool = False
    length_unit: str = ""
    # NACA sections: None when the model takes none; else the trained m, p, t ranges (may be
    # empty) and the panels per element training built them with.
    naca: Mapping[str, Range] | None = None
    panels_per_element: int = 0
    shape: StarShape | None = None
    # Warning and error fields name each condition (`conditions.load`); the airfoil task keeps
    # naming `conditions` as it always did.
    name_conditions: bool = True

    @property
    def condition_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.conditions)

    @classmethod
    def from_manifest(cls, domain: Mapping[str, Any], task: str = "geometry-fields") -> Self:
        """The manifest's domain: the generic one, or an airfoil model's (task airfoil-flow)."""
        try:
            out = cls._airfoil(domain) if task == AIRFOIL_TASK else cls._generic(domain)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest domain is incomplete or malformed: {exc!r}") from None
        (x0, x1), (y0, y1) = out.box
        if not (x1 > x0 and y1 > y0):
            raise ManifestError(f"manifest domain box {domain['box']} is empty")
        if out.max_elements < 1 or out.n_encoder < 2:
            raise ManifestError("manifest domain needs max_elements >= 1 and n_encoder >= 2")
        if out.naca is not None and (out.panels_per_element < 8 or out.panels_per_element % 2):
            raise ManifestError(
                f"manifest panels_per_element must be even and >= 8, got {out.panels_per_element}"
            )
        names = out.condition_names
        if not names or len(set(names)) != len(names) or not all(names):
            raise ManifestError(
                f"manifest domain conditions must have distinct non-empty names, got {names}"
            )
        return out

    @classmethod
    def _airfoil(cls, domain: Mapping[str, Any]) -> Self:
        """An airfoil manifest: conditions aoa_deg [deg] and speed (> 0), NACA sections; read
        as the generic domain it amounts to, with its errors naming `conditions` as before."""
        generic = {
            **domain,
            "length_unit": domain.get("length_unit", "chords"),
            "naca": domain.get("naca", {}),
            "conditions": [
                {"name": "aoa_deg", "units": "deg", "range": domain["aoa_deg"],
                 "description": "angle of attack"},
                {"name": "speed", "units": "", "range": domain["speed"], "positive": True,
                 "description": "free-stream speed"},
            ],
        }  # fmt: skip
        return replace(cls._generic(generic), name_conditions=False)

    @classmethod
    def _generic(cls, domain: Mapping[str, Any]) -> Self:
        conditions = tuple(
            Condition(
                name=str(c["name"]),
                units=str(c.get("units", "")),
                range=_range(c["range"]) if c.get("range") is not None else None,
                positive=bool(c.get("positive", False)),
                description=str(c.get("description", "")),
            )
            for c in domain["conditions"]
        )
        naca = None
        panels = 0
        if domain.get("naca") is not None:
            naca = {k: _range(v) for k, v in dict(domain["naca"]).items()}
            panels = int(domain["panels_per_element"])
        return cls(
            box=_box(domain["box"]),
            conditions=conditions,
            max_elements=int(domain["max_elements"]),
            n_encoder=int(domain["n_encoder"]),
            encoder_seed=int(domain.get("encoder_seed", 0)),
            min_wall_distance=float(domain.get("min_wall_distance", 0.0)),
            box_is_domain=bool(domain.get("box_is_domain", False)),
            length_unit=str(domain.get("length_unit", "")),
            naca=naca,
            panels_per_element=panels,
            shape=_shape(domain.get("shape")),
        )

    def _in(self, what: str) -> str:
        """`what` followed by the length unit, when the manifest names one."""
        return f"{what} {self.length_unit}" if self.length_unit else what

    def _box_text(self) -> str:
        return self._in(f"x {_fmt(self.box[0])}, y {_fmt(self.box[1])}")

    def outside_box(self, points: F64) -> NDArray[np.bool_]:
        (x0, x1), (y0, y1) = self.box
        return (points[:, 0] < x0) | (points[:, 0] > x1) | (points[:, 1] < y0) | (points[:, 1] > y1)

    # -- geometries ------------------------------------------------------------------------

    def naca_geometry(self, code: str) -> tuple[list[F64], list[Notice]]:
        """The NACA section as training built it: naca4(code, panels_per_element)."""
        if self.naca is None:
            raise InvalidInputError(
                "geometry.naca: this model takes no NACA sections; send the geometry as "
                '{"curves": [[[x, y], ...]]} or {"geometry_id": ..}',
                "geometry.naca",
            )
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
        vertices = np.concatenate(polylines)
        out = self.outside_box(vertices)
        if out.any() and self.box_is_domain:
            first = int(np.argmax(out))
            raise InvalidInputError(
                f"geometry.curves: {int(out.sum())} of {len(vertices)} curve points lie outside "
                f"the domain {self._box_text()}, the first {_fmt(vertices[first])}; a body must "
                "lie inside it",
                "geometry.curves",
            )
        if out.any():
            notices.append(
                Notice(
                    "geometry",
                    "geometry_outside_box",
                    f"{int(out.sum())} of {len(vertices)} curve points lie outside the trained "
                    f"box {self._box_text()}; the prediction is an extrapolation",
                )
            )
        notices += self._check_shape(polylines)
        return polylines, notices

    def _check_shape(self, polylines: Sequence[F64]) -> list[Notice]:
        """A warning for a body outside the trained shape range (star shapes about a centre):
        vertex radii outside [r0, r1] by more than 5% of the range, a body that does not
        surround the centre, or a centroid farther from it than any such shape's."""
        shape = self.shape
        if shape is None:
            return []
        center = np.asarray(shape.center)
        r0, r1 = shape.radius
        slack = StarShape.RADIUS_SLACK * (r1 - r0)
        problems = []
        for i, poly in enumerate(polylines):
            radius = np.linalg.norm(poly[:-1] - center, axis=1)
            lo, hi = float(radius.min()), float(radius.max())
            if lo < r0 - slack or hi > r1 + slack:
                problems.append(
                    f"element {i}: vertex radii {lo:.4g}..{hi:.4g} about {_fmt(center)} "
                    f"(trained {r0:g}..{r1:g})"
                )
            if not bool(inside(center[None], [poly])[0]):
                problems.append(f"element {i} does not surround the centre {_fmt(center)}")
                continue
            offset = float(np.linalg.norm(_centroid(poly) - center))
            if offset > shape.max_centroid_offset + StarShape.CENTER_SLACK * r0:
                problems.append(
                    f"element {i}: centroid {offset:.4g} from the centre {_fmt(center)} (at "
                    f"most {shape.max_centroid_offset:.4g} for trained shapes)"
                )
        if not problems:
            return []
        return [
            Notice(
                "geometry",
                "shape_outside_trained_range",
                f"{'; '.join(problems)}; the prediction is an extrapolation",
            )
        ]

    # -- conditions ------------------------------------------------------------------------

    def condition_values(
        self, values: Mapping[str, float], field: str = "conditions"
    ) -> tuple[NDArray[np.float32], list[Notice]]:
        """The decoder's conditions vector from {name: value}: every name the manifest gives,
        no other; non-finite values and non-positive ones where positive is required are
        refused (422 naming `conditions.<name>`), values outside the trained range warned."""
        unknown = [name for name in values if name not in self.condition_names]
        if unknown:
            raise InvalidInputError(
                f"{field}.{unknown[0]}: unknown condition; the model takes "
                f"{list(self.condition_names)}",
                self._condition_field(field, unknown[0]),
            )
        missing = [name for name in self.condition_names if name not in values]
        if missing:
            raise InvalidInputError(
                f"{field}.{missing[0]}: missing; the model takes {list(self.condition_names)}",
                self._condition_field(field, missing[0]),
            )
        return self._conditions([float(values[n]) for n in self.condition_names], field)

    def condition_vector(
        self, values: NDArray[Any], field: str
    ) -> tuple[NDArray[np.float32], list[Notice]]:
        """The same policy for a conditions tensor (the V2 end-to-end model), in manifest order;
        errors and warnings name `field` itself."""
        return self._conditions([float(v) for v in values], field, tensor=True)

    def _condition_field(self, field: str, name: str) -> str:
        return f"{field}.{name}" if self.name_conditions else field

    def _conditions(
        self, values: list[float], field: str, tensor: bool = False
    ) -> tuple[NDArray[np.float32], list[Notice]]:
        notices = []
        for c, value in zip(self.conditions, values, strict=True):
            at = field if tensor else self._condition_field(field, c.name)
            what = f"{field}.{c.name}"
            if not math.isfinite(value):
                raise InvalidInputError(f"{what} must be a finite number, got {value}", at)
            if c.positive and not value > 0.0:
                about = f" ({c.description})" if c.description else ""
                raise InvalidInputError(f"{what} must be positive{about}, got {value:g}", at)
            if abs(value) > _F32_MAX:
                raise InvalidInputError(f"{what}: values must lie within the float32 range", at)
        for c, value in zip(self.conditions, values, strict=True):
            if c.range is None:
                continue
            lo, hi = c.range
            if not lo <= value <= hi:
                unit = f" {c.units}" if c.units else ""
                notices.append(
                    Notice(
                        field if tensor else self._condition_field(field, c.name),
                        f"{c.name.removesuffix('_deg')}_outside_trained_range",
                        f"{c.name} = {value:g} is outside the trained range [{lo:g}, {hi:g}]"
                        f"{unit}; the prediction is an extrapolation",
                    )
                )
        return np.array(values, dtype=np.float32), notices

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
        self,
        nx: int,
        ny: int,
        bounds: tuple[Range, Range] | None,
        polylines: Sequence[F64],
        shape: bool = False,
    ) -> tuple[GridPoints, F64, F64 | None]:
        """nx x ny points from lo to hi inclusive (the trained box by default), those inside a
        body (and, where the box is the domain, outside the box) dropped; and the kept points'
        signed distance and, with `shape`, surface shape."""
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
        sdf, local = distances(points, polylines, shape)
        keep = sdf >= 0.0
        if self.box_is_domain:
            keep &= ~self.outside_box(points)
        index = np.flatnonzero(keep)
        if index.size == 0:
            raise InvalidInputError(
                "query.grid: no point of this grid lies in the domain (outside every body"
                + (", inside the box" if self.box_is_domain else "")
                + "); use other bounds",
                "query",
            )
        grid = GridPoints(points[index], index, (nx, ny), (x0, y0), (x1, y1))
        return grid, sdf[index], None if local is None else local[index]

    def place(
        self,
        points: F64,
        polylines: Sequence[F64],
        sdf: F64 | None = None,
        field: str = "query",
        shape: bool = False,
    ) -> Placed:
        """Explicit points: inside a body (or outside the box where the box is the domain) is
        refused (422), outside the box or nearer a wall than the training data came is answered
        with a warning."""
        if np.abs(points).max() > _F32_MAX:
            raise InvalidInputError(f"{field}: points must lie within the float32 range", field)
        self.refuse_outside(points, f"{field}.points")
        local = None
        if sdf is None:
            sdf, local = distances(points, polylines, shape)
        refuse_points(
            sdf < 0.0,
            "query point(s) lie inside a body",
            lambda i: f"{field}.points[{i}] = {_fmt(points[i])}",
            field,
        )
        return Placed(points, sdf, tuple(self.check_points(points, sdf, field)), local)

    def refuse_outside(self, points: F64, field: str) -> None:
        """422 naming `field` for points outside the box where the box is the domain."""
        if not self.box_is_domain:
            return
        refuse_points(
            self.outside_box(points),
            f"point(s) lie outside the domain {self._box_text()}",
            lambda i: f"{field}[{i}] = {_fmt(points[i])}",
            field,
        )

    def check_points(self, points: F64, sdf: F64, field: str = "query") -> list[Notice]:
        notices = []
        out = self.outside_box(points)
        if out.any():
            notices.append(
                Notice(
                    field,
                    "query_outside_box",
                    f"{int(out.sum())} of {len(points)} query points lie outside the trained box "
                    f"{self._box_text()}; the prediction is an extrapolation there",
                )
            )
        near = sdf < self.min_wall_distance
        if near.any():
            notices.append(
                Notice(
                    field,
                    "query_near_wall",
                    f"{int(near.sum())} of {len(points)} query points are closer to a body than "
                    f"{self._in(f'{self.min_wall_distance:g}')}, nearer than any training point; "
                    "the prediction may be inaccurate there",
                )
            )
        return notices


def _box(value: Any) -> tuple[Range, Range]:
    (x0, x1), (y0, y1) = ((float(a), float(b)) for a, b in value)
    return (x0, x1), (y0, y1)


def _shape(value: Any) -> StarShape | None:
    """The trained shape range; a kind this service does not know is not checked."""
    if value is None or value.get("kind") != "star":
        return None
    cx, cy = (float(v) for v in value["center"])
    r0, r1 = _range(value["radius"])
    return StarShape((cx, cy), (r0, r1))


def _centroid(poly: F64) -> F64:
    """Area centroid of a closed polyline."""
    x, y = poly[:, 0], poly[:, 1]
    cross = x[:-1] * y[1:] - x[1:] * y[:-1]
    area = 0.5 * float(cross.sum())
    if abs(area) < 1e-300:
        return np.asarray(poly[:-1].mean(axis=0), dtype=np.float64)
    cx = float(((x[:-1] + x[1:]) * cross).sum()) / (6.0 * area)
    cy = float(((y[:-1] + y[1:]) * cross).sum()) / (6.0 * area)
    return np.array([cx, cy])


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
