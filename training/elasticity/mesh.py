"""Triangle meshes of a rectangle minus a polygonal void (gmsh), graded toward the void.

The void is meshed as the polyline itself (one gmsh line per segment), so the mesh's hole is
exactly the stored polygon and the P2 mid-edge nodes on it lie on the same straight segments.
The element size is `h_min` within `grade_start` of the void and grows linearly to `h_max`
at `grade_end`: an independent check found a uniform ~1,000-node mesh 5 % off a converged von
Mises field near the void, and grading toward the void brought it to ~1.5 % at ~2,000 nodes.

Only the P1 mesh comes from gmsh; scikit-fem builds the P2 (Taylor-Hood velocity) dofs from
its edges (`MeshTri`), so `CellMesh.skfem()` is all the mixed form needs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import gmsh
import numpy as np
import skfem
from numpy.typing import NDArray

F64 = NDArray[np.float64]
Box = tuple[tuple[float, float], tuple[float, float]]
UNIT_CELL: Box = ((0.0, 1.0), (0.0, 1.0))

_GMSH_LOCK = threading.Lock()  # gmsh is one global state per process


@dataclass(frozen=True)
class MeshParams:
    """Element sizes (in cell lengths) and the grading band around the void."""

    h_min: float = 0.015  # at the void
    h_max: float = 0.05  # far from it
    grade_start: float = 0.02  # distance from the void where growth begins
    grade_end: float = 0.3  # distance where h_max is reached

    def __post_init__(self) -> None:
        if not 0 < self.h_min <= self.h_max:
            raise ValueError(f"need 0 < h_min <= h_max, got {self.h_min}, {self.h_max}")
        if not 0 <= self.grade_start < self.grade_end:
            raise ValueError("need 0 <= grade_start < grade_end")

    def scaled(self, factor: float) -> MeshParams:
        """The same grading with every size times `factor` (0.5: the super-resolution mesh)."""
        h_min, h_max = self.h_min * factor, self.h_max * factor
        return MeshParams(h_min, h_max, self.grade_start, self.grade_end)


@dataclass
class CellMesh:
    vertices: F64  # (n, 2)
    triangles: NDArray[np.int64]  # (m, 3), counter-clockwise

    def skfem(self) -> skfem.MeshTri:
        return skfem.MeshTri(self.vertices.T.copy(), self.triangles.T.copy())


@contextmanager
def _gmsh_session() -> Iterator[None]:
    """Initialise gmsh quietly and single-threaded, finalise it whatever happens."""
    with _GMSH_LOCK:
        # a session someone else opened is borrowed (a model of our own, removed after), not
        # finalised under them
        owner = not gmsh.isInitialized()
        if owner:
            # no signal handler: workers and threads must not have gmsh grab SIGINT
            gmsh.initialize(readConfigFiles=False, interruptible=False)
        previous = "" if owner else gmsh.model.getCurrent()
        try:
            gmsh.option.setNumber("General.Terminal", 0)
            gmsh.option.setNumber("General.Verbosity", 0)
            gmsh.option.setNumber("General.NumThreads", 1)
            gmsh.option.setNumber("Mesh.MaxNumThreads2D", 1)
            gmsh.model.add("fieldserve-cell")
            yield
        finally:
            if owner:
                gmsh.finalize()
            else:
                gmsh.model.remove()
                if previous:
                    gmsh.model.setCurrent(previous)


def mesh_cell(void: F64 | None, params: MeshParams, box: Box = UNIT_CELL) -> CellMesh:
    """Mesh `box` minus the closed polygon `void` ((k, 2), first point not repeated).

    With `void=None` the box is meshed uniformly with h_max."""
    (x0, x1), (y0, y1) = box
    with _gmsh_session():
        geo = gmsh.model.geo
        corners = [geo.addPoint(x, y, 0.0) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        outer = [geo.addLine(corners[i], corners[(i + 1) % 4]) for i in range(4)]
        loops = [geo.addCurveLoop(outer)]
        hole: list[int] = []
        if void is not None:
            pts = [geo.addPoint(float(x), float(y), 0.0) for x, y in void]
            hole = [geo.addLine(pts[i], pts[(i + 1) % len(pts)]) for i in range(len(pts))]
            loops.append(geo.addCurveLoop(hole))
        geo.addPlaneSurface(loops)
        geo.synchronize()
        # sizes come from the field alone, not from point sizes or curvature
        gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
        gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
        gmsh.option.setNumber("Mesh.Algorithm", 6)  # Frontal-Delaunay: well-shaped triangles
        if hole:
            dist = gmsh.model.mesh.field.add("Distance")
            gmsh.model.mesh.field.setNumbers(dist, "CurvesList", hole)
            gmsh.model.mesh.field.setNumber(dist, "Sampling", 8)
            thr = gmsh.model.mesh.field.add("Threshold")
            gmsh.model.mesh.field.setNumber(thr, "InField", dist)
            gmsh.model.mesh.field.setNumber(thr, "SizeMin", params.h_min)
            gmsh.model.mesh.field.setNumber(thr, "SizeMax", params.h_max)
            gmsh.model.mesh.field.setNumber(thr, "DistMin", params.grade_start)
            gmsh.model.mesh.field.setNumber(thr, "DistMax", params.grade_end)
            gmsh.model.mesh.field.setAsBackgroundMesh(thr)
        else:
            gmsh.option.setNumber("Mesh.MeshSizeMax", params.h_max)
            gmsh.option.setNumber("Mesh.MeshSizeMin", params.h_max)
        gmsh.model.mesh.generate(2)
        tags, coords, _ = gmsh.model.mesh.getNodes()
        _, elem_nodes = gmsh.model.mesh.getElementsByType(2)  # 3-node triangles
    xy = coords.reshape(-1, 3)[:, :2]
    # gmsh tags need not be 0..n-1, and nodes on no triangle (none here) are dropped
    index = np.full(int(tags.max()) + 1, -1, dtype=np.int64)
    index[tags.astype(np.int64)] = np.arange(len(tags))
    tri = index[elem_nodes.astype(np.int64).reshape(-1, 3)]
    used = np.unique(tri)
    remap = np.full(len(xy), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    tri, xy = remap[tri], xy[used]
    # counter-clockwise triangles (positive Jacobians in the assembly)
    d1, d2 = xy[tri[:, 1]] - xy[tri[:, 0]], xy[tri[:, 2]] - xy[tri[:, 0]]
    flip = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0] < 0
    tri[flip] = tri[flip][:, [0, 2, 1]]
    return CellMesh(np.ascontiguousarray(xy, dtype=np.float64), tri)
