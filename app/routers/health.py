"""Liveness and readiness probes (Kubernetes-style)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import CacheDep, RepositoryDep, SnapshotDep
from app.schemas import CacheHealth, Liveness, Readiness
from app.views import loaded_versions, refused_versions

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> Liveness:
    return Liveness()


@router.get("/ready", responses={503: {"model": Readiness, "description": "No model is served."}})
async def ready(
    snapshot: SnapshotDep, repository: RepositoryDep, cache: CacheDep, response: Response
) -> Readiness:
    """Ready when a model is loaded. A Redis that is down does not make the service unready
    (it answers by computing); it shows here as cache.status "down"."""
    models = loaded_versions(snapshot)
    if not models:
        response.status_code = 503
    await cache.backend.check()  # a probe, unless Redis is in its back-off
    status = cache.status()
    return Readiness(
        status="ready" if models else "unavailable",
        models=models,
        execution_provider=snapshot.execution_provider,
        device=repository.runtime.device,
        available_providers=list(repository.runtime.available),
        cache=CacheHealth(
            backend=status.backend, status="up" if status.up else "down", details=status.detail
        ),
        refused=refused_versions(snapshot),
        loaded_at=snapshot.loaded_at.isoformat(timespec="seconds"),
    )
