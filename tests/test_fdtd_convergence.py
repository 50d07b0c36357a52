"""Ground truth you can trust: the FDTD converges at second order for the pulses the dataset
uses (sources within sigma of a wall), walls sit where the room says at every resolution, and
per-surface absorption takes energy out only where a surface absorbs.

Orders are measured on the same wall-aligned grid refined 1, 2, 4 times (`refine`), at
receivers on vertices of the coarsest grid, which stay half-way between cell centres on every
level (so the interpolation error keeps one constant), at least 0.2 m inside the air, and at
output times that are whole numbers of steps on every level. Errors are relative L2 norms over
(receivers x times).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geometry.rooms import Room, aligned_cells
from training.acoustics.fdtd import FDTD, initial_pressure
from training.acoustics.physics import Medium, impedance_from_absorption, pulse_sigma

C = Medium().c
FMAX = 500.0
SIGMA = pulse_sigma(FMAX)  # 0.44 m: the dataset's pulse
LAMBDA = C / FMAX
DX0 = LAMBDA / 10  # the coarsest level; 20 and 40 points per wavelength follow


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def plan(room: Room) -> tuple[FDTD, np.ndarray, float, int]:
    """Coarsest solver, receivers (coarse vertices >= 0.2 m from walls), output step, count."""
    solver = FDTD(room, DX0)
    ticks = [np.arange(1, n) * h for n, h in zip(solver.shape, solver.spacing, strict=True)]
    pts = np.stack([m.ravel() for m in np.meshgrid(*ticks, indexing="ij")], -1)  # (P, dim)
    pts = pts[room.wall_distance(pts) >= 0.2]
    # Two coarse CFL steps per output: 2, 4, 8 substeps on the finer levels, so dt ~ h.
    output_dt = 2 * 0.95 * solver.dt_max
    n_out = round(3e-3 / output_dt) + 1  # ~1 m of travel: reflections off the near walls
    return solver, pts, output_dt, n_out


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def orders(errors: list[float]) -> list[float]:
    return [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]


# --- 1. rigid box against the exact modal sum -------------------------------------------------


def axis_profile(x: np.ndarray, x0: float, length: float, width: float) -> np.ndarray:
    """The documented source along one axis of a plain box: Gaussian times the wall ramps."""
    ramp = lambda d: 1.0 - np.exp(-((d / width) ** 2))  # noqa: E731
    return np.exp(-((x - x0) ** 2) / SIGMA**2) * ramp(x) * ramp(length - x)


def modal_solution(
    size: list[float], src: list[float], width: float, ticks: list[np.ndarray], times: np.ndarray
) -> np.ndarray:
    """Exact rigid-box field (T, P) at the receivers meshgrid(*ticks):
    p = sum_k C_k prod_a cos(k_a pi x_a / L_a) cos(w_k t).

    The source is separable in a plain box, so C_k is a product of per-axis cosine
    coefficients. The midpoint rule samples the integrand's even, 2L-periodic extension over a
    whole period; that extension is C^2 (the taper's d^2 times the Gaussian's kink), so the
    quadrature error is O(m^-4), ~1e-14 here. The same smoothness makes the coefficients decay
    like k^-4: modes below 1e-7 of the largest are dropped (the measured errors move in the 6th
    digit against a 1e-9 cut, at a tenth of the cost).
    """
    coefs, wavenumbers = [], []
    for length, x0 in zip(size, src, strict=True):
        m = 4096
        x = (np.arange(m) + 0.5) * length / m
        k = np.arange(400) * np.pi / length
        c = np.cos(np.outer(k, x)) @ axis_profile(x, x0, length, width) * (2.0 / m)
        c[0] /= 2.0
        keep = np.nonzero(np.abs(c) > 1e-7 * np.abs(c).max())[0].max() + 1
        assert keep < len(k), "raise the number of modes"
        coefs.append(c[:keep])
        wavenumbers.append(k[:keep])
    grids = np.meshgrid(*wavenumbers, indexing="ij")
    omega = C * np.sqrt(sum(g**2 for g in grids))  # (K1, ..., Kd)
    amp = coefs[0]
    for c in coefs[1:]:
        amp = np.multiply.outer(amp, c)  # (K1, ..., Kd)
    out = []
    for t in times:
        field = amp * np.cos(omega * t)
        # Contract one axis at a time: (K1, ..., Kd) -> (K2, ..., Kd, P1) -> ... -> (P1, ..., Pd).
        for k, x in zip(wavenumbers, ticks, strict=True):
            field = np.tensordot(field, np.cos(np.outer(x, k)), axes=([0], [1]))
        out.append(field.ravel())
    return np.asarray(out)


@pytest.mark.parametrize("dim", [2, 3])
def test_rigid_box_converges_at_second_order_against_modal_sum(dim):
    size = [1.2, 1.0, 0.7][:dim]
    src = [0.3, 0.55, 0.4][:dim]  # 0.3 m from the x = 0 wall, within sigma of every wall
    room = Room.from_spec({"shape": "box", "size": size})
    _, receivers, output_dt, n_out = plan(room)
    width = 0.5 * SIGMA  # the default taper
    # The separable profile above is the solver's source: check it before trusting the modes.
    probe = np.random.default_rng(0).uniform(0.0, 1.0, (50, dim)) * size
    separable = np.prod([axis_profile(probe[:, a], src[a], size[a], width) for a in range(dim)], 0)
    np.testing.assert_allclose(
        initial_pressure(room, probe, [src], SIGMA)[0], separable, atol=1e-14
    )

    times = np.arange(n_out) * output_dt
    # In a box the receivers are a tensor grid: its ticks per axis, in meshgrid order.
    ticks = [np.unique(receivers[:, a]) for a in range(dim)]
    grid = np.stack([m.ravel() for m in np.meshgrid(*ticks, indexing="ij")], -1)
    np.testing.assert_array_equal(grid, receivers)
    exact = modal_solution(size, src, width, ticks, times)
    errors = []
    for refine in (1, 2, 4):
        solver = FDTD(room, DX0, refine=refine)
        res = solver.run(solver.gaussian_pulse([src], SIGMA), output_dt, n_out, receivers)
        errors.append(rel_l2(res.pressure[0].numpy(), exact))
    print(f"dim={dim} rigid: errors {errors}, orders {orders(errors)}")
    assert all(q >= 1.8 for q in orders(errors))
    assert errors[1] < 0.015  # 20 points per wavelength


# --- 2. impedance walls by Richardson extrapolation --------------------------------------------


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("alpha", [0.2, 0.9])
def test_impedance_walls_converge_at_second_order(dim, alpha):
    # An L-room: the inner walls (and the solid's taper) are under test, not just the box.
    room = Room.from_spec(
        {"shape": "l_shape", "size": [1.4, 1.2, 0.8][:dim], "cut": [0.6, 0.5, 0.8][:dim]}
    )
    src = [0.5, 0.4, 0.4][:dim]  # 0.3 m from the inner wall at x = 0.8
    z = impedance_from_absorption(alpha)
    _, receivers, output_dt, n_out = plan(room)

    def levels(taper: float | None) -> list[float]:
        p = []
        for refine in (1, 2, 4):
            solver = FDTD(room, DX0, wall_impedance=z, refine=refine)
            p0 = solver.gaussian_pulse([src], SIGMA, taper=taper)
            p.append(solver.run(p0, output_dt, n_out, receivers).pressure[0].numpy())
        return [rel_l2(p[0], p[1]), rel_l2(p[1], p[2])]

    diffs = levels(0.5)
    print(
        f"dim={dim} alpha={alpha}: |p_h - p_h/2|, |p_h/2 - p_h/4| = {diffs}, order {orders(diffs)}"
    )
    assert orders(diffs)[0] >= 1.8
    if dim == 2:
        # Not vacuous: the bare Gaussian, incompatible with p = Z v_n at t = 0, converges at
        # well under first order on the same grids.
        bare = levels(None)
        print(f"  bare Gaussian: {bare}, order {orders(bare)}")
        assert orders(bare)[0] < 1.0


# --- 3. walls on cell faces -------------------------------------------------------------------


def solid_faces(solver: FDTD, axis: int) -> set[float]:
    """Coordinates along `axis` of the faces between an air and a solid cell (inner walls)."""
    air = solver.air.numpy()
    lo = np.take(air, np.arange(solver.shape[axis] - 1), axis=axis)
    hi = np.take(air, np.arange(1, solver.shape[axis]), axis=axis)
    edge = np.nonzero((lo != hi).any(axis=tuple(b for b in range(solver.dim) if b != axis)))[0]
    return {round(float((i + 1) * solver.spacing[axis]), 12) for i in edge}


@pytest.mark.parametrize("dim", [2, 3])
def test_walls_land_exactly_at_every_resolution(dim):
    size = [3.0, 2.0, 1.5][:dim] if dim == 2 else [1.2, 1.0, 0.9]
    cut = [1.5, 1.0][:dim] if dim == 2 else [0.45, 0.35, 0.9]
    room = Room.from_spec({"shape": "l_shape", "size": size, "cut": cut})
    inner = [s - c for s, c in zip(size, cut, strict=True)]
    # The L-room at 20, 40, 80 points per wavelength (500 Hz); a smaller one in 3-D.
    spacings = [LAMBDA / ppw for ppw in (20, 40, 80)] if dim == 2 else [0.05, 0.025, 0.0125]
    for dx in spacings:
        solver = FDTD(room, dx)
        assert all(h <= dx * (1 + 1e-12) for h in solver.spacing)
        for a in range(dim):
            if 0.0 < inner[a] < size[a]:
                assert solid_faces(solver, a) == {round(inner[a], 12)}, (dx, a)
    # refine doubles the counts exactly (a fresh dx / 2 need not: 0.686 / 80 gives 350, not 352).
    base = FDTD(room, spacings[0])
    assert FDTD(room, spacings[0], refine=2).shape == tuple(2 * n for n in base.shape)
    assert FDTD(room, spacings[0], refine=4).shape == tuple(4 * n for n in base.shape)


def test_ungriddable_plane_is_refused_with_a_fix():
    room = Room.from_spec(
        {"shape": "obstacle", "size": [2.5, 2.0], "lo": [0.8333, 0.5], "hi": [1.2, 1.0]}
    )
    with pytest.raises(ValueError, match=r"axis 0.*0\.8333.*dx = 0\.05.*common step"):
        FDTD(room, 0.05)
    # Rounded to a common step, the same room grids.
    ok = Room.from_spec(
        {"shape": "obstacle", "size": [2.5, 2.0], "lo": [0.85, 0.5], "hi": [1.2, 1.0]}
    )
    assert FDTD(ok, 0.05).shape == (50, 40)
    assert aligned_cells([[0.0, 1.5, 3.0]], [3.0], 0.0343) == (88,)


def test_room_without_planes_falls_back_to_the_staircase():
    class Disc:  # a voxelised shape: no planes, no taper method
        dim = 2
        size = (1.0, 1.0)

        def is_air(self, points):
            return np.linalg.norm(np.asarray(points) - 0.5, axis=-1) < 0.45

    solver = FDTD(Disc(), 0.0333)
    assert not solver.aligned and solver.shape == (30, 30)
    assert FDTD(Disc(), 0.0333, refine=2).shape == (60, 60)
    res = solver.run(solver.gaussian_pulse([[0.5, 0.5]], 0.1), 1e-4, 3, [[0.5, 0.5]])
    assert torch.isfinite(res.pressure).all()


# --- 4. per-surface absorption ----------------------------------------------------------------


class Surfaces:
    """A Room with `surface_absorption`: `alpha(points, axis, side)` per wall face; records the
    faces it was asked about."""

    def __init__(self, room: Room, alpha) -> None:
        self.room, self.alpha, self.calls = room, alpha, []
        self.dim, self.size = room.dim, room.size

    def is_air(self, points):
        return self.room.is_air(points)

    def grid_planes(self):
        return self.room.grid_planes()

    def wall_taper(self, points, width):
        return self.room.wall_taper(points, width)

    def surface_absorption(self, points, axis, side):
        self.calls.append((np.asarray(points).copy(), axis, side))
        return self.alpha(np.asarray(points), axis, side)


def obstacle_room(dim: int) -> Room:
    return Room.from_spec(
        {"shape": "obstacle", "size": [1.2] * dim, "lo": [0.5] * dim, "hi": [0.75] * dim}
    )


@pytest.mark.parametrize("dim", [2, 3])
def test_rigid_and_uniform_surfaces_match_the_single_impedance(dim):
    room = obstacle_room(dim)
    src = [[0.3] * dim]
    out_dt, n_out = 5e-4, 9

    def run(r, z=None):
        solver = FDTD(r, 0.05, wall_impedance=z)
        return solver.run(
            solver.gaussian_pulse(src, pulse_sigma(1000.0)), out_dt, n_out, record_snapshots=True
        ).snapshots

    rigid = Surfaces(room, lambda p, a, s: np.zeros(len(p)))
    np.testing.assert_array_equal(run(rigid).numpy(), run(room).numpy())
    # Every face was offered once, centred on a wall plane: air behind it, solid in front.
    solver = FDTD(room, 0.05)
    h = np.asarray(solver.spacing)
    n_faces = 0
    for pts, a, side in rigid.calls:
        n_faces += len(pts)
        np.testing.assert_allclose(pts[:, a] / h[a], np.round(pts[:, a] / h[a]), atol=1e-9)
        step = np.eye(dim)[a] * side * h[a] / 2
        assert room.is_air(pts - step).all() and not room.is_air(pts + step).any()
    faces = 2 * dim * 24 ** (dim - 1) + 2 * dim * 5 ** (dim - 1)  # room walls + the block's
    assert n_faces == faces
    uniform = Surfaces(room, lambda p, a, s: np.full(len(p), 0.3))
    z = impedance_from_absorption(0.3)
    np.testing.assert_allclose(run(uniform).numpy(), run(room, z).numpy(), rtol=0, atol=1e-13)


@pytest.mark.parametrize("dim", [2, 3])
def test_energy_leaves_only_through_absorbing_surfaces(dim):
    # Only the block's faces absorb (alpha 0.9); the room's own walls are rigid.
    room = obstacle_room(dim)

    def on_block(p, axis, side):
        return np.where(np.abs(p[:, axis] - (0.5 if side > 0 else 0.75)) < 1e-9, 0.9, 0.0)

    surfaces = Surfaces(room, on_block)
    solver = FDTD(surfaces, 0.05)
    dt, substeps = solver.step_plan(5e-5)
    assert substeps == 1
    p0 = solver.gaussian_pulse([[0.3] * dim], pulse_sigma(1000.0))
    res = solver.run(p0, dt, 161, record_energy=True, record_snapshots=True)
    e = res.energy[0].numpy()  # e[k] = E^{k - 1/2}
    steps = np.diff(e)
    assert steps.max() <= 1e-12 * e[0] and e[-1] / e[0] < 0.95

    # The per-step loss, recomputed from the snapshots over the block's faces only: each face's
    # velocity follows rho (h / 2) du/dt = p_cell - Z u and loses dt Z A u_mean^2.
    p = res.snapshots[0].numpy()[:-1].reshape(len(e) - 1, -1)  # (steps, cells)
    z_block = impedance_from_absorption(0.9)
    rho, h = solver.medium.rho, solver.spacing[0]
    loss = np.zeros(len(p))
    blocks = 0
    for pts, a, side in surfaces.calls:
        absorbing = on_block(pts, a, side) > 0
        blocks += int(absorbing.sum())
        cells = pts[absorbing] - np.eye(dim)[a] * side * h / 2  # the air cells' centres
        idx = np.ravel_multi_index(tuple(np.floor(cells / h).astype(int).T), solver.shape)
        m = rho * h / 2
        u = [dt * p[0, idx] / (2 * m)]
        for k in range(1, len(p)):
            u.append(((m - z_block * dt / 2) * u[-1] + dt * p[k, idx]) / (m + z_block * dt / 2))
        u_mean = 0.5 * (np.asarray(u[1:]) + np.asarray(u[:-1]))
        loss[1:] += dt * z_block * solver.cell_volume / h * (u_mean**2).sum(-1)
    assert blocks == 2 * dim * 5 ** (dim - 1)
    np.testing.assert_allclose(-steps, loss, rtol=1e-9, atol=1e-13 * e[0])
