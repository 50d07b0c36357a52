"""Measured modes and the interleaved runner.

The machines these run on are shared and noisy, and the targets are ratios: so the modes of
one case (HTTP, raw onnxruntime, torch, ...) are measured in interleaved rounds, a block of
calls of each in turn, and every mode sees the same background load."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.stats import summary


def _nothing() -> None:
    return None


@dataclass
class Mode:
    """One thing to time: call(k) is the k-th call (each call may take fresh inputs)."""

    key: str
    label: str
    call: Callable[[int], object]
    before_block: Callable[[], None] = _nothing
    after_block: Callable[[], None] = _nothing
    # Extra fields for the row, computed after the last call.
    extra: Callable[[], dict[str, Any]] = dict
    samples: list[float] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {"label": self.label, **summary(self.samples), **self.extra()}


def interleave(
    modes: Sequence[Mode],
    reps: int,
    warmup: int,
    block: int,
    budget_s: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Warm every mode up (`warmup` untimed calls each), then time rounds of `block` calls of
    each mode in turn until each has `reps` samples, or until `budget_s` has passed and each
    has at least 3. Returns the rows by key."""
    for m in modes:
        for k in range(warmup):
            m.call(k)
    begin = time.perf_counter()
    done = False
    while not done:
        for m in modes:
            todo = min(block, reps - len(m.samples))
            if todo <= 0:
                continue
            m.before_block()
            for _ in range(todo):
                k = warmup + len(m.samples)
                t0 = time.perf_counter()
                m.call(k)
                m.samples.append(time.perf_counter() - t0)
            m.after_block()
        fewest = min(len(m.samples) for m in modes)
        done = fewest >= reps or (time.perf_counter() - begin > budget_s and fewest >= 3)
        if progress is not None:
            progress(f"{fewest}/{reps}")
    return {m.key: m.row() for m in modes}
