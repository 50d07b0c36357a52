"""Operator actions."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import RepositoryDep
from app.routers.responses import BODY, errors
from app.schemas import ReloadReport
from app.views import loaded_versions, refused_versions

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post(
    "/reload",
    responses=errors(
        (401, "Keys are configured and the request has no valid admin key."), 403, 503, *BODY
    ),
)
async def reload(repository: RepositoryDep) -> ReloadReport:
    """Rescan the model repository and swap the served set atomically."""
    before = {(m.name, m.version) for m in repository.snapshot}
    snapshot = await repository.reload()
    after = {(m.name, m.version) for m in snapshot}
    return ReloadReport(
        models=loaded_versions(snapshot),
        added=[f"{n}/{v}" for n, v in sorted(after - before)],
        removed=[f"{n}/{v}" for n, v in sorted(before - after)],
        refused=refused_versions(snapshot),
    )
