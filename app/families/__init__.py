"""Model families the service can serve, keyed by the manifest's `family` and `task`."""

from __future__ import annotations

from collections.abc import Mapping

from app.errors import ManifestError
from app.families.base import (
    Cost,
    Family,
    GeometryEncoder,
    Inference,
    Limits,
    Notice,
    PredictContext,
    Prediction,
    Predictor,
    Signature,
)
from app.families.deeponet import AcousticDeepONet
from app.families.enf2enf import Enf2Enf
from app.manifest import Manifest
from app.runtime import Graph

FAMILIES: Mapping[str, Family] = {
    "deeponet": Family("deeponet", {"acoustics": AcousticDeepONet.load}),
    "enf2enf": Family("enf2enf", {"airfoil-flow": Enf2Enf.load, "geometry-fields": Enf2Enf.load}),
}


def build_predictor(manifest: Manifest, graphs: Mapping[str, Graph]) -> Predictor:
    family = FAMILIES.get(manifest.family)
    if family is None:
        raise ManifestError(
            f"unknown model family {manifest.family!r} (served: {sorted(FAMILIES)})"
        )
    loader = family.tasks.get(manifest.task)
    if loader is None:
        raise ManifestError(
            f"family {family.name!r} has no task {manifest.task!r} (served: {sorted(family.tasks)})"
        )
    return loader(manifest, graphs)


__all__ = [
    "FAMILIES",
    "Cost",
    "Family",
    "GeometryEncoder",
    "Inference",
    "Limits",
    "Notice",
    "PredictContext",
    "Prediction",
    "Predictor",
    "Signature",
    "build_predictor",
]
