"""The one error measure every airfoil model and baseline is scored with.

rel_l2 per field = ||pred - ref||_2 / ||ref||_2 over one sample's points, averaged over samples.
v and Cp can be small on some samples (v near zero at small angles); the definition is the same
for them, so their numbers read higher than u's and are compared model against model, not
against u.
"""

from __future__ import annotations

import numpy as np

FIELDS = ("u", "v", "cp")


def rel_l2_per_sample(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(S, N, F), (S, N, F) -> (S, F): each sample's relative L2 error per field."""
    if pred.shape != ref.shape or ref.ndim != 3:
        raise ValueError(f"pred {pred.shape} and ref {ref.shape} must both be (S, N, F)")
    ref64 = ref.astype(np.float64)
    err = np.sqrt(((pred.astype(np.float64) - ref64) ** 2).sum(axis=1))  # (S, F)
    norm = np.sqrt((ref64**2).sum(axis=1))  # (S, F)
    return err / np.maximum(norm, np.finfo(np.float64).tiny)


def rel_l2_fields(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """{"u": ..., "v": ..., "cp": ...}: per-sample relative L2, averaged over samples."""
    per_sample = rel_l2_per_sample(pred, ref)  # (S, 3)
    if per_sample.shape[1] != len(FIELDS):
        raise ValueError(f"expected {len(FIELDS)} fields {FIELDS}, got {per_sample.shape[1]}")
    return {name: float(per_sample[:, i].mean()) for i, name in enumerate(FIELDS)}
