"""Open Inference Protocol (KServe V2) bodies.

The metadata routes answer these models. The infer route reads its body raw (app/v2/request.py
parses it without a per-value pydantic pass) and writes its answer straight from numpy
(app/v2/response.py): for it, these models only describe the wire format on the OpenAPI page,
as close to what the parser refuses as a JSON schema can say.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from app.v2.request import MAX_DIM, MAX_RANK

# What app/v2/datatypes.NUMPY serves (tests/test_openapi.py keeps the two the same).
Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
]

# Nested lists of numbers or booleans, row-major; JSON schema cannot say "as many as the shape
# holds", the parser answers 400 naming the input when they differ.
_DATA: dict[str, Any] = {
    "type": "array",
    "items": {"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "array"}]},
    "description": "Values, flat or nested, row-major; as many as the shape holds.",
}


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool = Field(description="false (with 503) while no model is loaded.")


class RepositoryEntry(BaseModel):
    name: str = Field(description="'<model>' (end to end) or '<model>.<graph>'.")
    version: str
    state: Literal["READY"]


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1 for a free axis.")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: Literal["ensemble", "onnxruntime_onnx"]
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(BaseModel):
    name: str
    ready: bool


class ModelVersionReady(ModelReady):
    version: str


class _Wire(BaseModel):
    # Extra keys are ignored by the parser, as the protocol allows (Triton sends its own).
    model_config = ConfigDict(extra="allow")


class InputParameters(_Wire):
    binary_data_size: int = Field(
        ge=0, description="Byte count of this input in the binary part of the body."
    )


class RequestInput(_Wire):
    name: str = Field(min_length=1)
    shape: list[Annotated[int, Field(ge=0, le=MAX_DIM)]] = Field(max_length=MAX_RANK)
    datatype: Datatype
    # Not nullable: the parser refuses `"parameters": null` (400), so the schema does too.
    parameters: InputParameters | SkipJsonSchema[None] = None
    data: list[Any] | SkipJsonSchema[None] = Field(None, json_schema_extra=_DATA)


class OutputParameters(_Wire):
    binary_data: bool = Field(
        False, description="Send this output in the binary part of the answer."
    )


class RequestOutput(_Wire):
    name: str
    parameters: OutputParameters | SkipJsonSchema[None] = None


class RequestParameters(_Wire):
    binary_data_output: bool = Field(
        False, description="Binary for every output that does not say otherwise."
    )


class InferenceRequest(_Wire):
    """JSON inputs carry `data`; binary ones `parameters.binary_data_size` instead, their bytes
    following the JSON (whose length `Inference-Header-Content-Length` gives) in input order."""

    id: str | None = None
    parameters: RequestParameters | SkipJsonSchema[None] = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(None, description="All outputs when absent.")


class OutputBinaryParameters(BaseModel):
    binary_data_size: int


class ResponseOutput(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int]
    data: list[float | bool] | SkipJsonSchema[None] = Field(
        None, description="Flat, row-major; absent when the output is binary."
    )
    parameters: OutputBinaryParameters | SkipJsonSchema[None] = None


class ResponseParameters(BaseModel):
    cache: Literal["hit", "partial", "miss"]
    warnings: str | SkipJsonSchema[None] = Field(None, description="Out-of-domain inputs.")


class InferenceResponse(BaseModel):
    """With binary outputs the body is this JSON, then the outputs' bytes in output order;
    `Inference-Header-Content-Length` gives the JSON's length."""

    model_name: str
    model_version: str
    id: str | SkipJsonSchema[None] = None
    parameters: ResponseParameters | SkipJsonSchema[None] = None
    outputs: list[ResponseOutput]
