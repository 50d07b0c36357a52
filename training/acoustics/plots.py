"""PNG figures written beside checkpoints: loss curves and predicted-vs-reference fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from training.acoustics.dataset import AcousticSplit


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(steps, [h["loss"] for h in history], label="train loss (normalised MSE)")
    ax.semilogy(steps, [h["val_rel_l2"] for h in history], label="validation relative L2")
    ax.set_xlabel("step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _image(split: AcousticSplit, values: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Scatter receiver values onto their grid (2-D) or the middle z-slice (3-D)."""
    rec = split.receivers
    axes = [np.unique(np.round(rec[:, a], 6)) for a in range(rec.shape[1])]
    idx = [np.searchsorted(axes[a], np.round(rec[:, a], 6)) for a in range(rec.shape[1])]
    grid = np.full([len(a) for a in axes], np.nan)
    grid[tuple(idx)] = values
    if rec.shape[1] == 3:
        grid = grid[:, :, len(axes[2]) // 2]
    extent = [axes[0][0], axes[0][-1], axes[1][0], axes[1][-1]]
    return grid.T, extent


def plot_field(
    split: AcousticSplit, pred: np.ndarray, source: int, path: Path, n_frames: int = 4
) -> None:
    ref = split.pressure[source]  # (T, P)
    frames = np.linspace(len(split.times) // 8, len(split.times) - 1, n_frames).astype(int)
    fig, axs = plt.subplots(3, n_frames, figsize=(3.2 * n_frames, 8.5), squeeze=False)
    for col, k in enumerate(frames):
        vmax = float(np.abs(ref[k]).max()) or 1.0
        rows: list[tuple[str, Any]] = [
            ("reference (FDTD)", ref[k]),
            ("DeepONet", pred[source, k]),
            ("error", pred[source, k] - ref[k]),
        ]
        for row, (label, vals) in enumerate(rows):
            img, extent = _image(split, vals)
            ax = axs[row, col]
            im = ax.imshow(img, origin="lower", extent=extent, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.plot(*split.sources[source][:2], "k*", ms=8)
            ax.set_title(f"{label}, t = {1e3 * split.times[k]:.1f} ms", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=axs[:, col], shrink=0.6, label="Pa")
    fig.savefig(path, dpi=90)
    plt.close(fig)
