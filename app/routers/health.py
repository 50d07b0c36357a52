"""Liveness and readiness probes (Kubernetes-style)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.deps import CacheDep, RepositoryDep, SnapshotDep
from app.routers.responses import errors
from app.schemas import CacheHealth, Liveness, Readiness, ReadinessBrief
from app.views import loaded_versions, refused_versions

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", responses=errors())
async def live() -> Liveness:
    return Liveness()


@router.get(
    "/ready",
    responses={
        200: {"description": "A model is served. Without a valid key (keys set): status only."},
        503: {"model": Readiness | ReadinessBrief, "description": "No model is served."},
        **errors(),
    },
)
async def ready(
    snapshot: SnapshotDep,
    repository: RepositoryDep,
    cache: CacheDep,
    request: Request,
    response: Response,
) -> Readiness | ReadinessBrief:
    """Ready when a model is loaded. A Redis that is down does not make the service unready
    (it answers by computing); it shows here as cache.status "down". With API keys set, a
    caller without a valid key learns only the status: the details name hosts and paths."""
    models = loaded_versions(snapshot)
    if not models:
        response.status_code = 503
    if not getattr(request.state, "authenticated", True):
        return ReadinessBrief(status="ready" if models else "unavailable")
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
