"""Open Inference Protocol (KServe V2) routes: health, metadata, inference.

Errors keep the service's shape `{"error": ..., "field": ...}`; V2 clients read `error`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from fastapi import APIRouter, Request, Response

from app.deps import Serving, ServingDep, SnapshotDep
from app.families import Inference
from app.v2.catalog import bind, metadata, names, refuse_non_finite, resolve, selected
from app.v2.request import HEADER_LENGTH, decompress, parse
from app.v2.response import infer_response

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

try:
    _VERSION = package_version("fieldserve")
except PackageNotFoundError:  # running from a source tree without an install
    _VERSION = "0.0.0"

EXTENSIONS = ["binary_tensor_data"]


@router.get("")
async def server_metadata() -> dict[str, Any]:
    return {"name": "fieldserve", "version": _VERSION, "extensions": EXTENSIONS}


@router.get("/health/live")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
async def server_ready(snapshot: SnapshotDep, response: Response) -> dict[str, bool]:
    ready = bool(snapshot.models)
    if not ready:
        response.status_code = 503
    return {"ready": ready}


@router.post("/repository/index")
async def repository_index(snapshot: SnapshotDep) -> list[dict[str, str]]:
    """Every V2 model (Triton's repository index): find the `<model>.<graph>` names here."""
    return [{"name": n, "version": str(m.version), "state": "READY"} for n, m in names(snapshot)]


@router.get("/models/{name}")
async def model_metadata(name: str, snapshot: SnapshotDep) -> dict[str, Any]:
    return metadata(snapshot, resolve(snapshot, name), pinned=False)


@router.get("/models/{name}/versions/{version}")
async def model_version_metadata(name: str, version: str, snapshot: SnapshotDep) -> dict[str, Any]:
    return metadata(snapshot, resolve(snapshot, name, version), pinned=True)


@router.get("/models/{name}/ready")
async def model_ready(name: str, snapshot: SnapshotDep) -> dict[str, Any]:
    v2 = resolve(snapshot, name)  # 404 when not served: loaded means ready
    return {"name": v2.name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready")
async def model_version_ready(name: str, version: str, snapshot: SnapshotDep) -> dict[str, Any]:
    v2 = resolve(snapshot, name, version)
    return {"name": v2.name, "version": v2.version, "ready": True}


@router.post("/models/{name}/infer", response_model=None)
async def infer(name: str, request: Request, serving: ServingDep) -> Response:
    return await _infer(request, serving, name, None)


@router.post("/models/{name}/versions/{version}/infer", response_model=None)
async def infer_version(name: str, version: str, request: Request, serving: ServingDep) -> Response:
    return await _infer(request, serving, name, version)


async def _infer(request: Request, serving: Serving, name: str, version: str | None) -> Response:
    v2 = resolve(serving.snapshot, name, version)
    body = decompress(
        await request.body(),
        request.headers.get("content-encoding"),
        serving.settings.max_body_bytes,
    )
    req = parse(body, request.headers.get(HEADER_LENGTH))
    ctx = serving.context(v2.model)
    tensors = bind(v2, req, ctx.limits)
    wanted = selected(v2, req.outputs, req.binary_output)
    predictor = v2.model.predictor
    result: Inference = await (
        predictor.infer(tensors, ctx)
        if v2.graph is None
        else predictor.infer_graph(v2.graph, tensors, ctx)
    )
    request.state.cache = result.cache
    refuse_non_finite(v2.name, tensors, [(n, result.outputs[n]) for n, _ in wanted])
    parameters: dict[str, str | int | bool] = {"cache": result.cache}
    if result.warnings:
        parameters["warnings"] = "; ".join(n.message for n in result.warnings)
    return infer_response(
        v2.name,
        v2.version,
        req.id,
        [(n, result.outputs[n], binary) for n, binary in wanted],
        parameters,
    )
