"""The one error measure every geometry model and baseline is scored with.

rel_l2 per field = ||pred - ref||_2 / ||ref||_2 over one sample's points, averaged over samples
(and its spread over samples: median, 90th percentile, worst). A field that is small on some
samples (v near zero at small angles of attack) reads higher than the others; it is compared
model against model, not field against field.

Samples may have different point counts (each its own mesh): arrays are padded to the largest
and `counts` says how many points of each sample are real.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def valid_mask(shape: tuple[int, ...], counts: NDArray[np.integer] | None) -> NDArray[np.bool_]:
    """(S, N) True for the real points of each sample."""
    s, n = shape[:2]
    if counts is None:
        return np.ones((s, n), dtype=bool)
    return np.arange(n)[None, :] < np.asarray(counts)[:, None]


def rel_l2_per_sample(
    pred: np.ndarray,
    ref: np.ndarray,
    counts: NDArray[np.integer] | None = None,
    keep: NDArray[np.bool_] | None = None,
) -> np.ndarray:
    """(S, N, F), (S, N, F) -> (S, F): each sample's relative L2 error per field over its real
    points (and only those where `keep` (S, N) is True, when given)."""
    if pred.shape != ref.shape or ref.ndim != 3:
        raise ValueError(f"pred {pred.shape} and ref {ref.shape} must both be (S, N, F)")
    mask = valid_mask(ref.shape, counts)
    if keep is not None:
        mask = mask & keep
    ref64 = np.where(mask[..., None], ref.astype(np.float64), 0.0)
    diff = np.where(mask[..., None], pred.astype(np.float64) - ref64, 0.0)
    err = np.sqrt((diff**2).sum(axis=1))  # (S, F)
    norm = np.sqrt((ref64**2).sum(axis=1))  # (S, F)
    return err / np.maximum(norm, np.finfo(np.float64).tiny)


def rel_l2_fields(
    pred: np.ndarray,
    ref: np.ndarray,
    names: Sequence[str],
    counts: NDArray[np.integer] | None = None,
    keep: NDArray[np.bool_] | None = None,
) -> dict[str, float]:
    """{field: per-sample relative L2 averaged over samples}."""
    per_sample = rel_l2_per_sample(pred, ref, counts, keep)  # (S, F)
    if per_sample.shape[1] != len(names):
        raise ValueError(f"expected {len(names)} fields {tuple(names)}, got {per_sample.shape[1]}")
    return {name: float(per_sample[:, i].mean()) for i, name in enumerate(names)}


def spread(
    pred: np.ndarray,
    ref: np.ndarray,
    names: Sequence[str],
    counts: NDArray[np.integer] | None = None,
    keep: NDArray[np.bool_] | None = None,
) -> dict[str, dict[str, float]]:
    """{field: {median, p90, max}} of the per-sample relative L2 over the samples."""
    per_sample = rel_l2_per_sample(pred, ref, counts, keep)  # (S, F)
    return {
        name: {
            "median": float(np.median(per_sample[:, i])),
            "p90": float(np.percentile(per_sample[:, i], 90)),
            "max": float(per_sample[:, i].max()),
        }
        for i, name in enumerate(names)
    }
