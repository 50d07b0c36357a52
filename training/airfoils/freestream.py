"""The free stream: u = V cos(alpha), v = V sin(alpha), Cp = 0 everywhere. What a model that
has learnt nothing about the body predicts; every number below it is geometry learnt."""

from __future__ import annotations

import numpy as np

from training.enf2enf.metrics import rel_l2_fields
from training.geometry_data.format import Split


def freestream_prediction(conditions: np.ndarray, n_points: int) -> np.ndarray:
    """(S, 2) [aoa_deg, speed] -> (S, n_points, 3) [u, v, cp] of the undisturbed flow."""
    cond = np.asarray(conditions, dtype=np.float64)
    alpha = np.deg2rad(cond[:, 0])
    speed = cond[:, 1]
    per_sample = np.stack([speed * np.cos(alpha), speed * np.sin(alpha), 0.0 * speed], axis=1)
    return np.repeat(per_sample[:, None, :], n_points, axis=1).astype(np.float32)  # (S, N, 3)


def freestream_scores(split: Split) -> dict[str, float]:
    pred = freestream_prediction(split.conditions, split.points.shape[1])
    return rel_l2_fields(pred, split.fields, split.schema.field_names, split.n_points)
