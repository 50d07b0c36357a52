"""Liveness and readiness probes (Kubernetes-style)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import RepositoryDep, SnapshotDep
from app.schemas import Liveness, Readiness
from app.views import loaded_versions, refused_versions

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> Liveness:
    return Liveness()


@router.get("/ready", responses={503: {"model": Readiness, "description": "No model is served."}})
async def ready(snapshot: SnapshotDep, repository: RepositoryDep, response: Response) -> Readiness:
    models = loaded_versions(snapshot)
    if not models:
        response.status_code = 503
    return Readiness(
        status="ready" if models else "unavailable",
        models=models,
        execution_provider=snapshot.execution_provider,
        device=repository.runtime.device,
        available_providers=list(repository.runtime.available),
        cache="none",  # no cache yet; the cache issue reports "memory" or "redis" here
        refused=refused_versions(snapshot),
        loaded_at=snapshot.loaded_at.isoformat(timespec="seconds"),
    )
