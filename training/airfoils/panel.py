"""Hess-Smith panel method: 2-D incompressible potential flow around closed bodies.

Every body is a closed polygon whose vertex 0 is its trailing edge. Each panel carries a
constant source density q_j (one unknown per panel) and every panel of body b the same
constant vortex density gamma_b (one unknown per body). The N + B equations are flow tangency
at the N panel midpoints and one Kutta condition per body: the tangential velocities on the
body's first and last panels (the two panels meeting at the trailing edge) are equal and
opposite, so the flow leaves the trailing edge smoothly and both sides have equal pressure
there. A body solved as non-lifting (`lifting=False`, e.g. a cylinder, where no trailing edge
picks the circulation) has no vortex unknown and no Kutta row.

Signs: bodies are oriented clockwise (solve() flips any counter-clockwise one); a panel's unit
tangent t points from its start to its end vertex and its outward normal is n = (-t_y, t_x).
gamma > 0 is clockwise circulation, which with a free stream from the left lifts upwards:
L' = rho V Gamma with Gamma = sum_b gamma_b * perimeter_b (Kutta-Joukowski).

Influence of panel j at a point P in the panel's frame (x along t from the start vertex, y
along n, panel length L), per unit density (Katz & Plotkin, ch. 10-11):
  r1 = |P - start|, r2 = |P - end|, beta = angle the panel subtends at P, in (-pi, pi)
  source:            u = ln(r1 / r2) / 2 pi,   v = beta / 2 pi
  clockwise vortex:  u = beta / 2 pi,          v = -ln(r1 / r2) / 2 pi
On the panel itself, approached from the fluid side, beta -> pi and ln(r1/r2) -> 0 at the
midpoint: the source pushes q/2 outward and the vortex gives gamma/2 along t.

Accuracy: the method converges at first order in the panel size h. The normal velocity
vanishes at each midpoint but its mean over a panel is O(h), so each panel leaks O(h^2) and the
leaks add up to O(h) errors in the far field and in Cl (cylinder: rms field error halves with
each doubling of N; NACA 2412 Cl changes by 0.0017, 0.0012, 0.0007, 0.0004 from 80 to 1280
panels). Near the wall the field also carries the polygon's corners: log singularities of the
velocity at every vertex from the jump of q between neighbours, felt within about one local
panel length. With 160 panels per element the velocity differs from a 1280-panel solution by
rms 0.0009 V far from the body, 0.0024 V at 5-10 thousandths of a chord and 0.0033 V at 1-2
thousandths (Cp: 0.0025, 0.009, 0.014), hence geometry.airfoils.NEAR_WALL_OFFSETS. Surface
values are taken at panel midpoints, where the Kutta and tangency conditions are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geometry.airfoils import check_polylines, polygon_area

Array = NDArray[np.float64]

_TWO_PI = 2.0 * np.pi


@dataclass(frozen=True)
class Panels:
    """Panel geometry of all bodies, concatenated body after body."""

    start: Array  # (N, 2)
    end: Array  # (N, 2)
    body: NDArray[np.int64]  # (N,) body index of each panel
    first: NDArray[np.int64]  # (B,) index of each body's first (lower trailing-edge) panel
    last: NDArray[np.int64]  # (B,) index of each body's last (upper trailing-edge) panel

    @property
    def n_bodies(self) -> int:
        return len(self.first)

    @property
    def length(self) -> Array:
        return np.linalg.norm(self.end - self.start, axis=1)

    @property
    def tangent(self) -> Array:
        return (self.end - self.start) / self.length[:, None]

    @property
    def normal(self) -> Array:
        t = self.tangent
        return np.stack([-t[:, 1], t[:, 0]], axis=1)

    @property
    def midpoint(self) -> Array:
        return 0.5 * (self.start + self.end)

    @classmethod
    def from_polylines(cls, polylines: Sequence[ArrayLike]) -> Panels:
        bodies = [p if polygon_area(p) < 0 else p[::-1].copy() for p in check_polylines(polylines)]
        counts = [len(p) - 1 for p in bodies]
        ends = np.cumsum(counts)
        return cls(
            start=np.concatenate([p[:-1] for p in bodies]),
            end=np.concatenate([p[1:] for p in bodies]),
            body=np.repeat(np.arange(len(bodies)), counts),
            first=ends - np.asarray(counts),
            last=ends - 1,
        )


def _log_ratio_and_angle(points: Array, panels: Panels) -> tuple[Array, Array]:
    """ln(r1 / r2) and the subtended angle beta, each (M, N), for points (M, 2)."""
    t, n, length = panels.tangent, panels.normal, panels.length
    d = points[:, None, :] - panels.start[None, :, :]  # (M, N, 2)
    x = np.einsum("mnd,nd->mn", d, t)  # (M, N) along the panel
    y = np.einsum("mnd,nd->mn", d, n)  # (M, N) off the panel, positive outside
    r1_sq = x * x + y * y
    r2_sq = (x - length) ** 2 + y * y
    log_ratio = 0.5 * np.log(np.maximum(r1_sq, 1e-300) / np.maximum(r2_sq, 1e-300))
    # Angle from (start - P) to (end - P) as one atan2 of (cross, dot): no branch cut on the
    # panel's extension, and +-pi just outside/inside the panel itself.
    beta = np.arctan2(y * length, x * (x - length) + y * y)
    return log_ratio, beta


@dataclass(frozen=True)
class PanelSolution:
    panels: Panels
    aoa_deg: float
    speed: float
    sigma: Array  # (N,) source density per panel
    gamma: Array  # (B,) clockwise vortex density per body (0 for non-lifting bodies)
    surface_velocity: Array  # (N, 2) velocity at panel midpoints, fluid side
    chord: float = 1.0

    @property
    def freestream(self) -> Array:
        a = np.radians(self.aoa_deg)
        return self.speed * np.array([np.cos(a), np.sin(a)])

    @property
    def surface_vt(self) -> Array:
        """Tangential velocity (N,) at panel midpoints, along each panel's tangent."""
        return np.einsum("nd,nd->n", self.surface_velocity, self.panels.tangent)

    @property
    def surface_cp(self) -> Array:
        """Pressure coefficient (N,) at panel midpoints."""
        return 1.0 - (self.surface_vt / self.speed) ** 2

    @property
    def circulation(self) -> Array:
        """Clockwise circulation (B,) of each body."""
        perimeter = np.bincount(self.panels.body, self.panels.length, self.panels.n_bodies)
        return self.gamma * perimeter

    @property
    def cl(self) -> float:
        """Lift coefficient from the circulation (Kutta-Joukowski), per `chord`."""
        return float(2.0 * self.circulation.sum() / (self.speed * self.chord))

    def force_coefficients(self) -> tuple[float, float]:
        """(Cl, Cd) from integrating the surface pressure; Cd ~ 0 is d'Alembert's check."""
        p = self.panels
        force = -np.sum((self.surface_cp * p.length)[:, None] * p.normal, axis=0) / self.chord
        a = np.radians(self.aoa_deg)
        lift_dir = np.array([-np.sin(a), np.cos(a)])
        drag_dir = np.array([np.cos(a), np.sin(a)])
        return float(force @ lift_dir), float(force @ drag_dir)

    @property
    def kutta_residual(self) -> Array:
        """(B,) (Vt_first + Vt_last) / speed: zero where the Kutta condition holds."""
        vt = self.surface_vt
        return (vt[self.panels.first] + vt[self.panels.last]) / self.speed

    def velocity(self, points: ArrayLike, chunk: int = 2048) -> Array:
        """Velocity (M, 2) at points (M, 2) off the surface."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        p = self.panels
        g = self.gamma[p.body]  # (N,) vortex density of each panel
        # Per panel, the local (u, v) = (q L + g B, q B - g L) / 2 pi with L = ln(r1/r2) and
        # B = beta; mapping u along t and v along n folds into two (N, 2) weight matrices.
        w_log = (self.sigma[:, None] * p.tangent - g[:, None] * p.normal) / _TWO_PI  # (N, 2)
        w_beta = (g[:, None] * p.tangent + self.sigma[:, None] * p.normal) / _TWO_PI  # (N, 2)
        out = np.empty_like(pts)
        for s in range(0, len(pts), chunk):
            log_ratio, beta = _log_ratio_and_angle(pts[s : s + chunk], p)  # (m, N) each
            out[s : s + chunk] = self.freestream + log_ratio @ w_log + beta @ w_beta
        return out

    def fields(self, points: ArrayLike) -> Array:
        """[u, v, cp] (M, 3) at points (M, 2); cp = 1 - |V|^2 / speed^2."""
        vel = self.velocity(points)
        cp = 1.0 - np.sum(vel * vel, axis=1) / self.speed**2
        return np.concatenate([vel, cp[:, None]], axis=1)


def solve(
    polylines: Sequence[ArrayLike],
    aoa_deg: float,
    speed: float = 1.0,
    lifting: bool = True,
    chord: float = 1.0,
) -> PanelSolution:
    """Solve for the source and vortex densities around `polylines` (vertex 0 = trailing edge)."""
    if not speed > 0:
        raise ValueError(f"speed must be positive, got {speed}")
    p = Panels.from_polylines(polylines)
    n_pan, n_body = len(p.length), p.n_bodies
    t, n = p.tangent, p.normal
    log_ratio, beta = _log_ratio_and_angle(p.midpoint, p)  # (N, N): midpoint i, panel j
    # The midpoint lies on its own panel: take the fluid-side limit.
    np.fill_diagonal(log_ratio, 0.0)
    np.fill_diagonal(beta, np.pi)
    # Velocity at midpoint i per unit density on panel j, (N, N, 2).
    src = (log_ratio[..., None] * t[None] + beta[..., None] * n[None]) / _TWO_PI
    vtx = (beta[..., None] * t[None] - log_ratio[..., None] * n[None]) / _TWO_PI
    # A body's vortex unknown drives all of its panels at once: sum its columns, (N, B, 2).
    onehot = np.eye(n_body)[p.body]  # (N, B)
    vtx_body = np.einsum("ijd,jb->ibd", vtx, onehot)

    a = np.radians(aoa_deg)
    v_inf = speed * np.array([np.cos(a), np.sin(a)])
    n_unknown = n_pan + (n_body if lifting else 0)
    # influence[i, k, :] is the velocity at midpoint i per unit of unknown k.
    influence = np.concatenate([src, vtx_body], axis=1) if lifting else src  # (N, n_unknown, 2)
    lhs = np.empty((n_unknown, n_unknown))
    rhs = np.empty(n_unknown)
    lhs[:n_pan] = np.einsum("ikd,id->ik", influence, n)  # tangency: V . n = 0
    rhs[:n_pan] = -n @ v_inf
    if lifting:
        for b in range(n_body):  # Kutta: V . t_first + V . t_last = 0
            i, j = p.first[b], p.last[b]
            lhs[n_pan + b] = influence[i] @ t[i] + influence[j] @ t[j]
            rhs[n_pan + b] = -(v_inf @ t[i] + v_inf @ t[j])
    x = np.asarray(np.linalg.solve(lhs, rhs), dtype=np.float64)
    gamma: Array = x[n_pan:] if lifting else np.zeros(n_body)
    surface = v_inf + np.einsum("ikd,k->id", influence, x)  # (N, 2)
    return PanelSolution(
        panels=p,
        aoa_deg=float(aoa_deg),
        speed=float(speed),
        sigma=x[:n_pan],
        gamma=gamma,
        surface_velocity=surface,
        chord=chord,
    )
