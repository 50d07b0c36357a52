"""Request and response bodies.

Small structures are validated by pydantic. Big arrays (receiver lists, time lists) are
checked and converted by numpy in one pass instead (app/coordinates.py).

Union branches are tagged with names starting with '#' so app.errors can drop them from the
locations it reports: clients see `receivers.grid.nx`, not pydantic's branch names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
)
from pydantic.json_schema import SkipJsonSchema

from app.coordinates import PlanePoints, Polyline, RoomPoints, ValueArray
from app.errors import BadRequestError, invalid_input

# strict: "1.5" and true are not numbers; ints are.
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Count = Annotated[StrictInt, Field(ge=1)]


class _Strict(BaseModel):
    # A misspelt key ("reciever") must fail loudly, not fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class GridCounts(_Strict):
    nx: Count
    ny: Count
    nz: Count | None = None


class ReceiverGrid(_Strict):
    """Cell centres of an nx x ny (x nz) partition of the room's bounding box."""

    grid: GridCounts


class TimeRange(_Strict):
    """`num` evenly spaced times from start to stop inclusive, seconds."""

    start: FiniteFloat
    stop: FiniteFloat
    num: Count


def _kind(object_tag: str, list_tag: str) -> Any:
    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            return object_tag
        if isinstance(value, list):
            return list_tag
        return None

    return tag


class AcousticRequest(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    source: list[FiniteFloat] = Field(
        min_length=1,
        description="Source position, m.",
        # The family checks the width against its room (naming `source`): 2-D or 3-D.
        json_schema_extra={"minItems": 2, "maxItems": 3},
    )
    receivers: Annotated[
        Annotated[ReceiverGrid, Tag("#grid")] | Annotated[RoomPoints, Tag("#points")],
        Discriminator(
            _kind("#grid", "#points"),
            custom_error_type="receivers_type",
            custom_error_message='must be a list of points or {"grid": {"nx": .., "ny": ..}}',
        ),
    ] = Field(description="Receiver positions, m, or a grid over the room.")
    times: Annotated[
        Annotated[TimeRange, Tag("#range")] | Annotated[ValueArray, Tag("#list")],
        Discriminator(
            _kind("#range", "#list"),
            custom_error_type="times_type",
            custom_error_message='must be a list of times or {"start": .., "stop": .., "num": ..}',
        ),
    ] = Field(description="Times, s.")


_POSITION: dict[str, Any] = {"minItems": 2, "maxItems": 3}


class ImpulseRequest(_Strict):
    # The family checks each width against its room (naming the field): 2-D or 3-D.
    source: list[FiniteFloat] = Field(
        min_length=1, description="Source position, m.", json_schema_extra=_POSITION
    )
    listener: list[FiniteFloat] = Field(
        min_length=1, description="Listener position, m.", json_schema_extra=_POSITION
    )


def _by_key(tags: dict[str, str]) -> Any:
    """Union branch chosen by which key an object has ({"naca": ..} or {"curves": ..} ...)."""

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            for key, name in tags.items():
                if key in value:
                    return name
        return None

    return tag


class NacaGeometry(_Strict):
    naca: Annotated[StrictStr, Field(max_length=32)] = Field(
        description="NACA 4-digit code, '2412' or 'NACA 2412'."
    )


class CurvesGeometry(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    curves: list[Polyline] = Field(
        min_length=1, description="One closed polyline [[x, y], ...] per element, chords."
    )


class GeometryRef(_Strict):
    geometry_id: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{40}$")] = Field(
        description="An id answered by /geometries or an earlier prediction."
    )


Geometry = Annotated[
    Annotated[NacaGeometry, Tag("#naca")]
    | Annotated[CurvesGeometry, Tag("#curves")]
    | Annotated[GeometryRef, Tag("#id")],
    Discriminator(
        _by_key({"naca": "#naca", "curves": "#curves", "geometry_id": "#id"}),
        custom_error_type="geometry_type",
        custom_error_message='must be {"naca": ..}, {"curves": ..} or {"geometry_id": ..}',
    ),
]


class FlowConditions(_Strict):
    aoa_deg: FiniteFloat = Field(description="Angle of attack, degrees.")
    speed: FiniteFloat = Field(description="Free-stream speed (> 0).")


class QueryGrid(_Strict):
    """nx x ny points from x0 to x1 and y0 to y1 inclusive (the trained box by default)."""

    nx: Count
    ny: Count
    bounds: tuple[tuple[FiniteFloat, FiniteFloat], tuple[FiniteFloat, FiniteFloat]] | None = None


class GridQuery(_Strict):
    grid: QueryGrid


class PointsQuery(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    points: PlanePoints = Field(description="Query points [[x, y], ...], chords.")


Query = Annotated[
    Annotated[PointsQuery, Tag("#points")] | Annotated[GridQuery, Tag("#grid")],
    Discriminator(
        _by_key({"points": "#points", "grid": "#grid"}),
        custom_error_type="query_type",
        custom_error_message='must be {"points": [[x, y], ...]} or {"grid": {"nx":, "ny":}}',
    ),
]


class FlowRequest(_Strict):
    """An airfoil model's request (task airfoil-flow)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    geometry: Geometry
    conditions: FlowConditions
    query: Query


# A condition's value: a number (not "1.5", not true). NaN and infinity pass here and are
# refused by the family, naming the condition (`conditions.load`).
ConditionValue = Annotated[float, Field(strict=True)]
ConditionName = Annotated[StrictStr, Field(min_length=1, max_length=64)]
# More conditions than any model takes are refused without reading them one by one.
MAX_CONDITIONS = 64


class FieldsRequest(_Strict):
    """A generic enf2enf model's request (task geometry-fields): conditions by the names in
    the manifest's domain.conditions."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    geometry: Geometry
    conditions: dict[ConditionName, ConditionValue] = Field(
        max_length=MAX_CONDITIONS,
        description="The model's conditions by name (its domain.conditions, e.g. "
        '{"load": 50000.0}): every one, no other.',
    )
    query: Query


class GeometryPredictRequest(_Strict):
    """For the OpenAPI page only: an enf2enf request, airfoil or generic (the model's task
    decides which conditions apply: FlowRequest or FieldsRequest)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    geometry: Geometry
    conditions: FlowConditions | dict[ConditionName, ConditionValue] = Field(
        description='airfoil-flow: {"aoa_deg", "speed"}; geometry-fields: the model\'s '
        'domain.conditions by name, e.g. {"load": 50000.0}.'
    )
    query: Query


class GeometryRequest(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    geometry: Geometry


class WarningBody(BaseModel):
    field: str
    code: str
    message: str


class GridBody(BaseModel):
    counts: list[int]
    lo: list[float]
    hi: list[float]
    index: list[int] = Field(description="Flat C-order index in the full grid of each receiver.")


class AcousticResponse(BaseModel):
    """For the OpenAPI page: the route writes this shape straight from numpy with orjson."""

    pressure: list[list[float]] = Field(description="receivers x times, Pa")
    times: list[float]
    receivers: list[list[float]] | None = Field(None, description="Only when a grid was asked.")
    grid: GridBody | None = None
    model: str
    version: str
    cache: Literal["hit", "partial", "miss"]
    warnings: list[WarningBody]


class ImpulseResponse(BaseModel):
    """For the OpenAPI page: the route writes this shape straight from numpy with orjson."""

    times: list[float] = Field(description="The model's own times (its trained steps), s.")
    pressure: list[float] = Field(
        description="Pressure at the listener at `times`, Pa: what /predict answers for them."
    )
    sample_rate_hz: int = Field(description="48000.")
    signal: list[float] = Field(
        description="The pressure resampled to sample_rate_hz, band-limited at fmax_hz, Pa; "
        "sample j is at window_s[0] + j / sample_rate_hz."
    )
    fmax_hz: float = Field(description="The band limit: the model's fmax (its manifest).")
    window_s: list[float] = Field(
        min_length=2, max_length=2, description="The trained window [start, stop], s."
    )
    full_scale_pa: float = Field(
        description="The WAV answer's scale: sample 32767 is this many Pa (the signal's peak)."
    )
    model: str
    version: str
    cache: Literal["hit", "partial", "miss"]
    warnings: list[WarningBody]


class FlowFields(BaseModel):
    u: list[float]
    v: list[float]
    cp: list[float]


class FlowGridBody(BaseModel):
    counts: list[int]
    lo: list[float]
    hi: list[float]
    index: list[int] = Field(description="Flat C-order index (ix * ny + iy) of each point.")


class _GeometryAnswer(BaseModel):
    """What every enf2enf answer holds besides its fields."""

    geometry_id: str
    points: list[list[float]] | None = Field(None, description="Only when a grid was asked.")
    grid: FlowGridBody | None = None
    model: str
    version: str
    cache: Literal["hit", "partial", "miss"]
    warnings: list[WarningBody]


class FlowResponse(_GeometryAnswer):
    """For the OpenAPI page: the route writes this shape straight from numpy with orjson."""

    fields: FlowFields = Field(description="u, v (free-stream speed units) and cp per point.")


class FieldsResponse(_GeometryAnswer):
    """For the OpenAPI page: a generic enf2enf answer (task geometry-fields)."""

    fields: dict[str, list[float]] = Field(
        description="One array per field the manifest names (e.g. von_mises, ux, uy), one value "
        "per point, in the manifest's field_units."
    )


class GeometryResponse(BaseModel):
    geometry_id: str
    model: str
    version: str
    cache: Literal["hit", "partial", "miss"] = Field(
        description="hit: the geometry's latents were already cached; miss: encoded now."
    )
    warnings: list[WarningBody]


class ErrorDetail(BaseModel):
    loc: str = Field(description="Where in the request, e.g. receivers[3][1] or query.grid.nx.")
    error: str


class ErrorBody(BaseModel):
    """Every error answer, whatever refused the request (app/errors.py)."""

    error: str = Field(description="What is wrong, for a person.")
    field: str | None = Field(description="The part of the request at fault, when there is one.")
    details: list[ErrorDetail] | SkipJsonSchema[None] = Field(
        None, description="Every problem found, when validation found several."
    )


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"


VersionState = Literal["promoted", "candidate"]
_STATE = (
    "promoted: may answer as the latest; candidate: exported, reachable by its number only "
    "(python -m training promote)."
)


class LoadedVersion(BaseModel):
    name: str
    version: str
    family: str
    task: str
    provider: str
    state: VersionState = Field(description=_STATE)


class RefusedVersion(BaseModel):
    name: str
    version: str
    path: str
    reason: str


class CacheHealth(BaseModel):
    backend: Literal["memory", "redis"]
    status: Literal["up", "down"] = Field(
        description="down: Redis unreachable; answers are computed without it until it is back."
    )
    details: dict[str, Any] = Field(
        description="memory: entries, bytes, max_bytes, evictions; redis: url (no password), "
        "failures, last_error, retry_in_s."
    )


class ReadinessBrief(BaseModel):
    """/health/ready to a caller without a key, when keys are configured: no details."""

    status: Literal["ready", "unavailable"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    models: list[LoadedVersion]
    execution_provider: str | None = Field(
        description="Provider the loaded sessions actually run on ('mixed' if they differ)."
    )
    device: str
    available_providers: list[str]
    cache: CacheHealth
    refused: list[RefusedVersion]
    loaded_at: str


class PromotionEntry(BaseModel):
    """How a version was promoted, from the model's promotion record."""

    at: str = Field(description="When, UTC, ISO 8601.")
    reason: str = Field(description="Why: the metrics compared, or the operator's words.")
    forced: bool = Field(description="Promoted with --force, over a metric that was worse.")
    metric: str | None = Field(None, description="The metric compared (lower is better).")
    value: float | None = Field(None, description="This version's value of it.")


class ModelSummary(BaseModel):
    name: str
    version: str = Field(
        description="The version described: the latest, or the highest when none is promoted."
    )
    latest: str | None = Field(
        description="The version the unpinned routes answer with: the highest promoted one "
        "(null: none is promoted, or the promotion record is refused)."
    )
    state: VersionState = Field(description=_STATE)
    promotion: PromotionEntry | None = Field(
        description="This version's promotion (null: a candidate, or no record says how)."
    )
    versions: list[str] = Field(description="Every served version, promoted or not.")
    promoted: list[str] = Field(description="The served versions that are promoted.")
    promotion_record: Literal["recorded", "unrecorded", "refused"] = Field(
        description="recorded: models/<name>/.promoted.json says which versions are promoted; "
        "unrecorded: there is none (a repository from before promotion), every version counts "
        "as promoted; refused: it cannot be read (see /health/ready), none is latest."
    )
    family: str
    task: str
    description: str
    provider: str
    domain: dict[str, Any]
    metrics: dict[str, Any]


class ModelDetail(ModelSummary):
    manifest: dict[str, Any]


class ModelList(BaseModel):
    models: list[ModelSummary]


class ReloadReport(BaseModel):
    models: list[LoadedVersion]
    added: list[str] = Field(description="name/version now served that were not before.")
    removed: list[str] = Field(description="name/version no longer served.")
    refused: list[RefusedVersion]


_ModelT = TypeVar("_ModelT", bound=BaseModel)


def validate_body(schema: type[_ModelT], payload: Any) -> _ModelT:
    """Decoded JSON -> request model, or the 4xx that names the field at fault."""
    if not isinstance(payload, dict):
        raise BadRequestError("the request body must be a JSON object", "body")
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def inline_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """JSON schema with its `$defs` substituted in place, for an `openapi_extra` body.

    FastAPI only registers components for models it sees as parameters; a raw-read body's
    `$ref`s would point at nothing.
    """
    doc = schema.model_json_schema()
    defs = doc.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(doc)
    return resolved
