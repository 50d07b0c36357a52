"""Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.deps import MetricsDep
from app.metrics import CONTENT_TYPE
from app.routers.responses import errors

router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **errors(401),
    },
)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format (see app/metrics.py for the series)."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
