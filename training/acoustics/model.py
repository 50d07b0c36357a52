"""Acoustic DeepONet after Borrel-Jensen et al. (PNAS 2024).

    p(x, t; x0) = p_scale * (sum_k B_k(x0) T_k(x, t) + b0)

Branch: the source's initial Gaussian pulse sampled on a coarse sensor grid (about two points
per wavelength) -> B. Trunk: (x, t) scaled to the room and expanded with Fourier features ->
T. Both are "modified MLPs" with sine activations. Everything from physical units to pascals
lives inside the module, so the exported graphs take a source position and (x, t) in metres
and seconds and return pascals.

For export the bias and the output scale are folded into the factors: the branch returns
p_scale * [B, b0] and the trunk returns [T, 1], so the field is one dot product of the two
(p + 1 columns), and each factor can be cached on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from geometry.grids import grid_points


@dataclass
class DeepONetConfig:
    """Hyperparameters; physics fields are filled from the dataset when training starts."""

    dim: int = 2
    branch_width: int = 128
    branch_depth: int = 3
    trunk_width: int = 128
    trunk_depth: int = 3
    n_basis: int = 64
    first_omega: float = 30.0  # SIREN-style frequency of the first layer
    # Fourier-feature frequencies as fractions of fmax: fmax, fmax/2, fmax/3 (the paper's
    # 500, 250, 167 Hz at 500 Hz).
    fourier_fractions: tuple[float, ...] = (1.0, 0.5, 1.0 / 3.0)
    sensor_points_per_wavelength: float = 2.0
    sensor_scale: float = 0.5
    # Physics and normalisation, from the data (saved with every checkpoint).
    c: float = 343.0
    fmax: float = 500.0
    sigma: float = 0.4367
    room_size: tuple[float, ...] = field(default_factory=tuple)
    p_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim}")
        for name in ("branch_width", "branch_depth", "trunk_width", "trunk_depth", "n_basis"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    @property
    def extent(self) -> float:
        """One global length scale for every coordinate (the paper's single min/max)."""
        return max(self.room_size)

    @property
    def trunk_features(self) -> int:
        return (self.dim + 1) * (1 + 2 * len(self.fourier_fractions))


class ModifiedMLP(nn.Module):
    """h <- sin(W h + b) after a first layer sin(omega W0 x + b0), each followed by the gate
    h <- h * U + (1 - h) * V with U = sin(W_U x + b_U), V = sin(W_V x + b_V)."""

    def __init__(self, d_in: int, width: int, depth: int, d_out: int, omega: float) -> None:
        super().__init__()
        self.omega = omega
        self.gate_u = nn.Linear(d_in, width)
        self.gate_v = nn.Linear(d_in, width)
        self.first = nn.Linear(d_in, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.out = nn.Linear(width, d_out)
        # SIREN initialisation as in the authors' code: first layers U(+-1/d_in), the rest
        # U(+-sqrt(6/d_in)/30); biases zero.
        for layer in (self.gate_u, self.gate_v, self.first):
            nn.init.uniform_(layer.weight, -1.0 / d_in, 1.0 / d_in)
        for layer in [*self.hidden, self.out]:
            bound = math.sqrt(6.0 / layer.in_features) / 30.0
            nn.init.uniform_(layer.weight, -bound, bound)
        for layer in [self.gate_u, self.gate_v, self.first, *self.hidden, self.out]:
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.sin(self.gate_u(x))  # (..., width)
        v = torch.sin(self.gate_v(x))
        h = torch.sin(self.first(self.omega * x))
        h = h * u + (1.0 - h) * v
        for layer in self.hidden:
            h = torch.sin(layer(h))
            h = h * u + (1.0 - h) * v
        return self.out(h)  # (..., d_out)


class DeepONet(nn.Module):
    sensors: torch.Tensor  # (S, dim) sensor positions, metres
    wavenumbers: torch.Tensor  # (K,) Fourier-feature wavenumbers, rad/m

    def __init__(self, cfg: DeepONetConfig) -> None:
        super().__init__()
        if len(cfg.room_size) != cfg.dim:
            raise ValueError(f"room_size {cfg.room_size} does not match dim {cfg.dim}")
        self.cfg = cfg
        spacing = cfg.c / cfg.fmax / cfg.sensor_points_per_wavelength
        counts = [max(2, math.ceil(length / spacing) + 1) for length in cfg.room_size]
        sensors = grid_points([0.0] * cfg.dim, list(cfg.room_size), counts)  # (S, dim)
        self.register_buffer("sensors", torch.as_tensor(sensors, dtype=torch.float32))
        freqs = [2.0 * math.pi * f * cfg.fmax / cfg.c for f in cfg.fourier_fractions]
        self.register_buffer("wavenumbers", torch.tensor(freqs, dtype=torch.float32))  # rad/m
        self.branch = ModifiedMLP(
            len(sensors), cfg.branch_width, cfg.branch_depth, cfg.n_basis, cfg.first_omega
        )
        self.trunk = ModifiedMLP(
            cfg.trunk_features, cfg.trunk_width, cfg.trunk_depth, cfg.n_basis, cfg.first_omega
        )
        self.b0 = nn.Parameter(torch.zeros(()))

    def sensor_field(self, source: torch.Tensor) -> torch.Tensor:
        """The initial pulse of each source at the sensors: (B, dim) -> (B, S)."""
        d2 = ((source[:, None, :] - self.sensors[None, :, :]) ** 2).sum(-1)  # (B, S)
        return self.cfg.sensor_scale * torch.exp(-d2 / self.cfg.sigma**2)

    def trunk_input(self, points: torch.Tensor) -> torch.Tensor:
        """(N, dim + 1) of (x, [y, [z]], t) in metres and seconds -> (N, F) features."""
        cfg = self.cfg
        # Time becomes a length (c t) so one scale and one set of wavenumbers fit all axes.
        length = torch.cat([points[:, : cfg.dim], cfg.c * points[:, cfg.dim :]], dim=1)  # (N, D+1)
        y = 2.0 * length / cfg.extent - 1.0
        phase = length[:, :, None] * self.wavenumbers[None, None, :]  # (N, D+1, K)
        n = points.shape[0]
        feats = [y, torch.cos(phase).reshape(n, -1), torch.sin(phase).reshape(n, -1)]
        return torch.cat(feats, dim=1)  # (N, (D+1)(1+2K))

    def branch_coefficients(self, source: torch.Tensor) -> torch.Tensor:
        """(B, dim) source positions -> (B, p + 1): p_scale * [B_1..B_p, b0]."""
        b = self.branch(self.sensor_field(source))  # (B, p)
        bias = self.b0.expand(b.shape[0], 1)  # (B, 1)
        return self.cfg.p_scale * torch.cat([b, bias], dim=1)

    def trunk_basis(self, points: torch.Tensor) -> torch.Tensor:
        """(N, dim + 1) space-time points -> (N, p + 1): [T_1..T_p, 1]."""
        t = self.trunk(self.trunk_input(points))  # (N, p)
        return torch.cat([t, torch.ones_like(t[:, :1])], dim=1)

    def forward(self, source: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Every source at every point: (B, dim), (N, dim + 1) -> (B, N) pascals."""
        return self.branch_coefficients(source) @ self.trunk_basis(points).T


class BranchGraph(nn.Module):
    """Export wrapper: source (B, dim) -> coefficients (B, p + 1)."""

    def __init__(self, model: DeepONet) -> None:
        super().__init__()
        self.model = model

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return self.model.branch_coefficients(source)


class TrunkGraph(nn.Module):
    """Export wrapper: points (N, dim + 1) -> basis (N, p + 1)."""

    def __init__(self, model: DeepONet) -> None:
        super().__init__()
        self.model = model

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.model.trunk_basis(points)
