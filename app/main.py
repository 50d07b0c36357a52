"""The FastAPI application: wiring only; the work lives in the modules it names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.body_limit import BodyLimitMiddleware
from app.codecs import OrjsonResponse
from app.errors import install_error_handlers
from app.repository import ModelRepository
from app.routers import admin, health, models
from app.runtime import Runtime
from app.settings import Settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The lifespan owns the sessions: they exist only while the app serves.
    settings: Settings = app.state.settings
    runtime = Runtime(settings.device, settings.intra_op_threads)
    repository = ModelRepository(settings.model_dir, runtime)
    await repository.reload()
    app.state.repository = repository
    try:
        yield
    finally:
        del app.state.repository


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="fieldserve",
        summary="Millisecond field predictions from neural operators exported to ONNX.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    app.state.settings = settings
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    for module in (health, models, admin):
        app.include_router(module.router)
    return app
