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
from numpy.typing import NDArray

# Airfoils are bodies like any other: the polyline functions are re-exported from here.
from geometry.polylines import (
    check_polylines,
    encoder_points,
    field_points,
    inside,
    polygon_area,
    polylines_intersect,
    signed_distance,
    unsigned_distance,
)

__all__ = [
    "BOX",
    "NEAR_WALL_OFFSETS",
    "check_polylines",
    "encoder_points",
    "field_points",
    "inside",
    "naca4",
    "parse_naca",
    "polygon_area",
    "signed_distance",
    "two_element",
]

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
        if polylines_intersect(body, moved) or inside(moved[:1], [body])[0]:
            return -1.0
        # The closest pair of points has a vertex on one side or the other: check both ways.
        return float(
            min(unsigned_distance(moved, [body]).min(), unsigned_distance(body, [moved]).min())
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
