"""Mirror augmentation: training samples entered twice, the second time reflected.

Only for a reflection the problem is symmetric under, boundary conditions and sample
distribution included: the elasticity cell (bottom clamped, uniform traction on top, voids drawn
from a distribution symmetric about the vertical centre line) maps onto itself under
x -> 1 - x, and its solution with it, with ux changing sign. A reflection keeps distances, so
a sample's signed distances stay as they are at the reflected points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from training.common.config import ConfigError
from training.geometry_data.format import Schema

Array = TypeVar("Array", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Mirror:
    axis: int  # 0: x -> 2 about - x; 1: y -> 2 about - y
    about: float
    field_sign: tuple[float, ...]  # (F,) -1 for a field that changes sign
    condition_sign: tuple[float, ...]  # (K,)

    @classmethod
    def of(cls, axis: int, about: float, negate: list[str], schema: Schema) -> Mirror | None:
        """The mirror of the train settings (None when off); `negate` names fields or
        conditions of the dataset."""
        if axis < 0:
            return None
        known = {*schema.field_names, *schema.condition_names}
        unknown = sorted(set(negate) - known)
        if unknown:
            raise ConfigError(
                f"train.mirror_negate names {unknown}, which are neither fields "
                f"{list(schema.field_names)} nor conditions {list(schema.condition_names)}"
            )

        def signs(names: tuple[str, ...]) -> tuple[float, ...]:
            return tuple(-1.0 if n in negate else 1.0 for n in names)

        return cls(axis, about, signs(schema.field_names), signs(schema.condition_names))

    def reflect(self, points: Array) -> Array:
        """(..., 2) points -> their reflections (a copy)."""
        out = points * 1  # a copy, numpy or torch
        out[..., self.axis] = 2.0 * self.about - points[..., self.axis]
        return out
