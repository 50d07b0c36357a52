"""The hyperelastic FEM solver of the elasticity dataset: exactness, the linear limit, mesh and
Newton convergence, and refusal of bad voids."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import fsolve

from training.elasticity.fem import Material, evaluate, piola, solve, solve_mesh
from training.elasticity.mesh import CellMesh, MeshParams, mesh_cell
from training.elasticity.voids import VoidParams, check_void, circle, random_void

MAT = Material()


def _homogeneous(t: float) -> tuple[float, float]:
    """Stretches (lambda_x, lambda_y) of plane-strain uniaxial dead-load tension t."""

    def eqs(z: np.ndarray) -> list[float]:
        lx, ly, q = z
        F = np.array([[lx, 0.0], [0.0, ly]])[:, :, None]
        p = q * MAT.mu
        P, _ = piola(F, np.array([p]), MAT)
        return [
            P[0, 0, 0] / MAT.mu,
            (P[1, 1, 0] - t) / MAT.mu,
            (MAT.kappa * (lx * ly - 1) - p) / MAT.mu,
        ]

    lx, ly, _ = fsolve(eqs, [1.0, 1.0, 0.0], xtol=1e-12)
    return float(lx), float(ly)


def test_patch_test_reproduces_homogeneous_finite_strain_exactly() -> None:
    # an irregular mesh of the square (interior vertices moved at random), roller bottom:
    # uniaxial tension is then a homogeneous finite deformation, inside P2-P1 exactly
    mesh = mesh_cell(None, MeshParams(h_min=0.2, h_max=0.2))
    rng = np.random.default_rng(1)
    xy = mesh.vertices.copy()
    interior = (xy > 1e-9).all(axis=1) & (xy < 1 - 1e-9).all(axis=1)
    xy[interior] += rng.uniform(-0.05, 0.05, (int(interior.sum()), 2))
    t = 1.2e5  # the top of the dataset's load range: a finite strain
    sol = solve_mesh(CellMesh(xy, mesh.triangles), t, bottom="roller")
    lx, ly = _homogeneous(t)
    assert ly - 1 > 0.08  # 8 % stretch, not an infinitesimal strain
    exact = np.column_stack([(lx - 1) * xy[:, 0], (ly - 1) * xy[:, 1]])
    assert np.abs(sol.displacement - exact).max() < 1e-9
    sxx, syy, _, sxy = sol.stress.T
    assert np.abs(syy - t / lx).max() < 1e-8 * t  # Cauchy = nominal / lateral stretch
    assert np.abs(sxx).max() < 1e-8 * t and np.abs(sxy).max() < 1e-8 * t
    assert np.ptp(sol.von_mises) < 1e-8 * t


def test_kirsch_stress_concentration_in_the_small_strain_limit() -> None:
    # a hole of radius a = 0.03 in the unit plate (width 33 a), uniaxial tension far below the
    # modulus; roller bottom so no corner singularity; Kirsch: sigma_yy = 3 t at the hole's
    # sides, sigma_xx = -t at its top (plane stresses are independent of Poisson's ratio)
    a, t = 0.03, 10.0
    mesh = mesh_cell(circle((0.5, 0.5), a, 128), MeshParams(0.004, 0.08, 0.0, 0.25))
    sol = solve_mesh(mesh, t, bottom="roller")

    def at(x: float, y: float) -> np.ndarray:
        return sol.stress[int(np.argmin(np.hypot(sol.nodes[:, 0] - x, sol.nodes[:, 1] - y)))]

    for side in (0.5 - a, 0.5 + a):
        assert at(side, 0.5)[1] / t == pytest.approx(3.0, abs=0.1)
    assert at(0.5, 0.5 + a)[0] / t == pytest.approx(-1.0, abs=0.1)


def _far_from_corners(points: np.ndarray, radius: float = 0.05) -> np.ndarray:
    return (np.hypot(points[:, 0], points[:, 1]) > radius) & (
        np.hypot(points[:, 0] - 1, points[:, 1]) > radius
    )


def test_stress_field_converges_under_refinement() -> None:
    void = random_void(VoidParams(), np.random.default_rng(3))
    base, load = MeshParams(h_min=0.04, h_max=0.1), 6e4
    ref = solve(void, load, base.scaled(0.25))
    errors = []
    for factor in (1.0, 0.5):
        sol = solve(void, load, base.scaled(factor))
        vm, u = evaluate(ref, sol.nodes)
        far = _far_from_corners(sol.nodes)
        errors.append(
            (
                np.linalg.norm(sol.von_mises[far] - vm[far]) / np.linalg.norm(vm[far]),
                np.linalg.norm(sol.displacement[far] - u[far]) / np.linalg.norm(u[far]),
            )
        )
    (vm1, u1), (vm2, u2) = errors
    assert vm2 < 0.6 * vm1 and vm2 < 0.03  # measured 3.7 % -> 1.7 %
    assert u2 < 0.4 * u1 and u2 < 2e-3  # measured 0.24 % -> 0.06 %


def test_newton_converges_quadratically_at_the_top_load() -> None:
    void = random_void(VoidParams(), np.random.default_rng(0))
    sol = solve(void, 1.2e5, MeshParams(h_min=0.03, h_max=0.1))
    r = np.asarray(sol.residuals)
    assert r[-1] < 1e-9
    # the asymptotic regime: between 1e-2 and the round-off floor, digits double each step
    pairs = [(a, b) for a, b in itertools.pairwise(r) if a < 1e-2 and b > 1e-13]
    assert pairs, r
    for a, b in pairs:
        assert np.log(b) / np.log(a) > 1.7, r


def test_evaluate_is_exact_at_the_mesh_vertices() -> None:
    void = random_void(VoidParams(), np.random.default_rng(5))
    sol = solve(void, 3e4, MeshParams(h_min=0.03, h_max=0.1))
    vm, u = evaluate(sol, sol.nodes)
    assert np.allclose(vm, sol.von_mises, rtol=1e-10, atol=1e-6)
    assert np.allclose(u, sol.displacement, rtol=0, atol=1e-14)


def _figure_eight(n: int = 200) -> np.ndarray:
    th = 2 * np.pi * np.arange(n) / n
    return np.column_stack([0.5 + 0.3 * np.cos(th), 0.5 + 0.2 * np.sin(2 * th)])


@pytest.mark.parametrize(
    ("void", "message"),
    [
        (_figure_eight(), "self-intersects"),
        (circle((0.9, 0.5), 0.2, 128), "leaves the cell"),
        (circle((0.5, 0.5), 0.47, 128), "within 0.03 of the cell's edges"),
        (circle((0.5, 0.5), 0.3, 32), "at least 128"),
    ],
)
def test_bad_voids_are_refused_clearly(void: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_void(void)
    with pytest.raises(ValueError, match=message):
        solve(void, 1e4)


def test_voids_are_ccw_and_within_the_radius_range() -> None:
    params = VoidParams()
    for seed in range(20):
        v = random_void(params, np.random.default_rng(seed))
        r = np.hypot(v[:, 0] - 0.5, v[:, 1] - 0.5)
        assert len(v) == 128 and r.min() >= 0.2 and r.max() <= 0.4
        x, y = v[:, 0], v[:, 1]
        assert np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0
