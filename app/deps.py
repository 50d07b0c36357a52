"""Route dependencies: what the lifespan built, handed to routes through FastAPI's Depends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.cache import Cache, FactorCache
from app.families import Limits, PredictContext
from app.metrics import Metrics
from app.repository import ModelRepository, ModelVersion, Snapshot
from app.settings import Settings


async def get_repository(request: Request) -> ModelRepository:
    repository: ModelRepository = request.app.state.repository
    return repository


async def get_snapshot(repository: Annotated[ModelRepository, Depends(get_repository)]) -> Snapshot:
    # Taken once per request: a reload during the request does not change what it sees.
    return repository.snapshot


async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


@dataclass(frozen=True)
class Serving:
    """What a prediction route needs, resolved as one dependency: FastAPI spends tens of
    microseconds on each dependency it solves, and these routes are the hot path."""

    snapshot: Snapshot
    settings: Settings
    cache: Cache

    def limits(self, binary: bool = False) -> Limits:
        s = self.settings
        return Limits(s.max_points, s.max_response_bytes, s.max_work_bytes, binary)

    def context(self, model: ModelVersion, binary: bool = False) -> PredictContext:
        """What a predictor gets for one request: the limits (for an answer sent as raw arrays
        when `binary`, else JSON) and this version's factor cache."""
        factors = FactorCache(self.cache, model.name, str(model.version))
        return PredictContext(self.limits(binary), factors)


async def get_serving(request: Request) -> Serving:
    state = request.app.state
    return Serving(state.repository.snapshot, state.settings, state.cache)


RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
SnapshotDep = Annotated[Snapshot, Depends(get_snapshot)]
CacheDep = Annotated[Cache, Depends(get_cache)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ServingDep = Annotated[Serving, Depends(get_serving)]
