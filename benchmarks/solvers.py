"""Case G's ground truth: the FDTD solver, the panel method and the elasticity FEM producing the
fields the surrogates answer (these import training/, and the FDTD torch)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.workloads import AcousticWorkload, AirfoilWorkload, ElasticityWorkload

F64 = NDArray[np.float64]


def fdtd_field(
    work: AcousticWorkload, source: F64, receivers: F64, device: str = "cpu"
) -> tuple[F64, dict[str, Any]]:
    """Pressure (receivers, times) from the FDTD solver at the dataset's settings (the ones
    that made the model's training data), with the wall time of every stage: building the
    grid, the initial pulse, and marching from t = 0 to the last requested time. On "cuda"
    the field's copy back to the host ends the timing, so queued kernels are counted."""
    import torch

    from training.acoustics.dataset import DatasetConfig, make_solver
    from training.common.config import from_dict

    cfg = from_dict(DatasetConfig, work.manifest["training"]["dataset"], "dataset")
    steps = np.rint(work.times / work.output_dt).astype(np.int64)
    if not np.allclose(steps * work.output_dt, work.times, rtol=0, atol=1e-12):
        raise ValueError("the requested times are not on one output grid from t = 0")
    t0 = time.perf_counter()
    solver = make_solver(cfg, device)
    t1 = time.perf_counter()
    p0 = solver.gaussian_pulse(source[None, :], cfg.physics.sigma, taper=cfg.physics.source_taper)
    t2 = time.perf_counter()
    result = solver.run(p0, work.output_dt, int(steps.max()) + 1, receivers=receivers)
    field = result.pressure[0].double().cpu().numpy()[steps].T  # (receivers, times)
    t3 = time.perf_counter()
    dt, substeps = solver.step_plan(work.output_dt)
    info = {
        "seconds": t3 - t0,
        "setup_s": round(t1 - t0, 4),
        "pulse_s": round(t2 - t1, 4),
        "march_s": round(t3 - t2, 4),
        "grid": list(solver.shape),
        "dt_s": dt,
        "time_steps": int(steps.max()) * substeps,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "dtype": cfg.solver.dtype,
        "points_per_wavelength": cfg.solver.points_per_wavelength,
    }
    return field, info


def panel_field(
    work: AirfoilWorkload, code: str, query: F64
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """[u, v, cp] (N, 3) from the Hess-Smith panel method at the dataset's panel count."""
    from training.airfoils.panel import solve

    t0 = time.perf_counter()
    solution = solve(work.polylines(code), work.conditions["aoa_deg"], work.conditions["speed"])
    t1 = time.perf_counter()
    fields = solution.fields(query)
    t2 = time.perf_counter()
    info = {
        "seconds": t2 - t0,
        "solve_s": round(t1 - t0, 4),
        "field_s": round(t2 - t1, 4),
        "panels": work.panels,
    }
    return fields, info


def fem_field(work: ElasticityWorkload, void: F64) -> tuple[F64, F64, dict[str, Any]]:
    """(vertices (N, 2), [von_mises, ux, uy] (N, 3) at them, info) from the FEM solver at the
    dataset's settings: gmsh meshing, the Newton solve of the mixed P2-P1 hyperelastic cell,
    nodal von Mises stress and displacement (what the dataset's samples hold)."""
    from training.elasticity.fem import solve

    t0 = time.perf_counter()
    solution = solve(void, work.load, work.mesh_params)
    fields = np.column_stack([solution.von_mises, solution.displacement])
    seconds = time.perf_counter() - t0
    info = {
        "seconds": seconds,
        "mesh_s": round(solution.mesh_seconds, 4),
        "solve_s": round(solution.seconds, 4),
        "vertices": len(solution.nodes),
        "triangles": len(solution.triangles),
        "newton_iterations": len(solution.residuals),
        "load_pa": work.load,
        "h_min": work.mesh_params.h_min,
        "h_max": work.mesh_params.h_max,
    }
    return np.asarray(solution.nodes, dtype=np.float64), fields, info


def rel_l2(pred: NDArray[Any], ref: NDArray[Any]) -> float:
    p, r = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(p - r)) / (max(float(np.linalg.norm(r)), 1e-300))
