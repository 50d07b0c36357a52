"""Model listing, domain predictions and impulse responses (the family decides what a request
means)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from app.answers import cached_prediction, parse_off_loop
from app.bundle import MEDIA_TYPE
from app.codecs import JsonDecodeError
from app.deps import Serving, ServingDep, SnapshotDep
from app.errors import BadRequestError, NotFoundError
from app.families import GeometryEncoder, Prediction
from app.families.impulse import ImpulseResponder
from app.render import negotiate, negotiate_audio, render
from app.repository import ModelVersion
from app.routers import examples
from app.routers.responses import BODY, GUARDED, PARAMS, errors
from app.schemas import (
    AcousticRequest,
    AcousticResponse,
    FieldsResponse,
    FlowResponse,
    GeometryPredictRequest,
    GeometryRequest,
    GeometryResponse,
    ImpulseRequest,
    ImpulseResponse,
    ModelDetail,
    ModelList,
    inline_schema,
)
from app.views import model_detail, model_summary
from app.wav import HEADERS as WAV_HEADERS
from app.wav import MEDIA_TYPE as WAV
from app.wav import wav_response

router = APIRouter(prefix="/v1/models", tags=["models"])

# What a body route can answer besides 200: its schema cannot say everything the family checks
# (a source inside a wall, a point count over FIELDSERVE_MAX_POINTS), so 422 names the field.
_ERRORS = errors(*GUARDED, *BODY, 400, 404, 406, 422)
_BINARY = {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}
# The body is read raw (see _predict), so its schema is declared here for the OpenAPI page:
# which one applies depends on the model's family and task (acoustics: deeponet; a geometry:
# enf2enf, whose conditions are aoa_deg and speed for airfoil-flow, else the manifest's).
_PREDICT_DOC: dict[str, Any] = {
    "responses": {
        200: {
            "model": AcousticResponse | FlowResponse | FieldsResponse,
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
                        "oneOf": [
                            inline_schema(AcousticRequest),
                            inline_schema(GeometryPredictRequest),
                        ]
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
_IMPULSE_DOC: dict[str, Any] = {
    "responses": {
        200: {
            "model": ImpulseResponse,
            "content": {**_BINARY, WAV: {"schema": {"type": "string", "format": "binary"}}},
            "description": "JSON (the arrays), the binary bundle with `Accept: "
            f"{MEDIA_TYPE}`, or with `Accept: {WAV}` the sound: 16-bit PCM, mono, 48 kHz, "
            "band-limited at the model's fmax, scaled to the 16-bit range; the headers below "
            "come with the sound.",
            "headers": {
                k: {"description": v, "schema": {"type": "string"}} for k, v in WAV_HEADERS.items()
            },
        },
        **_ERRORS,
        **errors((404, "No such model or version is served, or the model is not acoustic.")),
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": inline_schema(ImpulseRequest),
                    "examples": examples.IMPULSE,
                }
            },
        }
    },
}


@router.get("", responses=errors(*GUARDED))
async def list_models(snapshot: SnapshotDep) -> ModelList:
    """Every model: its latest version, or its highest when none is promoted."""
    shown = [snapshot.shown(name) for name in snapshot.models]
    return ModelList(models=[model_summary(snapshot, model) for model in shown])


@router.get("/{name}", responses=errors(*GUARDED, 404, *PARAMS))
async def get_model(name: str, snapshot: SnapshotDep) -> ModelDetail:
    """The model's latest version (its highest when none is promoted) with its manifest."""
    return model_detail(snapshot, snapshot.shown(name))


@router.get("/{name}/versions/{version}", responses=errors(*GUARDED, 404, *PARAMS))
async def get_model_version(name: str, version: str, snapshot: SnapshotDep) -> ModelDetail:
    """One pinned version, promoted or candidate, with its manifest."""
    return model_detail(snapshot, snapshot.get(name, version))


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


@router.post("/{name}/impulse-response", response_model=None, **_IMPULSE_DOC)
async def impulse_latest(name: str, request: Request, serving: ServingDep) -> Response:
    """The impulse response from a source to a listener, with the latest version."""
    return await _impulse(serving.snapshot.get(name), request, serving)


@router.post("/{name}/versions/{version}/impulse-response", response_model=None, **_IMPULSE_DOC)
async def impulse_version(
    name: str, version: str, request: Request, serving: ServingDep
) -> Response:
    """The impulse response with one pinned version."""
    return await _impulse(serving.snapshot.get(name, version), request, serving)


async def _parsed(body: bytes) -> tuple[Any, bytes]:
    """(payload, canonical form). Read raw rather than as a pydantic body parameter: which
    schema applies depends on the model's family, and big arrays go to numpy without a
    per-float pydantic pass."""
    try:
        return await parse_off_loop(body)
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
    payload, _ = await _parsed(await request.body())
    prediction = await predictor.encode_geometry(payload, serving.context(model))
    request.state.cache = prediction.cache
    return render(prediction, {"model": model.name, "version": str(model.version)}, fmt)


async def _predict(model: ModelVersion, request: Request, serving: Serving) -> Response:
    fmt = negotiate(request.headers.get("accept"))  # before any work: a 406 costs nothing
    payload, canonical = await _parsed(await request.body())

    async def compute() -> Prediction:
        return await model.predictor.predict(payload, serving.context(model, fmt != "json"))

    version = str(model.version)
    # The whole answer is cached under the body's hash; the salt holds what else it depends on.
    salt = f"{model.fingerprint}:{serving.settings.max_points}"
    prediction = await cached_prediction(
        serving.cache, model.name, version, salt, canonical, compute
    )
    request.state.cache = prediction.cache
    if fmt == "json":
        # A whole answer computed for a binary request may be too big as JSON.
        n32, n64 = _values(prediction.fields)
        serving.limits().check_answer(n32, n64, "accept")
    return render(prediction, {"model": model.name, "version": version}, fmt)


def _values(fields: Mapping[str, Any]) -> tuple[int, int]:
    """(float32 values, other array values) in an answer's fields, nested ones included."""
    n32 = n64 = 0
    for value in fields.values():
        if isinstance(value, Mapping):
            a, b = _values(value)
            n32, n64 = n32 + a, n64 + b
        elif isinstance(value, np.ndarray):
            if value.dtype == np.float32:
                n32 += value.size
            else:
                n64 += value.size
    return n32, n64


async def _impulse(model: ModelVersion, request: Request, serving: Serving) -> Response:
    fmt = negotiate_audio(request.headers.get("accept"))
    predictor = model.predictor
    if not isinstance(predictor, ImpulseResponder):
        raise NotFoundError(
            f"model {model.name!r} (family {model.manifest.family}) answers no impulse "
            "responses; they are for acoustic models",
            "model",
        )
    payload, canonical = await _parsed(await request.body())

    async def compute() -> Prediction:
        return await predictor.impulse_response(payload, serving.context(model))

    version = str(model.version)
    # The same body means the same answer, whatever the format asked: one cache entry, kept
    # apart from /predict's by the salt.
    salt = f"{model.fingerprint}:{serving.settings.max_points}:impulse-response"
    prediction = await cached_prediction(
        serving.cache, model.name, version, salt, canonical, compute
    )
    request.state.cache = prediction.cache
    extra = {"model": model.name, "version": version}
    if fmt == "wav":
        return wav_response(prediction, extra)
    return render(prediction, extra, fmt)
