"""Nonlinear plane-strain hyperelasticity of the unit cell with a void (mixed P2-P1 FEM).

Material: nearly incompressible Mooney-Rivlin (Rivlin-Saunders), as Geo-FNO, with the
isochoric/volumetric split

    W = c1 (I1_bar - 3) + c2 (I2_bar - 3) + U(J),   U'(J) = p,   p = kappa (J - 1),

c1 = 1.863e5, c2 = 9.79e3 (shear modulus mu = 2 (c1 + c2) = 3.92e5) and a bulk modulus
kappa = 500 mu (Poisson's ratio 0.499). Mooney-Rivlin rather than Neo-Hookean because it is
Geo-FNO's material; the c2 term is small, so the two differ by ~5 % in stiffness.

Formulation: a mixed displacement-pressure (Hu-Washizu reduced to u-p) form on Taylor-Hood
triangles, P2 displacement and P1 pressure. Displacement-only linear triangles lock for a
nearly incompressible material and give wrong stresses; Taylor-Hood is inf-sup stable and is
exact for kappa -> infinity too. The pressure unknown is scaled by mu so both residual blocks
have the units of a force and one norm measures them.

Kinematics: plane strain (F33 = 1, the out-of-plane stress sigma_zz is kept in von Mises).
Boundary conditions on the cell: bottom edge clamped, uniform dead traction (0, load) per unit
reference length on the top edge (a nominal stress, so `load` is in Pa), the sides and the void
traction-free. The tangent dP/dF is obtained at each quadrature point by complex-step
differentiation of the analytic first Piola stress: exact to round-off, so Newton converges
quadratically.

Newton: full steps damped by a backtracking line search on the residual norm; when a load step
fails (no convergence, or an inverted element) it is split in two, recursively.

Outputs at the mesh vertices: von Mises of the Cauchy stress (Pa, L2-projected on P1) and the
displacement (cell lengths). The clamped-to-free corners (0, 0) and (1, 0) are stress
singularities: nodal stress there grows with refinement, so errors are reported with and
without small disks around them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import skfem
from numpy.typing import NDArray

from training.elasticity.mesh import UNIT_CELL, Box, CellMesh, MeshParams, mesh_cell
from training.elasticity.voids import check_void

F64 = NDArray[np.float64]

C1, C2 = 1.863e5, 9.79e3
MU = 2.0 * (C1 + C2)


@dataclass(frozen=True)
class Material:
    c1: float = C1
    c2: float = C2
    kappa: float = 500.0 * MU  # float("inf") for exact incompressibility

    @property
    def mu(self) -> float:
        return 2.0 * (self.c1 + self.c2)


@dataclass(frozen=True)
class NewtonParams:
    rtol: float = 1e-9  # on ||R|| / ||f_ext||: far below the discretisation error
    max_iter: int = 25
    load_steps: int = 1  # initial number of equal load increments
    max_splits: int = 6  # a failed increment is halved at most this many times
    max_backtracks: int = 10


class SolverError(RuntimeError):
    pass


@dataclass
class Solution:
    nodes: F64  # (n, 2) mesh vertices
    triangles: NDArray[np.int64]  # (m, 3)
    von_mises: F64  # (n,) Pa
    displacement: F64  # (n, 2) cell lengths
    stress: F64  # (n, 4) Cauchy sigma_xx, sigma_yy, sigma_zz, sigma_xy (Pa)
    pressure: F64  # (n,) the mixed form's pressure p = kappa (J - 1) (Pa)
    u_dofs: F64  # the P2 displacement dof vector (scikit-fem's ordering), for interpolation
    residuals: list[float] = field(default_factory=list)  # ||R|| / ||f_ext||, every iteration
    load_steps: list[float] = field(default_factory=list)  # the load levels solved
    seconds: float = 0.0  # assembly set-up + Newton + stress recovery (meshing excluded)
    mesh_seconds: float = 0.0


# --- constitutive law ----------------------------------------------------------------------


def piola(F: Any, p: Any, mat: Material) -> tuple[Any, Any]:
    """First Piola stress of the plane-strain mixed Mooney-Rivlin law.

    F: (2, 2, ...) in-plane deformation gradient (real or complex: every operation is
    analytic, so complex-step differentiation works); p: (...) pressure. Returns the in-plane
    block (2, 2, ...) and P33."""
    a, b, c, d = F[0, 0], F[0, 1], F[1, 0], F[1, 1]
    J = a * d - b * c
    FinvT = np.array([[d, -c], [-b, a]]) / J  # in-plane block of F^-T; its 33 entry is 1
    C = np.einsum("kiz,kjz->ijz", F.reshape(2, 2, -1), F.reshape(2, 2, -1)).reshape(F.shape)
    I1 = C[0, 0] + C[1, 1] + 1.0
    trC2 = C[0, 0] ** 2 + 2 * C[0, 1] * C[1, 0] + C[1, 1] ** 2 + 1.0
    I2 = 0.5 * (I1**2 - trC2)
    FC = np.einsum("ikz,kjz->ijz", F.reshape(2, 2, -1), C.reshape(2, 2, -1)).reshape(F.shape)
    j23, j43 = J ** (-2.0 / 3.0), J ** (-4.0 / 3.0)
    P = (
        mat.c1 * j23 * (2 * F - (2.0 / 3.0) * I1 * FinvT)
        + mat.c2 * j43 * (2 * (I1 * F - FC) - (4.0 / 3.0) * I2 * FinvT)
        + p * J * FinvT
    )
    P33 = (
        mat.c1 * j23 * (2 - (2.0 / 3.0) * I1)
        + mat.c2 * j43 * (2 * (I1 - 1) - (4.0 / 3.0) * I2)
        + p * J
    )
    return P, P33


def tangent(F: F64, p: F64, mat: Material) -> F64:
    """dP/dF (2, 2, 2, 2, ...) at fixed p by complex step (no subtractive cancellation)."""
    h = 1e-30
    A = np.empty((2, 2, 2, 2, *F.shape[2:]))
    for k in range(2):
        for m in range(2):
            Fc = F.astype(complex)
            Fc[k, m] += 1j * h
            A[:, :, k, m] = piola(Fc, p, mat)[0].imag / h
    return A


def cauchy(F: F64, p: F64, mat: Material) -> F64:
    """(4, ...) Cauchy stress sigma_xx, sigma_yy, sigma_zz, sigma_xy = P F^T / J."""
    P, P33 = piola(F, p, mat)
    J = F[0, 0] * F[1, 1] - F[0, 1] * F[1, 0]
    s = np.einsum("ik...,jk...->ij...", P, F) / J
    return np.stack([s[0, 0], s[1, 1], P33 / J, 0.5 * (s[0, 1] + s[1, 0])])


def von_mises(s: F64) -> F64:
    xx, yy, zz, xy = s
    return np.sqrt(0.5 * ((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2) + 3 * xy**2)


# --- discretisation ------------------------------------------------------------------------


class Discretization:
    """Taylor-Hood spaces, quadrature data and sparsity of one mesh, reused by every Newton
    iteration. `bottom`: "clamped" (the cell) or "roller" (u_y = 0 on y = y0 and u_x = 0 at the
    corner (x0, y0): the plate tests, free of corner singularities)."""

    def __init__(self, mesh: CellMesh, box: Box = UNIT_CELL, bottom: str = "clamped") -> None:
        (x0, x1), (y0, y1) = box
        tol = 1e-9 * max(x1 - x0, y1 - y0)
        m = mesh.skfem().with_boundaries(
            {
                "bottom": lambda x: np.abs(x[1] - y0) < tol,
                "top": lambda x: np.abs(x[1] - y1) < tol,
            }
        )
        self.mesh = m
        self.bu = skfem.Basis(m, skfem.ElementVector(skfem.ElementTriP2()), intorder=4)
        self.bp = self.bu.with_element(skfem.ElementTriP1())
        self.nu, self.np_ = self.bu.N, self.bp.N
        self.G = np.stack([phi[0].grad for phi in self.bu.basis])  # (12, 2, 2, E, Q)
        # each vector basis function moves one component: its gradient has one non-zero row;
        # the tangent is assembled per component pair from those rows (4x fewer flops)
        self.comp = np.argmax(np.abs(self.G).sum(axis=(2, 3, 4)), axis=1)  # (12,)
        self.g = self.G[np.arange(12), self.comp]  # (12, 2, E, Q)
        self.Q = np.stack([np.asarray(phi[0]) for phi in self.bp.basis])  # (3, E, Q)
        self.dx = self.bu.dx  # (E, Q)
        dofs = np.concatenate([self.bu.element_dofs, self.bp.element_dofs + self.nu])  # (15, E)
        self.rows = np.repeat(dofs[:, None, :], 15, axis=1).ravel()
        self.cols = np.repeat(dofs[None, :, :], 15, axis=0).ravel()
        self.dofs = dofs
        n = self.nu + self.np_
        if bottom == "clamped":
            fixed = self.bu.get_dofs("bottom").all()
        elif bottom == "roller":
            uy = self.bu.get_dofs("bottom").all("u^2")
            corner = int(np.argmin(np.hypot(m.p[0] - x0, m.p[1] - y0)))
            fixed = np.concatenate([uy, [self.bu.nodal_dofs[0, corner]]])
        else:
            raise ValueError(f"bottom must be 'clamped' or 'roller', got {bottom!r}")
        self.free = np.setdiff1d(np.arange(n), fixed)
        # The Newton matrix is assembled straight into the free-dof CSC structure: each element
        # entry's slot in its data array is found once per mesh (sorting), then every iteration
        # is one bincount instead of COO -> CSR -> slicing -> CSC.
        red = np.full(n, -1)
        red[self.free] = np.arange(len(self.free))
        r, c = red[self.rows], red[self.cols]
        self.keep = (r >= 0) & (c >= 0)
        nf = len(self.free)
        key = c[self.keep].astype(np.int64) * nf + r[self.keep]
        uniq, self.slot = np.unique(key, return_inverse=True)
        self.indices = (uniq % nf).astype(np.int32)
        self.indptr = np.searchsorted(uniq // nf, np.arange(nf + 1)).astype(np.int32)
        top = skfem.FacetBasis(m, self.bu.elem, facets=m.boundaries["top"], intorder=4)

        @skfem.LinearForm
        def unit_traction(v: Any, w: Any) -> Any:
            return v[1]

        self.f_unit = np.concatenate([unit_traction.assemble(top), np.zeros(self.np_)])
        mass = skfem.BilinearForm(lambda u, v, w: u * v).assemble(self.bp)
        self.mass_lu = spla.splu(mass.tocsc())

    def grad_u(self, x: F64) -> F64:
        """(2, 2, E, Q) displacement gradients of the state x = [u; p / mu]."""
        ue = x[self.bu.element_dofs]  # (12, E)
        return np.einsum("aijeq,ae->ijeq", self.G, ue)

    def pressure(self, x: F64) -> F64:
        return np.einsum("aeq,ae->eq", self.Q, x[self.bp.element_dofs + self.nu])

    def residual(self, x: F64, load: float, mat: Material) -> F64 | None:
        """[R_u; R_p] (None when an element is inverted: J <= 0 somewhere)."""
        F = self.grad_u(x) + np.eye(2)[:, :, None, None]
        J = F[0, 0] * F[1, 1] - F[0, 1] * F[1, 0]
        if (J <= 0).any():
            return None
        p = mat.mu * self.pressure(x)
        P, _ = piola(F, p, mat)
        ru = np.einsum("aijeq,ijeq,eq->ae", self.G, P, self.dx)
        rp = mat.mu * np.einsum("aeq,eq->ae", self.Q, (J - 1 - p / mat.kappa) * self.dx)
        r = np.zeros(self.nu + self.np_)
        np.add.at(r, self.dofs, np.concatenate([ru, rp]))
        return r - load * self.f_unit

    def jacobian(self, x: F64, mat: Material) -> sp.csc_matrix:
        """The Newton matrix on the free dofs (CSC)."""
        F = self.grad_u(x) + np.eye(2)[:, :, None, None]
        J = F[0, 0] * F[1, 1] - F[0, 1] * F[1, 0]
        p = mat.mu * self.pressure(x)
        A = tangent(F, p, mat)
        Gdx = self.G * self.dx
        gdx = self.g * self.dx
        kuu = np.zeros((F.shape[2], 12, 12))
        for c in range(2):
            a = np.flatnonzero(self.comp == c)
            for d in range(2):
                b = np.flatnonzero(self.comp == d)
                blk = np.einsum(
                    "ajeq,jleq,bleq->eab", gdx[a], A[c, :, d, :], self.g[b], optimize=True
                )
                kuu[:, a[:, None], b[None, :]] = blk
        FinvT = np.array([[F[1, 1], -F[1, 0]], [-F[0, 1], F[0, 0]]]) / J
        # d R_u / d(p/mu) = mu * J F^-T : grad v
        kup = mat.mu * np.einsum("aijeq,ijeq,beq->eab", Gdx, J * FinvT, self.Q, optimize=True)
        kpp = -(mat.mu**2 / mat.kappa) * np.einsum("aeq,beq,eq->eab", self.Q, self.Q, self.dx)
        E = F.shape[2]
        k = np.zeros((E, 15, 15))
        k[:, :12, :12] = kuu
        k[:, :12, 12:] = kup
        k[:, 12:, :12] = kup.transpose(0, 2, 1)
        k[:, 12:, 12:] = kpp
        data = k.transpose(1, 2, 0).ravel()[self.keep]  # (15, 15, E) to match rows/cols
        nf = len(self.free)
        values = np.bincount(self.slot, weights=data, minlength=len(self.indices))
        return sp.csc_matrix((values, self.indices, self.indptr), shape=(nf, nf))

    def recover(self, x: F64, mat: Material) -> tuple[F64, F64]:
        """Cauchy stress (n, 4) and pressure (n,) at the vertices: L2 projection onto P1."""
        F = self.grad_u(x) + np.eye(2)[:, :, None, None]
        p = mat.mu * self.pressure(x)
        s = cauchy(F, p, mat)  # (4, E, Q)
        rhs = np.zeros((self.np_, 4))
        loc = np.einsum("aeq,ceq,eq->aec", self.Q, s, self.dx)
        np.add.at(rhs, self.bp.element_dofs, loc)
        proj = self.mass_lu.solve(rhs)
        verts = self.bp.nodal_dofs[0]
        return proj[verts], mat.mu * x[self.nu + verts]


def _linear_solve(K: sp.csc_matrix, b: F64) -> F64 | None:
    """Solve the Newton system; None if singular.

    With a finite bulk modulus and a stable (positive definite K_uu) state the matrix
    [[K_uu, K_up], [K_up^T, -K_pp]] is symmetric quasi-definite, which factors stably in any
    symmetric order without pivoting: a minimum-degree order on A^T + A with diagonal pivots
    is 2x faster and 2.5x sparser than the default. Should the result be inaccurate (kappa =
    infinity makes the pressure block zero), a pivoting factorisation is used instead."""
    try:
        lu = spla.splu(
            K, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
        )
        y = lu.solve(b)
        y += lu.solve(b - K @ y)  # one step of iterative refinement: unpivoted LU loses digits
        if np.isfinite(y).all() and np.linalg.norm(K @ y - b) <= 1e-8 * np.linalg.norm(b):
            return np.asarray(y)
        return np.asarray(spla.splu(K, permc_spec="COLAMD").solve(b))
    except RuntimeError:  # exactly singular factor
        return None


def _newton(
    disc: Discretization, x: F64, load: float, mat: Material, prm: NewtonParams, scale: float
) -> tuple[F64, list[float]] | None:
    """Newton with a backtracking line search from x at one load level; None if it fails."""
    free = disc.free
    history: list[float] = []
    r = disc.residual(x, load, mat)
    if r is None:
        return None
    norm = float(np.linalg.norm(r[free]))
    for _ in range(prm.max_iter):
        history.append(norm / scale)
        if norm <= prm.rtol * scale:
            return x, history
        K = disc.jacobian(x, mat)
        dx = _linear_solve(K, -r[free])
        if dx is None:
            return None
        alpha = 1.0
        for _ in range(prm.max_backtracks):
            trial = x.copy()
            trial[free] += alpha * dx
            r_new = disc.residual(trial, load, mat)
            if r_new is not None:
                n_new = float(np.linalg.norm(r_new[free]))
                # Armijo on 0.5 ||R||^2 along the Newton direction; near the solution the
                # full step is always taken (quadratic convergence is kept)
                if n_new <= (1 - 1e-4 * alpha) * norm or n_new <= prm.rtol * scale:
                    break
            alpha *= 0.5
        else:
            return None
        x, r, norm = trial, r_new, n_new
    history.append(norm / scale)
    return (x, history) if norm <= prm.rtol * scale else None


def solve_mesh(
    mesh: CellMesh,
    load: float,
    *,
    box: Box = UNIT_CELL,
    bottom: str = "clamped",
    material: Material = Material(),
    newton: NewtonParams = NewtonParams(),
) -> Solution:
    """Solve on a given mesh: uniform traction (0, load) on the top edge."""
    t0 = time.perf_counter()
    disc = Discretization(mesh, box, bottom)
    x = np.zeros(disc.nu + disc.np_)
    scale = max(float(np.linalg.norm(load * disc.f_unit[disc.free])), 1e-300)
    history: list[float] = []
    levels: list[float] = []
    targets = list(np.linspace(0.0, load, newton.load_steps + 1)[1:])
    level, splits = 0.0, 0
    while targets:
        target = targets[0]
        out = _newton(disc, x, target, material, newton, scale)
        if out is None:
            if splits >= newton.max_splits:
                raise SolverError(
                    f"Newton failed at load {target:.6g} (of {load:.6g}) after {splits} "
                    "halvings of the load increment"
                )
            splits += 1
            targets.insert(0, 0.5 * (level + target))
            continue
        x, hist = out
        history += hist
        levels.append(target)
        level = targets.pop(0)
    stress, pressure = disc.recover(x, material)
    verts = disc.bu.nodal_dofs[:, disc.bp.nodal_dofs[0]]  # (2, n) ux, uy dofs of each vertex
    return Solution(
        nodes=mesh.vertices,
        triangles=mesh.triangles,
        von_mises=von_mises(stress.T),
        displacement=np.stack([x[verts[0]], x[verts[1]]], axis=1),
        stress=stress,
        pressure=pressure,
        u_dofs=x[: disc.nu].copy(),
        residuals=history,
        load_steps=levels,
        seconds=time.perf_counter() - t0,
    )


def solve(
    void_polyline: F64,
    load: float,
    mesh_params: MeshParams | None = None,
    *,
    material: Material = Material(),
    newton: NewtonParams = NewtonParams(),
) -> Solution:
    """The cell with this void under traction `load` (Pa) on its top edge."""
    void = check_void(void_polyline)
    t0 = time.perf_counter()
    mesh = mesh_cell(void, mesh_params or MeshParams())
    mesh_seconds = time.perf_counter() - t0
    sol = solve_mesh(mesh, load, material=material, newton=newton)
    sol.mesh_seconds = mesh_seconds
    return sol


def evaluate(sol: Solution, points: F64) -> tuple[F64, F64]:
    """(von Mises (k,), displacement (k, 2)) of a solution at points of its domain, from the
    P1 von Mises field and the P2 displacement (exact interpolation of the FE solution).

    Points on the domain's boundary (another mesh's vertices on the void) may lie a round-off
    outside this mesh, where scikit-fem's element finder refuses them: each point is given the
    nearby triangle it is most inside, and one further than 1e-6 outside is refused."""
    m = skfem.MeshTri(sol.nodes.T.copy(), sol.triangles.T.copy())
    pts = np.asarray(points, dtype=np.float64)
    cells = locate(sol.nodes, sol.triangles, pts)
    vm = np.zeros(len(sol.nodes))
    vm[:] = sol.von_mises  # P1 dofs are the vertices, in order
    out = []
    for elem, values in (
        (skfem.ElementTriP1(), vm),
        (skfem.ElementVector(skfem.ElementTriP2()), sol.u_dofs),
    ):
        basis = skfem.Basis(m, elem, intorder=1)
        ref = basis.mapping.invF(pts.T[:, :, None], tind=cells)
        comp = 2 if isinstance(elem, skfem.ElementVector) else 1
        acc = np.zeros((comp, len(pts)))
        for k in range(basis.Nbfun):
            phi = np.asarray(elem.gbasis(basis.mapping, ref, k, tind=cells)[0])
            acc += phi.reshape(comp, len(pts)) * values[basis.element_dofs[k, cells]]
        out.append(acc)
    return out[0][0], out[1].T


def locate(nodes: F64, triangles: NDArray[np.int64], pts: F64, k: int = 16) -> NDArray[np.int64]:
    """Index of a triangle containing each point (the most-inside of the k nearest)."""
    from scipy.spatial import cKDTree

    tri = nodes[triangles]  # (m, 3, 2)
    _, near = cKDTree(tri.mean(axis=1)).query(pts, k=min(k, len(triangles)))
    near = np.atleast_2d(near)
    a, b, c = tri[near, 0], tri[near, 1], tri[near, 2]  # (n, k, 2)
    det = (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (
        c[..., 0] - a[..., 0]
    )
    d = pts[:, None, :] - a
    l1 = (d[..., 0] * (c[..., 1] - a[..., 1]) - d[..., 1] * (c[..., 0] - a[..., 0])) / det
    l2 = ((b[..., 0] - a[..., 0]) * d[..., 1] - (b[..., 1] - a[..., 1]) * d[..., 0]) / det
    inside = np.minimum(np.minimum(l1, l2), 1 - l1 - l2)
    best = np.argmax(inside, axis=1)
    worst = float(inside[np.arange(len(pts)), best].min()) if len(pts) else 0.0
    if worst < -1e-6:
        i = int(np.argmin(inside[np.arange(len(pts)), best]))
        raise ValueError(f"point {pts[i].tolist()} is outside the mesh")
    return np.asarray(near[np.arange(len(pts)), best], dtype=np.int64)
