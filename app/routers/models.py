"""Model listing and domain predictions (the family decides what a request means)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.answers import cached_prediction
from app.bundle import MEDIA_TYPE
from app.codecs import JsonDecodeError, decode_json
from app.deps import Serving, ServingDep, SnapshotDep
from app.errors import BadRequestError, NotFoundError
from app.families import GeometryEncoder, Prediction
from app.render import negotiate, render
from app.repository import ModelVersion
from app.routers import examples
from app.routers.responses import BODY, GUARDED, PARAMS, errors
from app.schemas import (
    AcousticRequest,
    AcousticResponse,
    FlowRequest,
    FlowResponse,
    GeometryRequest,
    GeometryResponse,
    ModelDetail,
    ModelList,
    inline_schema,
)
from app.views import model_detail, model_summary

router = APIRouter(prefix="/v1/models", tags=["models"])

# What a body route can answer besides 200: its schema cannot say everything the family checks
# (a source inside a wall, a point count over FIELDSERVE_MAX_POINTS), so 422 names the field.
_ERRORS = errors(*GUARDED, *BODY, 400, 404, 406, 422)
_BINARY = {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}
# The body is read raw (see _predict), so its schema is declared here for the OpenAPI page:
# which one applies depends on the model's family (acoustics: deeponet; airfoil flow: enf2enf).
_PREDICT_DOC: dict[str, Any] = {
    "responses": {
        200: {
            "model": AcousticResponse | FlowResponse,
            "content": _BINARY,
            "description": f"JSON, or with `Accept: {MEDIA_TYPE}` the binary bundle (README).",
        },
        **_ERRORS,
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [inline_schema(AcousticRequest), inline_schema(FlowRequest)]
                    },
                    "examples": examples.PREDICT,
                }
            },
        }
    },
}
_GEOMETRY_DOC: dict[str, Any] = {
    "responses": {
        200: {"model": GeometryResponse, "content": _BINARY, "description": "The geometry id."},
        **_ERRORS,
        **errors((404, "No such model or version is served, or the model is not enf2enf.")),
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": inline_schema(GeometryRequest),
                    "examples": examples.GEOMETRY,
                }
            },
        }
    },
}


@router.get("", responses=errors(*GUARDED))
async def list_models(snapshot: SnapshotDep) -> ModelList:
    latest = [snapshot.get(name) for name in snapshot.models]
    return ModelList(models=[model_summary(snapshot, model) for model in latest])


@router.get("/{name}", responses=errors(*GUARDED, 404, *PARAMS))
async def get_model(name: str, snapshot: SnapshotDep) -> ModelDetail:
    return model_detail(snapshot, snapshot.get(name))


@router.post("/{name}/predict", response_model=None, **_PREDICT_DOC)
async def predict_latest(name: str, request: Request, serving: ServingDep) -> Response:
    """Predict with the latest version of the model."""
    return await _predict(serving.snapshot.get(name), request, serving)


@router.post("/{name}/versions/{version}/predict", response_model=None, **_PREDICT_DOC)
async def predict_version(
    name: str, version: str, request: Request, serving: ServingDep
) -> Response:
    """Predict with one pinned version."""
    return await _predict(serving.snapshot.get(name, version), request, serving)


@router.post("/{name}/geometries", response_model=None, **_GEOMETRY_DOC)
async def geometries_latest(name: str, request: Request, serving: ServingDep) -> Response:
    """Encode a geometry once (enf2enf) with the latest version: answers its `geometry_id`."""
    return await _geometries(serving.snapshot.get(name), request, serving)


@router.post("/{name}/versions/{version}/geometries", response_model=None, **_GEOMETRY_DOC)
async def geometries_version(
    name: str, version: str, request: Request, serving: ServingDep
) -> Response:
    """Encode a geometry once with one pinned version."""
    return await _geometries(serving.snapshot.get(name, version), request, serving)


def _payload(body: bytes) -> Any:
    # Read raw rather than as a pydantic body parameter: which schema applies depends on
    # the model's family, and big arrays go to numpy without a per-float pydantic pass.
    try:
        return decode_json(body)
    except JsonDecodeError as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}", "body") from None


async def _geometries(model: ModelVersion, request: Request, serving: Serving) -> Response:
    fmt = negotiate(request.headers.get("accept"))
    predictor = model.predictor
    if not isinstance(predictor, GeometryEncoder):
        raise NotFoundError(
            f"model {model.name!r} (family {model.manifest.family}) takes no geometries; "
            "geometries are for enf2enf models",
            "model",
        )
    payload = _payload(await request.body())
    prediction = await predictor.encode_geometry(payload, serving.context(model))
    request.state.cache = prediction.cache
    return render(prediction, {"model": model.name, "version": str(model.version)}, fmt)


async def _predict(model: ModelVersion, request: Request, serving: Serving) -> Response:
    fmt = negotiate(request.headers.get("accept"))  # before any work: a 406 costs nothing
    body = await request.body()

    async def compute() -> Prediction:
        payload = _payload(body)
        return await model.predictor.predict(payload, serving.context(model))

    version = str(model.version)
    # The whole answer is cached under the body's hash; the salt holds what else it depends on.
    salt = f"{model.fingerprint}:{serving.settings.max_points}"
    prediction = await cached_prediction(serving.cache, model.name, version, salt, body, compute)
    request.state.cache = prediction.cache
    return render(prediction, {"model": model.name, "version": version}, fmt)
