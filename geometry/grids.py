"""Regular point sets: receiver grids over a box, source lattices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from geometry.rooms import Box


def grid_points(
    lo: Sequence[float], hi: Sequence[float], counts: Sequence[int]
) -> NDArray[np.float64]:
    """Tensor-product grid with `counts[i]` points from lo[i] to hi[i] inclusive, C order.

    Returns (prod(counts), dim); the first axis varies slowest, so reshaping the result to
    (*counts, dim) gives the grid as an image.
    """
    if not (len(lo) == len(hi) == len(counts)):
        raise ValueError("lo, hi and counts must have the same length")
    if any(int(n) < 1 for n in counts):
        raise ValueError(f"grid counts must be >= 1, got {list(counts)}")
    axes = [
        np.linspace(a, b, int(n)) if n > 1 else np.array([(a + b) / 2])
        for a, b, n in zip(lo, hi, counts, strict=True)
    ]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=-1)  # (prod(counts), dim)


def lattice_in_box(box: Box, spacing: float) -> NDArray[np.float64]:
    """Points spaced about `spacing` apart filling `box`, centred so the margins are equal."""
    counts = [
        max(1, int(np.floor((h - lo) / spacing + 1e-9)) + 1)
        for lo, h in zip(box.lo, box.hi, strict=True)
    ]
    lo = [
        (a + b) / 2 - (n - 1) * spacing / 2 for a, b, n in zip(box.lo, box.hi, counts, strict=True)
    ]
    hi = [a + (n - 1) * spacing for a, n in zip(lo, counts, strict=True)]
    return grid_points(lo, hi, counts)
