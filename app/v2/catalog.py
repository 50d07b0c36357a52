"""Which V2 models a snapshot serves, their metadata, and binding request tensors to them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.errors import BadRequestError, InvalidInputError, NotFoundError
from app.families import Cost, Limits
from app.families.base import JSON_FLOAT32_BYTES
from app.manifest import TensorSpec
from app.repository import ModelVersion, Snapshot
from app.v2.datatypes import v2_datatype
from app.v2.request import InferRequest, RequestedOutput

ENSEMBLE = "ensemble"
ONNX = "onnxruntime_onnx"


@dataclass(frozen=True)
class V2Model:
    name: str  # "<model>" (end to end) or "<model>.<graph>"
    model: ModelVersion
    graph: str | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def version(self) -> str:
        return str(self.model.version)


def _of(model: ModelVersion, graph: str | None, name: str) -> V2Model:
    if graph is None:
        signature = model.predictor.signature
        return V2Model(name, model, None, signature.inputs, signature.outputs)
    spec = model.manifest.graphs[graph]
    return V2Model(name, model, graph, spec.inputs, spec.outputs)


def resolve(snapshot: Snapshot, name: str, version: str | None = None) -> V2Model:
    """`acoustics-room-2d` (end to end) or `acoustics-room-2d.trunk` (one graph)."""
    if name in snapshot.models:
        return _of(snapshot.get(name, version), None, name)
    base, dot, graph = name.rpartition(".")
    if dot and base in snapshot.models:
        model = snapshot.get(base, version)
        if graph in model.manifest.graphs:
            return _of(model, graph, name)
        raise NotFoundError(
            f"model {base!r} has no graph {graph!r} (graphs: {', '.join(model.manifest.graphs)})",
            "model",
        )
    raise NotFoundError(f"no V2 model named {name!r} is served (see /v2/repository/index)", "model")


def names(snapshot: Snapshot) -> list[tuple[str, ModelVersion]]:
    """Every V2 model of every served version."""
    out = []
    for model in snapshot:
        out.append((model.name, model))
        out += [(f"{model.name}.{g}", model) for g in model.manifest.graphs]
    return out


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": v2_datatype(spec.dtype), "shape": list(spec.shape)}


def metadata(snapshot: Snapshot, v2: V2Model, pinned: bool) -> dict[str, Any]:
    versions = [v2.version] if pinned else [str(v) for v in snapshot.models[v2.model.name]]
    return {
        "name": v2.name,
        "versions": versions,
        "platform": ONNX if v2.graph else ENSEMBLE,
        "inputs": [_tensor(s) for s in v2.inputs],
        "outputs": [_tensor(s) for s in v2.outputs],
    }


def bind(v2: V2Model, request: InferRequest, limits: Limits) -> dict[str, NDArray[Any]]:
    """The request's tensors checked against the model's inputs: names, datatypes, ranks,
    fixed dimensions, and free dimensions within MAX_POINTS."""
    wanted = [s.name for s in v2.inputs]
    unknown = [n for n in request.inputs if n not in wanted]
    missing = [n for n in wanted if n not in request.inputs]
    if unknown or missing:
        raise BadRequestError(
            f"model {v2.name!r} takes inputs {wanted}"
            + (f"; unknown: {unknown}" if unknown else "")
            + (f"; missing: {missing}" if missing else ""),
            "inputs",
        )
    bound: dict[str, NDArray[Any]] = {}
    for spec in v2.inputs:
        array = request.inputs[spec.name]
        field = f"inputs.{spec.name}"
        want = v2_datatype(spec.dtype)
        if request.datatypes[spec.name] != want:
            raise BadRequestError(
                f"input {spec.name!r} is {request.datatypes[spec.name]}; {v2.name} takes {want}",
                field,
            )
        shape = array.shape
        if len(shape) != len(spec.shape) or any(
            d != s for d, s in zip(shape, spec.shape, strict=True) if s >= 0
        ):
            raise BadRequestError(
                f"input {spec.name!r} has shape {list(shape)}; {v2.name} takes {list(spec.shape)} "
                "(-1: any size)",
                field,
            )
        free = int(np.prod([d for d, s in zip(shape, spec.shape, strict=True) if s < 0]))
        if free > limits.max_points:
            raise BadRequestError(
                f"input {spec.name!r} has {free} rows, more than the limit of {limits.max_points}",
                field,
            )
        if free == 0:
            raise BadRequestError(f"input {spec.name!r} is empty", field)
        bound[spec.name] = array
    return bound


def selected(
    v2: V2Model, requested: tuple[RequestedOutput, ...] | None, default_binary: bool
) -> list[tuple[str, bool]]:
    """(output name, binary) in answer order: those asked for, else all."""
    names_ = [s.name for s in v2.outputs]
    if requested is None:
        return [(n, default_binary) for n in names_]
    for r in requested:
        if r.name not in names_:
            raise BadRequestError(
                f"model {v2.name!r} has no output {r.name!r} (outputs: {names_})", "outputs"
            )
    return [(r.name, default_binary if r.binary is None else r.binary) for r in requested]


def refuse_oversized(
    v2: V2Model,
    cost: Cost,
    wanted: list[tuple[str, bool]],
    inputs: dict[str, NDArray[Any]],
    limits: Limits,
) -> None:
    """422 before any graph runs when the answer or the arrays held would pass the limits:
    a 16 MB body can ask for gigabytes (500,000 sources x 101 coefficients as JSON)."""
    largest = max(inputs, key=lambda n: inputs[n].size)
    field = f"inputs.{largest}"
    answer = sum(cost.values[n] * (4 if binary else JSON_FLOAT32_BYTES) for n, binary in wanted)
    if answer > limits.max_response_bytes:
        raise InvalidInputError(
            f"{v2.name}: the answer would take up to {_mb(answer)} "
            f"({', '.join(f'{n}: {cost.values[n]} values' for n, _ in wanted)}), more than "
            f"the limit of {_mb(limits.max_response_bytes)} (FIELDSERVE_MAX_RESPONSE_BYTES); "
            "send fewer rows per request"
            + ("" if all(b for _, b in wanted) else " or ask for binary outputs (4 bytes a value)"),
            field,
        )
    if cost.work_bytes > limits.max_work_bytes:
        raise InvalidInputError(
            f"{v2.name}: these inputs would hold {_mb(cost.work_bytes)} of arrays while "
            f"computing, more than the limit of {_mb(limits.max_work_bytes)} "
            "(FIELDSERVE_MAX_WORK_BYTES); send fewer rows per request",
            field,
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def refuse_non_finite(
    name: str, inputs: dict[str, NDArray[Any]], outputs: list[tuple[str, NDArray[Any]]]
) -> None:
    """422 rather than an answer holding NaN or infinity (JSON would carry them as null): a
    graph asked directly, without the domain routes' checks, can be driven off its range
    (points at 1e38 overflow a trunk's arithmetic)."""
    for out, array in outputs:
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            field = f"inputs.{next(iter(inputs))}" if len(inputs) == 1 else "inputs"
            raise InvalidInputError(
                f"{name}: output {out!r} is not finite for these inputs; they lie outside "
                "what the model can compute (see the model's domain in its metadata)",
                field,
            )
