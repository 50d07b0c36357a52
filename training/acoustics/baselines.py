"""Answers that need no training: the stored training fields, looked up or interpolated.

A surrogate earns its place only if it beats these. Each baseline is linear in the stored
fields, so it is computed once as a weight matrix W (Q, S) over the S training sources for the Q
query sources, and the prediction is W @ fields. Interpolating the identity matrix gives W at the
cost of S values per source instead of the T * P field values (the 3-D shipped fields are
~200 MB), and the fields are then mixed in bounded column chunks.

- nearest: the field of the nearest training source.
- linear: multilinear interpolation on the training lattice where all 2^dim corners of the
  query's cell are training sources; elsewhere (the lattice is clipped by the wall margin)
  barycentric interpolation on the Delaunay triangulation of the sources; outside their hull,
  nearest. Multilinear first because it is the lattice's own interpolant: Delaunay splits each
  square cell of a regular lattice arbitrarily (its corners are cospherical), and multilinear
  measured a little lower error (2-4% relative on analytic pulse fields in 2-D and 3-D; 0.0206
  against 0.0216 rel L2 on the first 15 ms of the shipped 2-D sweep).
- spline: thin-plate spline (with a linear polynomial term) over the nearest `neighbors`
  training sources.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
from scipy.interpolate import LinearNDInterpolator, RBFInterpolator
from scipy.spatial import QhullError, cKDTree

# A 5x5 / 4x4x4 patch of the lattice around each query. On the first 15 ms of the shipped 2-D
# sweep 25 neighbours gave 0.0030 rel L2, all 147 sources 0.0025, 9 neighbours 0.0060.
SPLINE_NEIGHBORS = {2: 25, 3: 64}
COORD_DECIMALS = 9  # lattice coordinates equal to 1 nm are the same lattice line


def nearest_weights(train_sources: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(S, dim), (Q, dim) -> (Q, S): one-hot rows at the nearest training source."""
    _, idx = cKDTree(train_sources).query(query)
    w = np.zeros((len(query), len(train_sources)))
    w[np.arange(len(query)), idx] = 1.0
    return w


def delaunay_weights(train_sources: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(S, dim), (Q, dim) -> (Q, S): barycentric weights in the Delaunay simplex holding each
    query; NaN rows outside the hull, or everywhere when the sources span no full-dimensional
    simplex (fewer than dim + 1, or all on one plane)."""
    n, dim = train_sources.shape
    if n < dim + 1:
        return np.full((len(query), n), np.nan)
    try:
        interp = LinearNDInterpolator(train_sources, np.eye(n))
    except QhullError:
        return np.full((len(query), n), np.nan)
    return np.asarray(interp(query), dtype=np.float64).reshape(len(query), n)  # (Q, S)


def multilinear_weights(train_sources: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(S, dim), (Q, dim) -> (Q, S): tensor-product linear weights in the lattice cell holding
    each query; NaN rows where a corner of that cell is missing or the query is off the lattice.

    The lattice lines are the distinct coordinates on each axis, so any rectilinear lattice with
    points removed (the wall margin clips the training lattice) is handled.
    """
    n, dim = train_sources.shape
    rounded = np.round(train_sources, COORD_DECIMALS)
    axes = [np.unique(rounded[:, d]) for d in range(dim)]
    index_of = {
        tuple(int(np.searchsorted(axes[d], p[d])) for d in range(dim)): i
        for i, p in enumerate(rounded)
    }
    w = np.full((len(query), n), np.nan)
    for q, x in enumerate(query):
        cell, frac = [], []
        for d in range(dim):
            a = axes[d]
            if len(a) < 2 or not a[0] <= x[d] <= a[-1]:
                break
            i = min(int(np.searchsorted(a, x[d], side="right")) - 1, len(a) - 2)
            cell.append(i)
            frac.append((x[d] - a[i]) / (a[i + 1] - a[i]))
        else:
            row = np.zeros(n)
            for corner in itertools.product((0, 1), repeat=dim):
                src = index_of.get(tuple(i + c for i, c in zip(cell, corner, strict=True)))
                if src is None:
                    break
                row[src] += np.prod(
                    [f if c else 1.0 - f for f, c in zip(frac, corner, strict=True)]
                )
            else:
                w[q] = row
    return w


def linear_weights(train_sources: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(S, dim), (Q, dim) -> (Q, S): multilinear where the cell is complete, else Delaunay
    barycentric, else nearest: every row is filled."""
    w = multilinear_weights(train_sources, query)
    for fallback in (delaunay_weights, nearest_weights):
        missing = np.isnan(w).any(axis=1)
        if not missing.any():
            break
        w[missing] = fallback(train_sources, query[missing])
    return w


def spline_weights(
    train_sources: np.ndarray, query: np.ndarray, neighbors: int | None = None
) -> np.ndarray:
    """(S, dim), (Q, dim) -> (Q, S): thin-plate spline weights from the `neighbors` nearest
    training sources (default SPLINE_NEIGHBORS for the dimension, all of them if fewer).

    The linear polynomial term needs dim + 1 sources not on one plane; a local patch of a
    lattice always has them, a degenerate sweep (one lattice layer) does not and falls back to
    linear_weights, which itself ends at nearest.
    """
    n, dim = train_sources.shape
    k = min(n, neighbors or SPLINE_NEIGHBORS.get(dim, 4**dim))
    if k < dim + 1:
        return linear_weights(train_sources, query)
    try:
        interp = RBFInterpolator(
            train_sources, np.eye(n), neighbors=k, kernel="thin_plate_spline", degree=1
        )
        return np.asarray(interp(query), dtype=np.float64).reshape(len(query), n)  # (Q, S)
    except (np.linalg.LinAlgError, ValueError):
        return linear_weights(train_sources, query)


def mix_fields(weights: np.ndarray, fields: np.ndarray, chunk_bytes: int = 1 << 25) -> np.ndarray:
    """(Q, S) weights, (S, ...) fields -> (Q, ...) float32, summed in float64 over column
    chunks of about `chunk_bytes` so a 200 MB field array is never copied whole to float64."""
    flat = fields.reshape(len(fields), -1)  # (S, T*P)
    out = np.empty((len(weights), flat.shape[1]), dtype=np.float32)
    step = max(1, chunk_bytes // (8 * len(fields)))
    for start in range(0, flat.shape[1], step):
        out[:, start : start + step] = weights @ flat[:, start : start + step].astype(np.float64)
    return out.reshape(len(weights), *fields.shape[1:])  # (Q, T, P)


BASELINES = {"nearest": nearest_weights, "linear": linear_weights, "spline": spline_weights}


def baseline_predictions(
    train_sources: np.ndarray, train_fields: np.ndarray, query: np.ndarray
) -> Iterator[tuple[str, np.ndarray]]:
    """("nearest" | "linear" | "spline", (Q, ...) predicted fields at the query sources), one
    baseline at a time so only one prediction (40 MB for the 3-D test split) is held."""
    for name, weights in BASELINES.items():
        yield name, mix_fields(weights(train_sources, query), train_fields)
