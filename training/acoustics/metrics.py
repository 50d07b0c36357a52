"""How an acoustic field prediction is made and scored: shared by training and evaluation.

Training validates with the same prediction and error as `evaluate` reports, so both import
them from here and neither module imports the other for them.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from scipy import stats

from training.acoustics.dataset import AcousticSplit


class FieldModel(Protocol):
    def coefficients(self, sources: np.ndarray) -> np.ndarray: ...  # (S, dim) -> (S, p+1)
    def basis(self, points: np.ndarray) -> np.ndarray: ...  # (N, dim+1) -> (N, p+1)


def space_time_grid(receivers: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Every (receiver, time) pair, time-major: (T * P, dim + 1), matching pressure (S, T, P)."""
    t = np.repeat(times, len(receivers))[:, None]  # (T*P, 1)
    x = np.tile(receivers, (len(times), 1))  # (T*P, dim)
    return np.concatenate([x, t], axis=1)


def predict(model: FieldModel, split: AcousticSplit, chunk: int = 65536) -> np.ndarray:
    pts = space_time_grid(split.receivers, split.times)
    coeff = model.coefficients(split.sources)  # (S, p+1)
    out = np.empty((len(split.sources), len(pts)), dtype=np.float32)
    for start in range(0, len(pts), chunk):
        out[:, start : start + chunk] = coeff @ model.basis(pts[start : start + chunk]).T
    return out.reshape(len(split.sources), len(split.times), len(split.receivers))  # (S, T, P)


def rel_l2_per_source(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(S, ...), (S, ...) -> (S,): each source's relative L2 error over its whole field."""
    axes = tuple(range(1, ref.ndim))
    err = np.sqrt(((pred.astype(np.float64) - ref) ** 2).sum(axis=axes))
    return err / np.sqrt((ref.astype(np.float64) ** 2).sum(axis=axes))


def rmse_norm(pred: np.ndarray, ref: np.ndarray) -> float:
    """Each receiver's impulse response error (RMSE over time) over its reference peak, as the
    paper reports it; averaged over receivers and sources."""
    diff = pred.astype(np.float64) - ref  # (S, T, P)
    rmse = np.sqrt((diff**2).mean(axis=1))  # (S, P)
    peak = np.abs(ref).max(axis=1)  # (S, P)
    return float(np.mean(rmse / peak))


def mean_ci95(values: np.ndarray) -> list[float] | None:
    """Student-t 95% interval of the mean over test sources, [lo, hi].

    A t-interval rather than a bootstrap: it is deterministic (the manifest must equal what
    `evaluate` prints) and, with the few test sources a sweep has (3 in the tests, 24 shipped),
    a percentile bootstrap is too narrow. The errors are non-negative, so lo is clipped at 0.
    None for a single source, which has no spread to estimate (and JSON has no NaN).
    """
    n = len(values)
    if n < 2:
        return None
    mean = float(values.mean())
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return [max(0.0, mean - half), mean + half]


def spread(per_source: np.ndarray, key: str) -> dict[str, Any]:
    """`key` (the mean over sources), `key`_ci95, `key`_p95 and `key`_max of one error."""
    return {
        key: float(per_source.mean()),
        f"{key}_ci95": mean_ci95(per_source),
        f"{key}_p95": float(np.percentile(per_source, 95)),
        f"{key}_max": float(per_source.max()),
    }
