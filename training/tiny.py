"""The tiny acoustic run: every stage real (FDTD, training, export), small enough for seconds
on two cores. The tests, the chaos suite and the deployment test train it; numpy-free and
torch-free so that any of them can import it."""

from __future__ import annotations

from typing import Any


def tiny_acoustic_config(dim: int, name: str | None = None, steps: int = 20) -> dict[str, Any]:
    """A 2-D L-shaped room or a 3-D room with a pillar; `name` names the dataset (and so the
    model), `steps` the training steps."""
    if dim == 2:
        room: dict[str, Any] = {"shape": "l_shape", "size": [1.2, 1.0], "cut": [0.4, 0.4]}
        region = {"lo": [0.3, 0.3], "hi": [0.9, 0.7]}
    else:
        # A pillar in one corner, so both dimensions have a solid inside the room.
        room = {
            "shape": "obstacle",
            "size": [1.0, 0.9, 0.8],
            "lo": [0.8, 0.0, 0.0],
            "hi": [1.0, 0.2, 0.8],
        }
        region = {"lo": [0.35, 0.35, 0.35], "hi": [0.65, 0.55, 0.45]}
    return {
        "family": "deeponet",
        "dataset": {
            "name": name or f"tiny-acoustics-{dim}d",
            "room": room,
            "physics": {"fmax": 500.0, "absorption": 0.2},
            "solver": {"points_per_wavelength": 8, "dtype": "float32", "batch": 8},
            "output": {"t_max": 0.006, "dt": 0.0005, "receiver_spacing": 0.1},
            "sources": {
                "region": region,
                "wall_margin": 0.25,
                "train_spacing": 0.5,
                "n_val": 2,
                "n_test": 3,
                "seed": 1,
            },
        },
        "model": {
            "branch_width": 16,
            "branch_depth": 2,
            "trunk_width": 16,
            "trunk_depth": 2,
            "n_basis": 8,
        },
        "train": {
            "steps": steps,
            "batch_sources": 4,
            "batch_points": 64,
            "val_every": max(1, steps // 2),
            "checkpoint_every": max(1, steps // 2),
        },
    }
