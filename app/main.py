"""The FastAPI application: wiring only; the work lives in the modules it names."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.access import AccessMiddleware
from app.admission import AdmissionMiddleware
from app.auth import AuthMiddleware
from app.body_limit import BodyLimitMiddleware
from app.cache import build_cache
from app.cache.backend import BackendStatus
from app.codecs import OrjsonResponse
from app.docs import install_docs
from app.errors import install_error_handlers
from app.metrics import Metrics, ServingState
from app.page import router as page
from app.repository import ModelRepository, Snapshot
from app.routers import admin, health, metrics, models, v2
from app.runtime import Runtime
from app.settings import Settings

log = logging.getLogger("fieldserve")


def serving_state(snapshot: Snapshot, cache: BackendStatus) -> ServingState:
    models = (
        {
            "model": m.name,
            "version": str(m.version),
            "family": m.manifest.family,
            "task": m.manifest.task,
            "provider": m.provider,
        }
        for m in snapshot
    )
    return ServingState(
        snapshot.execution_provider or "",
        models,
        len(snapshot.refused),
        cache.backend,
        cache.up,
        cache.detail,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The lifespan owns the sessions and the cache (and so the Redis pool): they exist only
    # while the app serves.
    settings: Settings = app.state.settings
    meters: Metrics = app.state.metrics
    runtime = Runtime(settings.device, settings.intra_op_threads, meters.graph_observer)
    repository = ModelRepository(settings.model_dir, runtime)
    cache = build_cache(settings, meters)
    await cache.backend.check()  # logs whether Redis answers; never fatal
    snapshot = await repository.reload()
    log.info(
        "fieldserve ready: %d model versions (%s), %d refused; cache %s; API docs at /docs",
        sum(1 for _ in snapshot),
        ", ".join(f"{m.name}/{m.version}" for m in snapshot) or "none",
        len(snapshot.refused),
        cache.status().backend,
    )
    meters.watch(lambda: serving_state(repository.snapshot, cache.status()))
    app.state.repository = repository
    app.state.cache = cache
    try:
        yield
    finally:
        del app.state.repository, app.state.cache
        await cache.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="fieldserve",
        summary="Millisecond field predictions from neural operators exported to ONNX.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        docs_url=None,  # served offline by app.docs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    # Added innermost first: a request meets the access log (request id, metrics), then the
    # cap on requests in flight, then the key check, then the body limits, then the routes.
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    app.add_middleware(AuthMiddleware, api_keys=settings.api_keys, admin_keys=settings.admin_keys)
    app.add_middleware(AdmissionMiddleware, max_requests=settings.max_concurrent_requests)
    app.add_middleware(AccessMiddleware, metrics=app.state.metrics)
    install_error_handlers(app)
    # Routes are matched in order: the prediction routes first, they carry the traffic.
    for module in (models, v2, health, admin, metrics):
        app.include_router(module.router)
    install_docs(app)
    app.include_router(page)  # the page at / (app/static/)
    return app
