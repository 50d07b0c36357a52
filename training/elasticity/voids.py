"""The random void of the unit cell: r(theta) = r0 + dr / (1 + exp(g(theta))) around a centre.

g is a smooth periodic Gaussian random field drawn as a truncated Fourier series whose mode k
has standard deviation `scale * (1 + (k / tau)**2) ** (-alpha / 2)` (a Matern-like spectrum on
the circle): alpha sets the smoothness, tau the correlation length in modes. With Geo-FNO's
r0 = 0.2 and dr = 0.2 every radius lies in (0.2, 0.4).

A void is a closed polyline given without repeating its first point, counter-clockwise.
`check_void` refuses a polyline that the solver cannot mesh meaningfully: too few points,
self-intersecting, leaving the cell, or closer than a margin to the cell's edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]

MIN_POINTS = 128  # 32 points moved the stress by 7-16 % in an independent check


@dataclass(frozen=True)
class VoidParams:
    """Parameters of the random void (defaults: Geo-FNO's radius range, centred)."""

    centre: tuple[float, float] = (0.5, 0.5)
    r0: float = 0.2  # smallest radius
    dr: float = 0.2  # r0 + dr is the largest radius
    grf_scale: float = 2.0  # std of the k = 0 mode of g
    grf_tau: float = 3.0  # modes beyond ~tau decay as k**-alpha
    grf_alpha: float = 2.5
    n_modes: int = 12
    n_points: int = 128

    def __post_init__(self) -> None:
        if self.r0 <= 0 or self.dr < 0:
            raise ValueError(f"need r0 > 0 and dr >= 0, got r0={self.r0}, dr={self.dr}")
        if self.n_points < MIN_POINTS:
            raise ValueError(f"n_points must be >= {MIN_POINTS}, got {self.n_points}")
        if self.n_modes < 0 or self.grf_tau <= 0 or self.grf_scale < 0:
            raise ValueError("need n_modes >= 0, grf_tau > 0 and grf_scale >= 0")


def grf_coefficients(params: VoidParams, rng: np.random.Generator) -> F64:
    """(n_modes + 1, 2) Fourier coefficients (cos, sin) of g; row 0 is the mean (sin unused)."""
    k = np.arange(params.n_modes + 1, dtype=np.float64)
    std = params.grf_scale * (1.0 + (k / params.grf_tau) ** 2) ** (-params.grf_alpha / 2)
    coef = rng.standard_normal((params.n_modes + 1, 2)) * std[:, None]
    coef[0, 1] = 0.0
    return coef


def radius(params: VoidParams, coef: F64, theta: ArrayLike) -> F64:
    th = np.asarray(theta, dtype=np.float64)
    k = np.arange(len(coef))
    g = np.cos(np.outer(th, k)) @ coef[:, 0] + np.sin(np.outer(th, k)) @ coef[:, 1]
    # logistic written with tanh: no overflow warning for a large |g|
    return params.r0 + params.dr * 0.5 * (1.0 - np.tanh(0.5 * g))


def random_void(params: VoidParams, rng: np.random.Generator) -> F64:
    """A validated (n_points, 2) counter-clockwise polyline of a random void."""
    coef = grf_coefficients(params, rng)
    theta = 2 * np.pi * np.arange(params.n_points) / params.n_points
    r = radius(params, coef, theta)
    cx, cy = params.centre
    poly = np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], axis=1)
    return check_void(poly)


def circle(centre: tuple[float, float], r: float, n_points: int = MIN_POINTS) -> F64:
    theta = 2 * np.pi * np.arange(n_points) / n_points
    return np.stack([centre[0] + r * np.cos(theta), centre[1] + r * np.sin(theta)], axis=1)


def check_void(
    polyline: ArrayLike,
    box: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 1.0), (0.0, 1.0)),
    margin: float = 0.05,
    min_points: int = MIN_POINTS,
) -> F64:
    """Validate a void polyline; returns it as float64, counter-clockwise, first point not
    repeated. Raises ValueError naming the problem."""
    poly = np.asarray(polyline, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2:
        raise ValueError(f"void must be an (n, 2) array of points, got shape {poly.shape}")
    if len(poly) > 1 and np.array_equal(poly[0], poly[-1]):
        poly = poly[:-1]
    if not np.isfinite(poly).all():
        raise ValueError("void has non-finite coordinates")
    if len(poly) < min_points:
        raise ValueError(f"void has {len(poly)} points, at least {min_points} are needed")
    nxt = np.roll(poly, -1, axis=0)
    if (np.hypot(*(nxt - poly).T) < 1e-9).any():
        raise ValueError("void has repeated consecutive points (a zero-length segment)")
    (x0, x1), (y0, y1) = box
    outside = (poly[:, 0] <= x0) | (poly[:, 0] >= x1) | (poly[:, 1] <= y0) | (poly[:, 1] >= y1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(f"void leaves the cell: point {i} {poly[i].tolist()} is outside {box}")
    gap = min(
        poly[:, 0].min() - x0, x1 - poly[:, 0].max(), poly[:, 1].min() - y0, y1 - poly[:, 1].max()
    )
    if gap < margin:
        raise ValueError(f"void comes within {gap:.4g} of the cell's edges; the margin is {margin}")
    pair = _self_intersection(poly)
    if pair is not None:
        raise ValueError(f"void self-intersects: segments {pair[0]} and {pair[1]} cross")
    area = 0.5 * float(np.sum(poly[:, 0] * nxt[:, 1] - nxt[:, 0] * poly[:, 1]))
    return poly if area > 0 else poly[::-1].copy()


def _self_intersection(poly: F64) -> tuple[int, int] | None:
    """First pair of non-adjacent segments that touch or cross, or None (O(n^2), n ~ 1e2)."""
    a, b = poly, np.roll(poly, -1, axis=0)
    n = len(poly)

    def orient(p: F64, q: F64, r: F64) -> F64:
        return (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (
            r[..., 0] - p[..., 0]
        )

    A, B = a[:, None], b[:, None]
    C, D = a[None, :], b[None, :]
    d1, d2 = orient(A, B, C), orient(A, B, D)
    d3, d4 = orient(C, D, A), orient(C, D, B)
    cross = (d1 * d2 <= 0) & (d3 * d4 <= 0)
    i, j = np.indices((n, n))
    # adjacent segments share an endpoint: not an intersection
    adjacent = (i == j) | (j == (i + 1) % n) | (i == (j + 1) % n)
    hit = np.argwhere(cross & ~adjacent & (i < j))
    return None if len(hit) == 0 else (int(hit[0, 0]), int(hit[0, 1]))
