"""Closed boundary loops out of meshes, for the importers (numpy only).

- `merge_points` merges nodes at the same coordinates (a mesh written in patches repeats the
  nodes along a seam; a surface may repeat its trailing-edge point), so edges join up.
- `boundary_edges` finds the edges of 2-D cells that belong to exactly one cell.
- `chain_loops` walks edges (boundary edges, or a surface's line cells) into closed loops of
  node indices; a node on more than two edges or an open chain is an error, reported as such.
- `order_by_angle` orders an unconnected surface's points about their centroid, the fallback
  when a surface comes without line cells; `is_simple` checks the result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class LoopError(ValueError):
    """Edges that do not form closed, non-branching loops; the message says where."""


def merge_points(points: NDArray[np.floating], tol: float = 0.0) -> tuple[F64, I64, I64]:
    """Unique points (U, 2), the input index of each (its first occurrence: take values at
    merged nodes from there) and, for every input point, the index of its unique point.

    With tol > 0, coordinates are first rounded to multiples of tol (close points merge).
    """
    pts = np.asarray(points, dtype=np.float64)
    key = np.round(pts / tol) * tol if tol > 0 else pts
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    first = first.astype(np.int64)
    return pts[first], first, inverse.reshape(-1).astype(np.int64)


def cell_edges(cells: Sequence[NDArray[np.integer]]) -> I64:
    """Every edge (K, 2) of polygon cells, each given as an (n, k) array of corner indices in
    order around the cell (triangles k = 3, quads k = 4)."""
    parts = []
    for block in cells:
        arr = np.asarray(block, dtype=np.int64)
        if arr.size == 0:
            continue
        parts.append(np.stack([arr, np.roll(arr, -1, axis=1)], axis=-1).reshape(-1, 2))
    return np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)


def boundary_edges(cells: Sequence[NDArray[np.integer]]) -> I64:
    """The edges (K, 2) that belong to exactly one cell: the boundary of the meshed region."""
    edges = cell_edges(cells)
    if len(edges) == 0:
        return edges
    undirected = np.sort(edges, axis=1)
    _, index, counts = np.unique(undirected, axis=0, return_index=True, return_counts=True)
    return edges[np.sort(index[counts == 1])]


def chain_loops(edges: NDArray[np.integer]) -> list[I64]:
    """Closed loops (each an array of node indices, first not repeated) made of the edges.

    Raises LoopError when a node lies on other than two edges (a branching or touching
    boundary) or when a chain does not close.
    """
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    edges = edges[edges[:, 0] != edges[:, 1]]  # degenerate edges (a merged node) carry nothing
    edges = np.unique(np.sort(edges, axis=1), axis=0)  # an edge listed twice is one edge
    neighbours: dict[int, list[int]] = defaultdict(list)
    for a, b in edges.tolist():
        neighbours[a].append(b)
        neighbours[b].append(a)
    odd = [n for n, nb in neighbours.items() if len(nb) != 2]
    if odd:
        ends = [n for n in odd if len(neighbours[n]) == 1]
        if ends:
            raise LoopError(
                f"the boundary does not close: {len(ends)} chain ends (first at node {ends[0]})"
            )
        raise LoopError(
            f"the boundary branches: node {odd[0]} lies on {len(neighbours[odd[0]])} edges"
        )
    loops: list[I64] = []
    seen: set[int] = set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop = [start]
        seen.add(start)
        prev, cur = start, neighbours[start][0]
        while cur != start:
            loop.append(cur)
            seen.add(cur)
            a, b = neighbours[cur]
            prev, cur = cur, (b if a == prev else a)
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def line_cell_edges(flat: NDArray[np.integer]) -> I64:
    """Edges (K, 2) of VTK line/polyline cells in the flat layout [n, i0, .., i(n-1), n, ...]."""
    flat = np.asarray(flat, dtype=np.int64).reshape(-1)
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(flat):
        n = int(flat[i])
        ids = flat[i + 1 : i + 1 + n].tolist()
        out.extend(pairwise(ids))
        i += n + 1
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def signed_area(loop: F64) -> float:
    """Shoelace area of a polygon (V, 2), open or closed: positive when counter-clockwise."""
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def closed_ccw(loop: F64) -> F64:
    """The polygon counter-clockwise, with its first vertex repeated at the end."""
    loop = np.asarray(loop, dtype=np.float64)
    if len(loop) > 1 and np.array_equal(loop[0], loop[-1]):
        loop = loop[:-1]
    if signed_area(loop) < 0:
        loop = loop[::-1]
    return np.concatenate([loop, loop[:1]], axis=0)


def order_by_angle(points: F64) -> F64:
    """Points (V, 2) of one surface ordered by angle about their centroid (a fallback: right for
    a star-shaped surface; check the result with `is_simple`)."""
    pts = np.asarray(points, dtype=np.float64)
    centre = pts.mean(axis=0)
    angle = np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0])
    # Ties (points in line with the centroid, as near a thin trailing edge): nearer first on
    # one side of the tie is arbitrary, so break them by distance for determinism.
    dist = np.hypot(pts[:, 0] - centre[0], pts[:, 1] - centre[1])
    return pts[np.lexsort((dist, angle))]


def is_simple(loop: F64) -> bool:
    """Whether a closed polygon (V, 2; open or closed) has no two non-adjacent edges that meet."""
    pts = np.asarray(loop, dtype=np.float64)
    if len(pts) > 1 and np.array_equal(pts[0], pts[-1]):
        pts = pts[:-1]
    n = len(pts)
    if n < 3:
        return False
    a, b = pts, np.roll(pts, -1, axis=0)

    def orient(p: F64, q: F64, r: F64) -> F64:
        return np.sign(
            (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1])
            - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])
        )

    step = max(1, (1 << 20) // n)
    for s in range(0, n, step):
        i = np.arange(s, min(n, s + step))
        p, q = a[i][:, None], b[i][:, None]  # (m, 1, 2)
        r, t = a[None], b[None]  # (1, n, 2)
        d1, d2 = orient(p, q, r), orient(p, q, t)
        d3, d4 = orient(r, t, p), orient(r, t, q)
        cross = (d1 * d2 < 0) & (d3 * d4 < 0)
        j = np.arange(n)[None]
        adjacent = (j == i[:, None]) | (j == (i[:, None] + 1) % n) | (j == (i[:, None] - 1) % n)
        if (cross & ~adjacent).any():
            return False
    return True


def is_bounding_rectangle(loop: F64, rel_tol: float = 1e-9) -> bool:
    """Whether a loop (V, 2) runs along its own bounding rectangle and encloses all of it."""
    pts = np.asarray(loop, dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = float(np.max(hi - lo))
    tol = rel_tol * max(size, 1e-300)
    on_side = (
        (np.abs(pts[:, 0] - lo[0]) <= tol)
        | (np.abs(pts[:, 0] - hi[0]) <= tol)
        | (np.abs(pts[:, 1] - lo[1]) <= tol)
        | (np.abs(pts[:, 1] - hi[1]) <= tol)
    )
    rect_area = float(np.prod(hi - lo))
    return bool(on_side.all()) and abs(abs(signed_area(pts)) - rect_area) <= 1e-6 * rect_area
