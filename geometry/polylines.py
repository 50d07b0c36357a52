"""Closed polylines as bodies in a 2-D domain: validation, signed distances and the point sets an
enf2enf model sees (numpy only; training and serving share it).

- A body is a closed polyline (K + 1, 2) whose last point equals its first; functions that take
  polylines from outside accept either orientation, close an open polyline implicitly and skip
  an all-NaN polyline (the padding of a dataset's absent element).
- A signed distance is positive in the domain (outside every body) and negative inside a body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]
Floats = NDArray[np.floating[Any]]  # float64, or float32 where a search tolerates its rounding
Range = tuple[float, float]


def check_polylines(polylines: Sequence[ArrayLike]) -> list[Array]:
    """Validate closed bodies given from outside; returns float64 arrays, closed explicitly."""
    if len(polylines) == 0:
        raise ValueError("at least one body polyline is needed")
    out = []
    for i, poly in enumerate(polylines):
        arr = np.asarray(poly, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"body {i} must be a list of [x, y] points, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"body {i} has non-finite coordinates")
        if not np.array_equal(arr[0], arr[-1]):
            arr = np.concatenate([arr, arr[:1]], axis=0)
        if len(arr) < 4:
            raise ValueError(f"body {i} needs at least 3 distinct points")
        if abs(polygon_area(arr)) < 1e-12:
            raise ValueError(f"body {i} encloses no area")
        out.append(arr)
    return out


def polygon_area(poly: Array) -> float:
    """Signed area (shoelace) of a closed polyline: negative when clockwise."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def _closed(poly: ArrayLike) -> Array:
    arr = np.asarray(poly, dtype=np.float64)
    if not np.array_equal(arr[0], arr[-1]):
        arr = np.concatenate([arr, arr[:1]], axis=0)
    return arr


def _bodies(polylines: Sequence[ArrayLike]) -> list[Array]:
    """Closed float64 polylines; an all-NaN one is padding (a dataset's absent second element)."""
    arrays = [np.asarray(p, dtype=np.float64) for p in polylines]
    closed = [_closed(a) for a in arrays if a.size and not np.isnan(a).all()]
    if not closed:
        raise ValueError("no body polyline given (all were empty or NaN padding)")
    return closed


def _segments(polylines: Sequence[ArrayLike]) -> tuple[Array, Array]:
    """Start and end points (K_total, 2) of every segment of every body."""
    closed = _bodies(polylines)
    a = np.concatenate([c[:-1] for c in closed], axis=0)
    b = np.concatenate([c[1:] for c in closed], axis=0)
    return a, b


# Block size of the point-segment loops, as (point, segment) pairs: each (block, K) float64
# temporary (1 MB) then stays in the cache. Measured, 2,000 points x 160 segments: 7.3 ms in
# blocks of 2,048 points, 1.9 ms in blocks of 1,024 or fewer.
_PAIRS_PER_BLOCK = 1 << 17


def _block(n_segments: int) -> int:
    return max(16, _PAIRS_PER_BLOCK // max(n_segments, 1))


def _squared_distances(
    px: Floats, py: Floats, ax: Floats, ay: Floats, abx: Floats, aby: Floats, inv_len2: Floats
) -> Floats:
    """|p - q|^2 (n, m) from points (n, 1) to segments a + w (b - a), w in [0, 1]: px, py
    (n, 1); the segments' columns (m,) for the same segments for every point or (n, m) for
    each point's own; computed in place, so no (n, m, 2) buffers. The inputs' dtype is kept."""
    dx = px - ax  # (n, m): p - a
    dy = py - ay
    w = dx * abx
    w += dy * aby
    w *= inv_len2
    np.clip(w, 0.0, 1.0, out=w)  # nearest point a + w (b - a) on each segment
    dx -= w * abx
    dy -= w * aby
    dx *= dx
    dy *= dy
    dx += dy
    return dx


def _outward_normals(t: Array, area_sign: float | Array) -> Array:
    """Unit outward normals (K, 2) of segments with directions t (K, 2) on bodies whose signed
    area has the sign area_sign: right of the direction of travel on a counter-clockwise body."""
    n = np.stack([t[:, 1], -t[:, 0]], axis=1) * area_sign
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def unsigned_distance(points: Array, polylines: Sequence[ArrayLike]) -> Array:
    a, b = _segments(polylines)
    ab = b - a  # (K, 2)
    inv_len2 = 1.0 / np.maximum(np.sum(ab * ab, axis=1), 1e-300)  # (K,)
    ax, ay, abx, aby = a[:, 0], a[:, 1], ab[:, 0], ab[:, 1]
    out = np.empty(len(points))
    step = _block(len(a))
    for s in range(0, len(points), step):
        p = points[s : s + step]
        d2 = _squared_distances(p[:, 0:1], p[:, 1:2], ax, ay, abx, aby, inv_len2)
        out[s : s + step] = np.sqrt(d2.min(axis=1))
    return out


def _inside(points: Array, polylines: Sequence[ArrayLike]) -> NDArray[np.bool_]:
    """Even-odd ray casting against every body at once (bodies do not overlap)."""
    a, b = _segments(polylines)
    out = np.empty(len(points), dtype=bool)
    dy = np.where(b[:, 1] == a[:, 1], 1.0, b[:, 1] - a[:, 1])  # no division by 0 (unused)
    slope = (b[:, 0] - a[:, 0]) / dy  # (K,)
    step = _block(len(a))
    for s in range(0, len(points), step):
        px = points[s : s + step, 0:1]  # (n, 1)
        py = points[s : s + step, 1:2]
        straddle = (a[None, :, 1] > py) != (b[None, :, 1] > py)  # (n, K)
        x_cross = a[:, 0] + (py - a[:, 1]) * slope  # (n, K)
        out[s : s + step] = np.sum(straddle & (px < x_cross), axis=1) % 2 == 1
    return out


def inside(points: ArrayLike, polylines: Sequence[ArrayLike]) -> NDArray[np.bool_]:
    """True for points (N, 2) strictly inside any body."""
    return _inside(np.asarray(points, dtype=np.float64).reshape(-1, 2), polylines)


# Consecutive segments per bounding circle, and how many nearest circles each point searches
# before the bound proves no other can hold a nearer segment.
_GROUP, _NEAREST_GROUPS = 8, 4


class _Surface:
    """Every non-degenerate segment of every body with its outward unit normal, the normals'
    sums at its two ends (the vertex pseudo-normals, which give the sign where the nearest
    point is a vertex), and bounding circles over runs of _GROUP consecutive segments."""

    def __init__(self, polylines: Sequence[ArrayLike]) -> None:
        starts, ends, normals, prev, nxt, turning = [], [], [], [], [], []
        members: list[NDArray[np.intp]] = []
        offset = 0
        for body in _bodies(polylines):
            a, b = body[:-1], body[1:]
            keep = np.any(a != b, axis=1)  # repeated points make zero-length segments
            a, b = a[keep], b[keep]
            k = len(a)
            idx = offset + np.arange(k)
            starts.append(a)
            ends.append(b)
            orientation = np.sign(polygon_area(body))
            normals.append(_outward_normals(b - a, orientation))
            turning.append(np.full(k, orientation))  # outward normals turn this way if convex
            prev.append(np.roll(idx, 1))
            nxt.append(np.roll(idx, -1))
            for g in range(0, k, _GROUP):  # padded with the run's last segment (harmless)
                run = idx[g : g + _GROUP]
                members.append(np.concatenate([run, np.full(_GROUP - len(run), run[-1])]))
            offset += k
        self.a = np.concatenate(starts)  # (K, 2)
        self.ab = np.concatenate(ends) - self.a
        self.inv_len2 = 1.0 / np.sum(self.ab * self.ab, axis=1)  # (K,)
        normal = np.concatenate(normals)
        p, q = np.concatenate(prev), np.concatenate(nxt)
        self.normal, self.at_a, self.at_b = normal, normal + normal[p], normal + normal[q]
        self.prev_segment, self.next_segment = p, q
        self.turning = np.concatenate(turning)  # (K,) +-1: the sense a convex body's normals turn
        self.members = np.stack(members)  # (G, _GROUP) segment indices
        run_a = self.a[self.members]  # (G, _GROUP, 2)
        ends_of = np.concatenate([run_a, run_a + self.ab[self.members]], axis=1)
        self.center = ends_of.mean(axis=1)  # (G, 2)
        # Segments lie in the hull of their end points, so within the farthest end's radius.
        self.radius = np.linalg.norm(ends_of - self.center[:, None], axis=2).max(axis=1)
        # Per segment [ax, ay, abx, aby, 1 / |ab|^2] in float32 for the search, about the
        # bodies' own centre so that float32 keeps their scale's precision wherever they lie;
        # and the same run by run, so a point's candidate runs come out in one gather.
        self.origin = self.a.mean(axis=0)
        rows = [self.a - self.origin, self.ab, self.inv_len2]
        self.table = np.column_stack(rows).astype(np.float32)
        self.runs = self.table[self.members]  # (G, _GROUP, 5)

    def curvature(self) -> Array:
        """(K,) at each segment's start vertex: the turn from the previous segment's outward
        normal to this one's (positive where the body is convex), over half their lengths.
        Only surface_features needs it: signed_distance (the service's hot path) does not pay."""
        p, n = self.prev_segment, self.normal
        turn = self.turning * np.arctan2(
            n[p, 0] * n[:, 1] - n[p, 1] * n[:, 0], np.sum(n[p] * n, axis=1)
        )
        length = np.sqrt(np.sum(self.ab * self.ab, axis=1))
        return turn / (0.5 * (length[p] + length))

    @staticmethod
    def nearest(p: NDArray[np.float32], seg: NDArray[np.float32]) -> NDArray[np.intp]:
        """Column of the nearest segment for points p (n, 2) among seg (..., 5), rows of the
        table: (K, 5) for every segment or (n, m, 5) for each point's own candidates."""
        cols = (seg[..., i] for i in range(5))  # ax, ay, abx, aby, 1 / |ab|^2: (K,) or (n, m)
        return _squared_distances(p[:, 0:1], p[:, 1:2], *cols).argmin(axis=1)  # (n,)

    def exact(self, p: Array, seg: NDArray[np.intp]) -> tuple[Array, Array, Array]:
        """Float64 projection parameter w (n,), p - q (n, 2) and |p - q| (n,) for points p
        (n, 2) and one segment each, q = a + w (b - a) its nearest point."""
        ab = self.ab[seg]  # (n, 2)
        rel = p - self.a[seg]
        w = np.clip(np.sum(rel * ab, axis=1) * self.inv_len2[seg], 0.0, 1.0)
        rel -= w[:, None] * ab
        return w, rel, np.sqrt(np.sum(rel * rel, axis=1))


def _nearest_surface(pts: Array, surf: _Surface) -> tuple[NDArray[np.intp], Array, Array, Array]:
    """For points (N, 2): the nearest segment (N,), its projection parameter w (N,), p - q
    (N, 2) and |p - q| (N,), q the nearest surface point.

    Without visiting every segment for every point: each point searches the segments of the
    _NEAREST_GROUPS bounding circles nearest to it, and only where the next circle's lower
    bound |p - c| - r is not beyond the distance found does it search them all. The search is
    in float32; the distance to the segment it finds is then taken in float64 (the same as a
    search over every segment, but where two segments are within float32 rounding of each
    other).
    """
    n_groups = len(surf.members)
    k = min(_NEAREST_GROUPS, n_groups)
    seg_out = np.empty(len(pts), dtype=np.intp)
    w_out, dist_out, rel_out = np.empty(len(pts)), np.empty(len(pts)), np.empty((len(pts), 2))
    m = k * _GROUP  # candidate segments per point
    step = _block(m + n_groups)
    for s in range(0, len(pts), step):
        p = pts[s : s + step]
        p32 = (p - surf.origin).astype(np.float32)
        dx = p[:, 0:1] - surf.center[:, 0]  # (n, G), float64: the bound must hold exactly
        dy = p[:, 1:2] - surf.center[:, 1]
        dx *= dx
        dy *= dy
        dx += dy
        lower = np.sqrt(dx, out=dx)
        lower -= surf.radius  # (n, G): no segment of circle g is nearer than this
        if k < n_groups:
            order = np.argpartition(lower, k, axis=1)  # the k smallest first, then the k-th
            groups, beyond = order[:, :k], np.take_along_axis(lower, order[:, k : k + 1], 1)
            col = surf.nearest(p32, surf.runs[groups].reshape(len(p), m, 5))
            seg = np.take_along_axis(surf.members[groups].reshape(len(p), m), col[:, None], 1)
            seg = seg[:, 0]
        else:
            seg, beyond = surf.nearest(p32, surf.table), None
        w, rel, dist = surf.exact(p, seg)
        if beyond is not None:
            unsure = np.flatnonzero(beyond[:, 0] < dist)
            if unsure.size:  # a circle not searched may hold a nearer segment
                seg[unsure] = surf.nearest(p32[unsure], surf.table)
                w[unsure], rel[unsure], dist[unsure] = surf.exact(p[unsure], seg[unsure])
        seg_out[s : s + step], w_out[s : s + step] = seg, w
        rel_out[s : s + step], dist_out[s : s + step] = rel, dist
    return seg_out, w_out, rel_out, dist_out


def _signed(
    points: ArrayLike, polylines: Sequence[ArrayLike]
) -> tuple[_Surface, NDArray[np.intp], Array, Array, Array]:
    """The surface, each point's nearest segment and projection parameter w, its signed
    distance (N,), and the outward normal (N, 2, not unit at vertices) at its nearest point:
    the segment's, or the sum of the two adjacent ones where that point is a vertex."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    surf = _Surface(polylines)
    seg, w, rel, dist = _nearest_surface(pts, surf)
    normal = np.where(
        (w <= 0.0)[:, None],
        surf.at_a[seg],
        np.where((w >= 1.0)[:, None], surf.at_b[seg], surf.normal[seg]),
    )
    return surf, seg, w, np.where(np.sum(rel * normal, axis=1) < 0.0, -dist, dist), normal


def signed_distance(points: ArrayLike, polylines: Sequence[ArrayLike]) -> Array:
    """Distance (N,) to the nearest body surface: positive in the domain, negative inside.

    The sign is that of (p - q) . n, with q the nearest surface point and n the outward
    normal there (the sum of the two adjacent normals at a vertex), which for closed bodies
    that do not overlap agrees with an even-odd inside test.
    """
    return _signed(points, polylines)[3]


def surface_features(points: ArrayLike, polylines: Sequence[ArrayLike]) -> Array:
    """(N, 4): signed distance, and at the nearest surface point the boundary's curvature
    (1 / length, positive where the body is convex: 1 / R on a circle of radius R) and unit
    outward normal (x, y): the segment's, or at a vertex the mean of its two segments'. For a
    point on the surface itself the nearest segment is a matter of rounding, so its normal may
    be either adjacent segment's (they differ by the turn at the vertex between them).

    The local shape a field depends on most near a body (a stress concentration follows the
    curvature), exactly, for a model that would otherwise know it only through its latents.
    The curvature at a vertex is the turning angle over half the two adjacent segments'
    lengths (exact on a regular polygon inscribed in a circle), interpolated along each
    segment.
    """
    surf, seg, w, sdf, normal = _signed(points, polylines)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    kappa = surf.curvature()  # (K,)
    curvature = (1.0 - w) * kappa[seg] + w * kappa[surf.next_segment[seg]]
    return np.column_stack([sdf, curvature, normal])


def polylines_intersect(p: Array, q: Array) -> bool:
    """Whether any segment of closed polyline p properly crosses or touches one of q."""
    a, b = p[:-1, None, :], p[1:, None, :]  # (Kp, 1, 2)
    c, d = q[None, :-1, :], q[None, 1:, :]  # (1, Kq, 2)

    def cross(o: Array, u: Array, v: Array) -> Array:
        return (u[..., 0] - o[..., 0]) * (v[..., 1] - o[..., 1]) - (u[..., 1] - o[..., 1]) * (
            v[..., 0] - o[..., 0]
        )

    d1, d2 = cross(c, d, a), cross(c, d, b)  # (Kp, Kq): sides of p's ends about q's segments
    d3, d4 = cross(a, b, c), cross(a, b, d)
    return bool(np.any((d1 * d2 <= 0) & (d3 * d4 <= 0)))


def _surface_samples(
    polylines: Sequence[ArrayLike], n: int, rng: np.random.Generator
) -> tuple[Array, Array]:
    """n points uniform in arc length over all bodies, with the outward unit normal at each."""
    a, b = _segments(polylines)
    # Orientation of each segment's body, so the normal points out whichever way it was drawn.
    signs = np.concatenate(
        [np.full(len(p) - 1, np.sign(polygon_area(p))) for p in _bodies(polylines)]
    )
    seg = b - a  # (K, 2)
    length = np.linalg.norm(seg, axis=1)
    k = rng.choice(len(seg), size=n, p=length / length.sum())
    w = rng.uniform(0.0, 1.0, n)
    pts = a[k] + w[:, None] * seg[k]
    # Zero-length segments have probability 0, so every normal here is defined.
    return pts, _outward_normals(seg[k], signs[k, None])


def _uniform_in_box(box: Sequence[Sequence[float]], n: int, rng: np.random.Generator) -> Array:
    lo = np.array([box[0][0], box[1][0]], dtype=np.float64)
    hi = np.array([box[0][1], box[1][1]], dtype=np.float64)
    return rng.uniform(lo, hi, size=(n, 2))


def _in_box(points: Array, box: Sequence[Sequence[float]]) -> NDArray[np.bool_]:
    return (
        (points[:, 0] >= box[0][0])
        & (points[:, 0] <= box[0][1])
        & (points[:, 1] >= box[1][0])
        & (points[:, 1] <= box[1][1])
    )


def encoder_points(
    polylines: Sequence[ArrayLike],
    n: int,
    box: Sequence[Sequence[float]],
    seed: int = 0,
) -> tuple[Array, Array]:
    """The point set (n, 2) and its signed distance (n,) that the geometry encoder fits.

    Half the points lie within about 0.1 chord of a surface, on either side (normal offsets
    log-uniform in [1e-3, 0.1] with a random sign), so the zero level set and both signs are
    well covered; the other half are uniform in the box. Deterministic for a seed: serving calls
    it with the default seed, so one geometry always gives the same latents.
    """
    if n < 2:
        raise ValueError(f"encoder needs at least 2 points, got {n}")
    rng = np.random.default_rng(seed)
    n_near = n // 2
    base, normal = _surface_samples(polylines, n_near, rng)
    offset = np.exp(rng.uniform(np.log(1e-3), np.log(0.1), n_near))
    offset *= rng.choice([-1.0, 1.0], n_near)
    near = base + offset[:, None] * normal
    pts = np.concatenate([near, _uniform_in_box(box, n - n_near, rng)], axis=0)  # (n, 2)
    return pts, signed_distance(pts, polylines)


def field_points(
    polylines: Sequence[ArrayLike],
    n: int,
    box: Sequence[Sequence[float]],
    wall_offsets: Range,
    near_wall_fraction: float = 0.5,
    rng: np.random.Generator | None = None,
) -> Array:
    """Query points (n, 2) in the fluid and the box, none inside a body.

    A fraction `near_wall_fraction` sits at outward normal offsets log-uniform in
    `wall_offsets` from points uniform in arc length on the surfaces (boundary layer-like
    clustering); the rest are uniform in the box. No point is closer to a body than
    wall_offsets[0]: nearer than that a panel solution's velocity is not trustworthy.
    """
    if not 0.0 <= near_wall_fraction <= 1.0:
        raise ValueError(f"near_wall_fraction must be in [0, 1], got {near_wall_fraction}")
    lo_off, hi_off = wall_offsets
    if not 0.0 < lo_off < hi_off:
        raise ValueError(f"wall_offsets must satisfy 0 < lo < hi, got {wall_offsets}")
    rng = np.random.default_rng() if rng is None else rng
    n_near = round(n * near_wall_fraction)
    parts: list[Array] = []
    for count, near in ((n_near, True), (n - n_near, False)):
        got: list[Array] = []
        have = 0
        while have < count:
            want = max(16, int(1.3 * (count - have)))
            if near:
                base, normal = _surface_samples(polylines, want, rng)
                offset = np.exp(rng.uniform(np.log(lo_off), np.log(hi_off), want))
                cand = base + offset[:, None] * normal
            else:
                cand = _uniform_in_box(box, want, rng)
            # An offset point can land in the other element of a slotted flap or leave the box.
            keep = _in_box(cand, box)
            keep[keep] = signed_distance(cand[keep], polylines) >= lo_off
            got.append(cand[keep])
            have += int(keep.sum())
        parts.append(np.concatenate(got, axis=0)[:count] if count else np.zeros((0, 2)))
    return np.concatenate(parts, axis=0)
