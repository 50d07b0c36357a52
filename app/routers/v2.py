"""Open Inference Protocol (KServe V2) routes: health, metadata, inference.

Errors keep the service's shape `{"error": ..., "field": ...}`; V2 clients read `error`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from fastapi import APIRouter, Request, Response

from app.answers import cached_inference
from app.deps import Serving, ServingDep, SnapshotDep
from app.families import Inference
from app.routers import examples
from app.routers.responses import BODY, GUARDED, PARAMS, errors
from app.schemas import inline_schema
from app.v2.catalog import (
    bind,
    metadata,
    names,
    refuse_non_finite,
    refuse_oversized,
    resolve,
    selected,
)
from app.v2.request import HEADER_LENGTH, decompress, parse
from app.v2.response import infer_response
from app.v2.schemas import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ModelVersionReady,
    RepositoryEntry,
    ServerLive,
    ServerMetadata,
    ServerReady,
)

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

try:
    _VERSION = package_version("fieldserve")
except PackageNotFoundError:  # running from a source tree without an install
    _VERSION = "0.0.0"

EXTENSIONS = ["binary_tensor_data"]


_METADATA = errors(*GUARDED, (404, "No such V2 model or version is served."), *PARAMS)
# The handler reads the body raw (app/v2/request.py), so FastAPI cannot describe it: declared
# here. Binary inputs: the JSON request, then their bytes, Inference-Header-Content-Length
# giving the JSON's length (the binary-data extension that tritonclient.http speaks).
_BODY_HEADERS = [
    {
        "name": "Inference-Header-Content-Length",
        "in": "header",
        "required": False,
        "description": "Length of the JSON part of an application/octet-stream body; the "
        "binary tensors follow it.",
        "schema": {"type": "integer", "minimum": 0},
    },
    {
        "name": "Content-Encoding",
        "in": "header",
        "required": False,
        "description": "The body compressed (tritonclient's request_compression_algorithm).",
        "schema": {"enum": ["gzip", "deflate", "identity"]},
    },
]
_BINARY = {"type": "string", "format": "binary"}
_INFER_DOC: dict[str, Any] = {
    "response_model": None,
    "responses": {
        200: {
            "model": InferenceResponse,
            "description": "JSON outputs; with any binary output, application/octet-stream: "
            "this JSON, then the binary outputs in order.",
            "content": {"application/octet-stream": {"schema": _BINARY}},
            "headers": {
                "Inference-Header-Content-Length": {
                    "description": "Length of the JSON part (binary answers only).",
                    "schema": {"type": "integer"},
                }
            },
        },
        **errors(
            *GUARDED,
            *BODY,
            (
                400,
                "The tensors do not fit the request or the model: not JSON, data or bytes that "
                "do not fit a shape or datatype, NaN or infinity, an unknown or missing input, "
                "a wrong datatype or shape, rows past FIELDSERVE_MAX_POINTS.",
            ),
            (404, "No such V2 model or version is served."),
            415,
            (
                422,
                "Valid tensors the model cannot answer: inputs outside its domain, an answer or "
                "work arrays over the byte limits, or an answer that would hold NaN or infinity.",
            ),
        ),
    },
    "openapi_extra": {
        "parameters": _BODY_HEADERS,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": inline_schema(InferenceRequest),
                    "examples": examples.INFER,
                },
                "application/octet-stream": {"schema": _BINARY},
            },
        },
    },
}


@router.get("", responses=errors(*GUARDED))
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="fieldserve", version=_VERSION, extensions=EXTENSIONS)


@router.get("/health/live", responses=errors())
async def server_live() -> ServerLive:
    return ServerLive(live=True)


@router.get(
    "/health/ready",
    responses={503: {"model": ServerReady, "description": "No model is loaded."}, **errors()},
)
async def server_ready(snapshot: SnapshotDep, response: Response) -> ServerReady:
    ready = bool(snapshot.models)
    if not ready:
        response.status_code = 503
    return ServerReady(ready=ready)


@router.post("/repository/index", responses=errors(*GUARDED, *BODY))
async def repository_index(snapshot: SnapshotDep) -> list[RepositoryEntry]:
    """Every V2 model (Triton's repository index): find the `<model>.<graph>` names here."""
    return [
        RepositoryEntry(name=n, version=str(m.version), state="READY") for n, m in names(snapshot)
    ]


@router.get("/models/{name}", responses=_METADATA)
async def model_metadata(name: str, snapshot: SnapshotDep) -> ModelMetadata:
    return ModelMetadata.model_validate(metadata(snapshot, resolve(snapshot, name), pinned=False))


@router.get("/models/{name}/versions/{version}", responses=_METADATA)
async def model_version_metadata(name: str, version: str, snapshot: SnapshotDep) -> ModelMetadata:
    return ModelMetadata.model_validate(
        metadata(snapshot, resolve(snapshot, name, version), pinned=True)
    )


@router.get("/models/{name}/ready", responses=_METADATA)
async def model_ready(name: str, snapshot: SnapshotDep) -> ModelReady:
    v2 = resolve(snapshot, name)  # 404 when not served: loaded means ready
    return ModelReady(name=v2.name, ready=True)


@router.get("/models/{name}/versions/{version}/ready", responses=_METADATA)
async def model_version_ready(name: str, version: str, snapshot: SnapshotDep) -> ModelVersionReady:
    v2 = resolve(snapshot, name, version)
    return ModelVersionReady(name=v2.name, version=v2.version, ready=True)


@router.post("/models/{name}/infer", **_INFER_DOC)
async def infer(name: str, request: Request, serving: ServingDep) -> Response:
    return await _infer(request, serving, name, None)


@router.post("/models/{name}/versions/{version}/infer", **_INFER_DOC)
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
    refuse_oversized(v2, predictor.cost(v2.graph, tensors, ctx), wanted, tensors, ctx.limits)

    async def compute() -> Inference:
        if v2.graph is None:
            return await predictor.infer(tensors, ctx)
        return await predictor.infer_graph(v2.graph, tensors, ctx)

    # The whole answer is cached under the tensors; the salt holds what else it depends on.
    salt = f"v2:{v2.name}:{v2.model.fingerprint}:{serving.settings.max_points}"
    result = await cached_inference(
        serving.cache, v2.model.name, v2.version, salt, tensors, compute
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
