"""Staggered-grid FDTD for the linear acoustic wave equation, 2-D and 3-D, on a voxel mask.

    dp/dt = -rho c^2 div(v),    dv/dt = -grad(p) / rho

Pressure lives at cell centres, each velocity component on the cell faces normal to it, and
time is leapfrogged (p at integer, v at half steps): second order in space and time. The same
code runs any dimension because every operation is a `diff` along one axis of a tensor whose
leading axis is the batch of sources; a batch of sources costs one sweep of the grid.

Walls are the faces between an air cell and a solid cell (or the outside). Their normal
velocity is v_n = p / Z, with p averaged over the two time levels of the update. That keeps the
update explicit (a per-cell scalar division) and makes the boundary dissipate exactly
(p^{n+1} + p^n)^2 * c dt / (2 xi h) of discrete energy per step, so the scheme is stable up to
the CFL limit for every Z > 0; Z = infinity is the rigid wall.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from geometry.rooms import Room
from training.acoustics.physics import AIR, Medium


@dataclass
class FDTDResult:
    times: NDArray[np.float64]  # (n_out,) seconds
    pressure: torch.Tensor  # (batch, n_out, n_receivers) pascals
    energy: torch.Tensor | None  # (batch, n_steps + 1) joules per metre^(3 - dim), if recorded
    snapshots: torch.Tensor | None  # (batch, n_out, *grid) if recorded


class FDTD:
    """Solver on the cell-centred grid of `room`, spacing about `dx` (exact per axis: L / n)."""

    def __init__(
        self,
        room: Room,
        dx: float,
        medium: Medium = AIR,
        wall_impedance: float | None = None,
        courant: float = 0.95,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if not 0.0 < courant <= 1.0:
            raise ValueError(f"courant must be in (0, 1], got {courant}")
        if wall_impedance is not None and wall_impedance <= 0:
            raise ValueError(f"wall impedance must be positive, got {wall_impedance}")
        self.room, self.medium, self.courant = room, medium, courant
        self.wall_impedance = wall_impedance
        self.device, self.dtype = torch.device(device), dtype
        self.dim = room.dim
        self.shape = tuple(max(2, round(length / dx)) for length in room.size)
        self.spacing = tuple(length / n for length, n in zip(room.size, self.shape, strict=True))
        # CFL limit of the leapfrog scheme on this grid: c dt sqrt(sum 1/h_i^2) <= 1.
        self.dt_max = 1.0 / (medium.c * math.sqrt(sum(1.0 / h**2 for h in self.spacing)))
        self.centres = [
            (np.arange(n) + 0.5) * h for n, h in zip(self.shape, self.spacing, strict=True)
        ]
        mesh = np.meshgrid(*self.centres, indexing="ij")
        pts = np.stack([m.ravel() for m in mesh], axis=-1)  # (prod(shape), dim)
        air = room.is_air(pts).reshape(self.shape)
        if not air.any():
            raise ValueError("the room has no air cell at this resolution")
        self.air = torch.as_tensor(air, device=self.device)
        # A face along axis a is open when both neighbours are air; velocity lives only there.
        self.open = [self._slice_pair(self.air, a, lambda lo, hi: lo & hi) for a in range(self.dim)]
        # Number of wall faces of each air cell along each axis (0, 1 or 2).
        self.wall_faces = []
        for a in range(self.dim):
            solid_pad = torch.nn.functional.pad(
                (~self.air).to(torch.uint8).movedim(a, -1), (1, 1), value=1
            ).movedim(-1, a)
            n = self.shape[a]
            low = solid_pad.narrow(a, 0, n)
            high = solid_pad.narrow(a, 2, n)
            self.wall_faces.append(((low + high) * self.air).to(dtype))

    @staticmethod
    def _slice_pair(
        t: torch.Tensor, axis: int, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        n = t.shape[axis]
        return fn(t.narrow(axis, 0, n - 1), t.narrow(axis, 1, n - 1))

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.spacing))

    def step_plan(self, output_dt: float) -> tuple[float, int]:
        """Largest dt under courant * dt_max that divides `output_dt`; returns (dt, substeps)."""
        substeps = max(1, math.ceil(output_dt / (self.courant * self.dt_max) - 1e-9))
        return output_dt / substeps, substeps

    def gaussian_pulse(self, sources: ArrayLike, sigma: float) -> torch.Tensor:
        """p0 = exp(-|x - x0|^2 / sigma^2) at every air cell, one field per source: (B, *grid)."""
        src = torch.as_tensor(np.asarray(sources, dtype=np.float64), device=self.device)
        src = src.reshape(-1, self.dim)  # (B, dim)
        r2 = torch.zeros((src.shape[0], *self.shape), device=self.device, dtype=torch.float64)
        for a, centres in enumerate(self.centres):
            view = [1] * (self.dim + 1)
            view[a + 1] = -1
            c = torch.as_tensor(centres, device=self.device).reshape(view)  # broadcast on axis a
            r2 = r2 + (c - src[:, a].reshape(-1, *([1] * self.dim))) ** 2
        return (torch.exp(-r2 / sigma**2) * self.air).to(self.dtype)

    def receiver_weights(self, points: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
        """Multilinear interpolation from cell centres, ignoring solid corners.

        Returns flat indices and weights, each (P, 2^dim). Corners inside a wall are dropped and
        the remaining weights renormalised, so a receiver near a wall reads the air beside it.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, self.dim)
        if not self.room.is_air(pts).all():
            bad = pts[~self.room.is_air(pts)][0]
            raise ValueError(f"receiver {bad.tolist()} is not in the air of the room")
        h = np.asarray(self.spacing)
        shape = np.asarray(self.shape)
        u = pts / h - 0.5  # fractional cell-centre index
        i0 = np.clip(np.floor(u).astype(np.int64), 0, shape - 2)
        frac = np.clip(u - i0, 0.0, 1.0)
        air = self.air.cpu().numpy()
        corners = np.array(np.meshgrid(*[[0, 1]] * self.dim, indexing="ij")).reshape(self.dim, -1).T
        idx = np.empty((len(pts), len(corners)), dtype=np.int64)
        w = np.empty((len(pts), len(corners)))
        for k, corner in enumerate(corners):
            ijk = i0 + corner  # (P, dim)
            idx[:, k] = np.ravel_multi_index(tuple(ijk.T), self.shape)
            w[:, k] = np.prod(np.where(corner == 1, frac, 1.0 - frac), axis=1)
            w[:, k] *= air[tuple(ijk.T)]
        total = w.sum(axis=1, keepdims=True)
        if (total <= 1e-12).any():
            raise ValueError("a receiver has no air cell among its interpolation corners")
        return (
            torch.as_tensor(idx, device=self.device),
            torch.as_tensor(w / total, device=self.device, dtype=self.dtype),
        )

    def energy(
        self, p: torch.Tensor, v_old: list[torch.Tensor], v_new: list[torch.Tensor]
    ) -> torch.Tensor:
        """Discrete energy at step n from p^n, v^{n-1/2}, v^{n+1/2}: exactly conserved by
        the leapfrog scheme with rigid walls (a mixed-time product, not a sum of squares)."""
        m = self.medium
        spatial = tuple(range(1, self.dim + 1))
        e = (p.double() ** 2).sum(spatial) / (2 * m.rho * m.c**2)
        for vo, vn in zip(v_old, v_new, strict=True):
            e = e + 0.5 * m.rho * (vo.double() * vn.double()).sum(spatial)
        return e * self.cell_volume

    def run(
        self,
        p0: torch.Tensor,
        output_dt: float,
        n_out: int,
        receivers: ArrayLike | None = None,
        record_energy: bool = False,
        record_snapshots: bool = False,
    ) -> FDTDResult:
        """March from p0 (B, *grid) with zero initial velocity; sample every `output_dt`."""
        if p0.shape[1:] != self.shape:
            raise ValueError(f"p0 must be (batch, {self.shape}), got {tuple(p0.shape)}")
        m = self.medium
        dt, substeps = self.step_plan(output_dt)
        # Per-cell wall coefficient: sum over wall faces of c dt / (2 xi h_a), xi = Z / (rho c).
        wall = torch.zeros(self.shape, device=self.device, dtype=self.dtype)
        if self.wall_impedance is not None:
            xi = self.wall_impedance / m.impedance
            for a, h in enumerate(self.spacing):
                wall = wall + self.wall_faces[a] * (m.c * dt / (2.0 * xi * h))
        keep = (1.0 - wall) / (1.0 + wall)
        push = (m.rho * m.c**2 * dt) / (1.0 + wall)
        kv = [dt / (m.rho * h) for h in self.spacing]
        open_f = [o.to(self.dtype) for o in self.open]

        p = p0.to(self.device, self.dtype) * self.air
        batch = p.shape[0]
        # Zero initial velocity, advanced half a step: v(dt/2) = -(dt/2) grad p0 / rho.
        v = [-0.5 * kv[a] * torch.diff(p, dim=a + 1) * open_f[a] for a in range(self.dim)]
        zero_slabs = []
        for a in range(self.dim):
            slab_shape = [batch, *self.shape]
            slab_shape[a + 1] = 1
            zero_slabs.append(torch.zeros(slab_shape, device=self.device, dtype=self.dtype))

        if receivers is not None:
            idx, w = self.receiver_weights(receivers)
            sample = lambda q: (q.reshape(batch, -1)[:, idx] * w).sum(-1)  # noqa: E731  (B, P)
        else:
            sample = lambda q: q.reshape(batch, -1)  # noqa: E731  (B, cells)
        outputs = [sample(p)]
        snaps = [p.clone()] if record_snapshots else []
        energies: list[torch.Tensor] = []
        # Energy at step 0 needs v^{-1/2}, which by symmetry of the start is -v^{1/2}.
        if record_energy:
            energies.append(self.energy(p, [-vi for vi in v], v))

        for _ in range(n_out - 1):
            for _ in range(substeps):
                div = torch.zeros_like(p)
                for a in range(self.dim):
                    # Walls carry no velocity on the grid: pad the face array with zeros.
                    flux = torch.cat([zero_slabs[a], v[a], zero_slabs[a]], dim=a + 1)
                    div = div + torch.diff(flux, dim=a + 1) / self.spacing[a]
                p = keep * p - push * div
                v_new = [
                    v[a] - kv[a] * torch.diff(p, dim=a + 1) * open_f[a] for a in range(self.dim)
                ]
                if record_energy:
                    energies.append(self.energy(p, v, v_new))
                v = v_new
            outputs.append(sample(p))
            if record_snapshots:
                snaps.append(p.clone())

        return FDTDResult(
            times=np.arange(n_out, dtype=np.float64) * output_dt,
            pressure=torch.stack(outputs, dim=1),  # (B, n_out, P)
            energy=torch.stack(energies, dim=1) if record_energy else None,
            snapshots=torch.stack(snaps, dim=1) if record_snapshots else None,
        )
