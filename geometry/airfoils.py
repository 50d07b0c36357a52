"""Airfoils: NACA 4-digit sections, two-element (main + flap) configurations, signed distances
and the point sets the enf2enf model sees (numpy only; training and serving share it).

Conventions
-----------
- Lengths are in chords. A single NACA section runs from its leading edge (0, 0) to its
  trailing edge (1, 0).
- A body is a closed polyline of shape (K + 1, 2) whose last point equals its first (K panels).
  `naca4` walks **clockwise**: from the trailing edge along the lower surface to the leading
  edge, then back along the upper surface to the trailing edge. The outward normal of a segment
  with unit tangent (tx, ty) is therefore (-ty, tx), and the first and last panels are the lower
  and upper trailing-edge panels (what the panel method's Kutta condition pairs up).
- Functions that take polylines from outside (`signed_distance`, `inside`, `encoder_points`,
  `field_points`) accept either orientation, close an open polyline implicitly and skip an
  all-NaN polyline (the padding of a single-element sample in the dataset's `surfaces`).
- A signed distance is positive in the fluid and negative inside a body.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]
Range = tuple[float, float]

BOX: tuple[Range, Range] = ((-0.5, 1.5), (-0.75, 0.75))

# Closed-trailing-edge variant of the NACA thickness polynomial (-0.1036 instead of -0.1015):
# the section ends in a sharp point, so the Kutta condition is applied where it belongs.
_THICKNESS = (0.2969, -0.1260, -0.3516, 0.2843, -0.1036)

_CODE = re.compile(r"^\s*(?:naca)?[\s_-]*(\d+)\s*$", re.IGNORECASE)

# Normal offsets (chords) of near-wall field points, log-uniform; the lower end is also the
# closest any field point comes to a body. Nearer than ~half a panel a panel solution's
# velocity shows the polygon's corners (training/airfoils/panel.py measures it).
NEAR_WALL_OFFSETS: Range = (5e-3, 0.25)


def parse_naca(code: str) -> tuple[float, float, float]:
    """'2412' (or 'NACA 2412') -> (m, p, t) = (0.02, 0.4, 0.12) as fractions of the chord."""
    if not isinstance(code, str):
        raise ValueError(f"NACA code must be a string such as '2412', got {type(code).__name__}")
    match = _CODE.match(code)
    if match is None:
        raise ValueError(f"NACA code {code!r} is not of the form '2412' or 'NACA 2412'")
    digits = match.group(1)
    if len(digits) != 4:
        raise ValueError(
            f"NACA code {code!r} has {len(digits)} digits; only 4-digit sections are supported"
        )
    m, p, t = int(digits[0]) / 100, int(digits[1]) / 10, int(digits[2:]) / 100
    if t == 0:
        raise ValueError(f"NACA code {code!r} has zero thickness (last two digits)")
    if m > 0 and p == 0:
        raise ValueError(
            f"NACA code {code!r} has camber {digits[0]}% but no camber position (second digit 0)"
        )
    if m == 0 and p > 0:
        raise ValueError(
            f"NACA code {code!r} places the camber at {digits[1]}0% chord but has no camber; "
            f"symmetric sections are written '00{digits[2:]}'"
        )
    return m, p, t


def _section_params(code: str | Sequence[float]) -> tuple[float, float, float]:
    if isinstance(code, str):
        return parse_naca(code)
    try:
        m, p, t = (float(v) for v in code)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a section is a NACA code or (m, p, t), got {code!r}") from exc
    if not (np.isfinite([m, p, t]).all() and 0.0 <= m <= 0.095 and 0.0 < t <= 0.4):
        raise ValueError(f"section (m, p, t) = {(m, p, t)} needs 0 <= m <= 0.095, 0 < t <= 0.4")
    if m > 0 and not 0.05 <= p <= 0.95:
        raise ValueError(f"cambered section needs camber position p in [0.05, 0.95], got {p}")
    return m, p, t


def naca4(code: str | Sequence[float], n_panels: int) -> Array:
    """Closed clockwise polyline (n_panels + 1, 2) of a NACA 4-digit section of chord 1.

    `code` is '2412' or (m, p, t) with fractional values (the dataset samples them
    continuously). Cosine spacing in x clusters points at both edges; n_panels must be even so
    each surface gets n_panels / 2 panels and the leading edge is a vertex.
    """
    if n_panels < 8 or n_panels % 2:
        raise ValueError(f"n_panels must be an even number >= 8, got {n_panels}")
    m, p, t = _section_params(code)
    half = n_panels // 2
    x = 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, half + 1)))  # (half+1,) TE (1) -> LE (0)
    a0, a1, a2, a3, a4 = _THICKNESS
    yt = 5.0 * t * (a0 * np.sqrt(x) + x * (a1 + x * (a2 + x * (a3 + x * a4))))
    if m > 0:
        front = x < p
        yc = np.where(
            front, m / p**2 * (2 * p * x - x**2), m / (1 - p) ** 2 * (1 - 2 * p + 2 * p * x - x**2)
        )
        dyc = np.where(front, 2 * m / p**2 * (p - x), 2 * m / (1 - p) ** 2 * (p - x))
    else:
        yc = np.zeros_like(x)
        dyc = np.zeros_like(x)
    theta = np.arctan(dyc)
    lower = np.stack([x + yt * np.sin(theta), yc - yt * np.cos(theta)], axis=1)  # TE -> LE
    upper = np.stack([x - yt * np.sin(theta), yc + yt * np.cos(theta)], axis=1)[::-1]  # LE -> TE
    poly = np.concatenate([lower, upper[1:]], axis=0)  # (n_panels+1, 2)
    poly[-1] = poly[0]  # bit-identical closure at the sharp trailing edge
    return poly


def _rotate(points: Array, angle_rad: float, about: Array) -> Array:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    rot = np.array([[c, -s], [s, c]])
    return (points - about) @ rot.T + about


def two_element(
    main: str | Sequence[float],
    flap: str | Sequence[float],
    flap_chord: float,
    deflection_deg: float,
    gap: float,
    n_panels: int,
    overlap: float = 0.0,
) -> list[Array]:
    """Main section + slotted flap, reference (stowed) chord 1: [main polyline, flap polyline].

    Parameterisation (all lengths in reference chords):
    - the main element is `main` scaled to chord 1 - flap_chord, leading edge at (0, 0);
    - the flap is `flap` scaled to chord flap_chord and rotated about its own leading edge by
      `deflection_deg` (positive = trailing edge down, the usual flap sense);
    - its leading edge starts `overlap` ahead of the main trailing edge, at the trailing edge's
      height, and the flap is then moved straight down until the smallest distance between the
      two polylines equals `gap` (the slot width). The elements therefore never touch or
      overlap, whatever the sections and deflection, and `gap` is the clearance one measures.
    Both polylines are clockwise and closed, n_panels panels each.
    """
    if not 0.05 <= flap_chord <= 0.6:
        raise ValueError(f"flap_chord must be in [0.05, 0.6], got {flap_chord}")
    if not -45.0 <= deflection_deg <= 60.0:
        raise ValueError(f"flap deflection must be in [-45, 60] degrees, got {deflection_deg}")
    if not 0.0 < gap <= 0.5:
        raise ValueError(f"gap must be in (0, 0.5] chords, got {gap}")
    if not 0.0 <= overlap < flap_chord:
        raise ValueError(f"overlap must be in [0, flap_chord), got {overlap}")
    main_chord = 1.0 - flap_chord
    body = naca4(main, n_panels) * main_chord
    te = body[0]
    flap_shape = naca4(flap, n_panels) * flap_chord
    flap_shape = _rotate(flap_shape, -np.radians(deflection_deg), np.zeros(2))
    flap_shape = flap_shape + np.array([te[0] - overlap, te[1]])

    def clearance(drop: float) -> float:
        moved = flap_shape - np.array([0.0, drop])
        if _polylines_intersect(body, moved) or _inside(moved[:1], [body])[0]:
            return -1.0
        # The closest pair of points has a vertex on one side or the other: check both ways.
        return float(
            min(_unsigned_distance(moved, [body]).min(), _unsigned_distance(body, [moved]).min())
        )

    # The clearance grows with the drop once the flap is clear of the main element, so bracket
    # the first drop with clearance >= gap on a coarse scan, then bisect.
    step = 0.25 * gap
    lo, hi = 0.0, step
    while clearance(hi) < gap:
        lo, hi = hi, hi + step
        if hi > 2.0:
            raise ValueError("could not place the flap below the main element")
    for _ in range(40):  # 0.25 gap / 2^40: far below any length that matters
        mid = 0.5 * (lo + hi)
        if clearance(mid) < gap:
            lo = mid
        else:
            hi = mid
    return [body, flap_shape - np.array([0.0, hi])]


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


def _unsigned_distance(points: Array, polylines: Sequence[ArrayLike]) -> Array:
    a, b = _segments(polylines)
    ab = b - a  # (K, 2)
    inv_len2 = 1.0 / np.maximum(np.sum(ab * ab, axis=1), 1e-300)  # (K,)
    ax, ay, abx, aby = a[:, 0], a[:, 1], ab[:, 0], ab[:, 1]
    out = np.empty(len(points))
    step = _block(len(a))
    for s in range(0, len(points), step):
        # Component by component and in place: a few (n, K) buffers, no (n, K, 2) ones.
        dx = points[s : s + step, 0:1] - ax  # (n, K): p - a
        dy = points[s : s + step, 1:2] - ay
        w = dx * abx
        w += dy * aby
        w *= inv_len2
        np.clip(w, 0.0, 1.0, out=w)  # (n, K): nearest point a + w (b - a) on each segment
        dx -= w * abx
        dy -= w * aby
        dx *= dx
        dy *= dy
        dx += dy
        out[s : s + step] = np.sqrt(dx.min(axis=1))
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


def signed_distance(points: ArrayLike, polylines: Sequence[ArrayLike]) -> Array:
    """Distance (N,) to the nearest body surface: positive in the fluid, negative inside."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    dist = _unsigned_distance(pts, polylines)
    return np.where(_inside(pts, polylines), -dist, dist)


def _polylines_intersect(p: Array, q: Array) -> bool:
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
        [np.full(len(p) - 1, -np.sign(polygon_area(p))) for p in _bodies(polylines)]
    )
    seg = b - a  # (K, 2)
    length = np.linalg.norm(seg, axis=1)
    k = rng.choice(len(seg), size=n, p=length / length.sum())
    w = rng.uniform(0.0, 1.0, n)
    pts = a[k] + w[:, None] * seg[k]
    tangent = seg[k] / np.maximum(length[k], 1e-300)[:, None]
    # Clockwise bodies have the outside on the left of the tangent: (-ty, tx).
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1) * signs[k, None]
    return pts, normal


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
    box: Sequence[Sequence[float]] = BOX,
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
    box: Sequence[Sequence[float]] = BOX,
    near_wall_fraction: float = 0.5,
    rng: np.random.Generator | None = None,
    wall_offsets: Range = NEAR_WALL_OFFSETS,
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
