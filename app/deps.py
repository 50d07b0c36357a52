"""Route dependencies: what the lifespan built, handed to routes through FastAPI's Depends."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.families import Limits
from app.repository import ModelRepository, Snapshot
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


SettingsDep = Annotated[Settings, Depends(get_settings)]
RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
SnapshotDep = Annotated[Snapshot, Depends(get_snapshot)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
