"""Latency samples -> medians and tails; a timing loop with a repetition and a time budget."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def summary(seconds: Sequence[float]) -> dict[str, Any]:
    """Milliseconds: p50 (median), p99, mean, min, max, and the sample count."""
    if not seconds:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {
        "n": int(ms.size),
        "p50_ms": round(float(np.median(ms)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "min_ms": round(float(ms.min()), 4),
        "max_ms": round(float(ms.max()), 4),
    }


def measure(
    fn: Callable[[int], object], reps: int, warmup: int = 3, max_seconds: float | None = None
) -> list[float]:
    """Call fn(k) for k = 0, 1, ...: the first `warmup` calls untimed, then up to `reps`
    timed ones (fewer once the timed calls pass max_seconds, but at least 3). Every call gets
    its own k, so a caller can hand each one fresh inputs. Returns seconds per timed call."""
    for k in range(warmup):
        fn(k)
    out: list[float] = []
    begin = time.perf_counter()
    for i in range(reps):
        t0 = time.perf_counter()
        fn(warmup + i)
        out.append(time.perf_counter() - t0)
        if max_seconds is not None and len(out) >= 3 and time.perf_counter() - begin > max_seconds:
            break
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)
