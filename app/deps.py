"""Route dependencies: what the lifespan built, handed to routes through FastAPI's Depends."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.cache import Cache, FactorCache
from app.families import Limits, PredictContext
from app.metrics import Metrics
from app.repository import ModelRepository, ModelVersion, Snapshot
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_repository(request: Request) -> ModelRepository:
    repository: ModelRepository = request.app.state.repository
    return repository


async def get_snapshot(repository: Annotated[ModelRepository, Depends(get_repository)]) -> Snapshot:
    # Taken once per request: a reload during the request does not change what it sees.
    return repository.snapshot


async def get_limits(settings: Annotated[Settings, Depends(get_settings)]) -> Limits:
    return Limits(max_points=settings.max_points)


async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
SnapshotDep = Annotated[Snapshot, Depends(get_snapshot)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
CacheDep = Annotated[Cache, Depends(get_cache)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def predict_context(model: ModelVersion, limits: Limits, cache: Cache) -> PredictContext:
    """What a predictor gets for one request: the limits and this version's factor cache."""
    return PredictContext(limits, FactorCache(cache, model.name, str(model.version)))
