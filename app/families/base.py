"""What a model family supplies to the service: a loader and a predictor.

The predict routes know nothing about acoustics or airfoils: they look up the version, hand
the decoded body to its predictor and serialise what comes back. A new family is a module
with a `load(manifest, graphs) -> Predictor` registered in app/families/__init__.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from app.manifest import Manifest
from app.runtime import Graph

CacheState = Literal["hit", "partial", "miss"]


@dataclass(frozen=True)
class Limits:
    """Per-request limits from the settings, passed in so predictors stay settings-free."""

    max_points: int


@dataclass(frozen=True)
class Notice:
    """A request that is answered but may be answered badly (out of the trained domain...)."""

    field: str
    code: str
    message: str


@dataclass(frozen=True)
class Prediction:
    """Family-specific response fields (numpy arrays stay numpy) plus what every answer has."""

    fields: Mapping[str, Any]
    warnings: tuple[Notice, ...] = ()
    cache: CacheState = "miss"


class Predictor(Protocol):
    async def predict(self, payload: Any, limits: Limits) -> Prediction:
        """Validate the decoded JSON body, run the graphs off the event loop, compose.

        Raises app.errors.FieldserveError subclasses for anything wrong with the request.
        """
        ...


FamilyLoader = Callable[[Manifest, Mapping[str, Graph]], Predictor]


@dataclass(frozen=True)
class Family:
    name: str
    tasks: Mapping[str, FamilyLoader] = field(default_factory=dict)
