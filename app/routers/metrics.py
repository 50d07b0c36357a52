"""Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.deps import MetricsDep
from app.metrics import CONTENT_TYPE

router = APIRouter(tags=["observability"])


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format (see app/metrics.py for the series)."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
