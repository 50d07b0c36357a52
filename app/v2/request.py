"""Reading a V2 inference request: JSON tensors, or JSON plus the binary data extension.

With `Inference-Header-Content-Length: n` the first n bytes of the body are the JSON request
and the rest holds the binary tensors, in input order, each input saying its byte count in
`parameters.binary_data_size`. Without it the whole body is JSON and every input has `data`
(flat or nested, row-major). Binary inputs become numpy views of the body (no copy).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.codecs import JsonDecodeError, decode_json
from app.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError
from app.v2.datatypes import JSON_KINDS, NUMPY

HEADER_LENGTH = "inference-header-content-length"


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None  # None: the request's binary_data_output decides


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, NDArray[Any]]
    datatypes: dict[str, str]
    outputs: tuple[RequestedOutput, ...] | None
    binary_output: bool


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Content-Encoding gzip or deflate (tritonclient's request_compression_algorithm), with
    the decompressed size held to the body limit."""
    if not encoding or encoding.strip().lower() == "identity":
        return body
    kind = encoding.strip().lower()
    if kind not in ("gzip", "deflate"):
        raise UnsupportedMediaTypeError(
            f"Content-Encoding {encoding!r} is not supported (gzip, deflate)", "content-encoding"
        )
    inflater = zlib.decompressobj(wbits=31 if kind == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequestError(f"the body is not valid {kind}: {exc}", "content-encoding") from None
    if len(out) > limit:
        raise PayloadTooLargeError(
            f"the decompressed request body is larger than {limit} bytes", "body"
        )
    return out


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestError(f"{field} must be a JSON object", field)
    return value


def _flag(params: dict[str, Any], key: str, field: str) -> bool | None:
    value = params.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequestError(f"{field}.{key} must be true or false", f"{field}.{key}")
    return value


# A dimension beyond int32 is no array this service could hold, even beside a zero one
# (numpy refuses such shapes, and they must not reach it as an unexpected error).
MAX_DIM = 2**31 - 1
MAX_RANK = 8


def _shape(value: Any, field: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_DIM for n in value
    ):
        raise BadRequestError(f"{field} must be a list of integers from 0 to {MAX_DIM:,}", field)
    if len(value) > MAX_RANK:
        raise BadRequestError(f"{field} has {len(value)} dimensions, at most {MAX_RANK}", field)
    return tuple(value)


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], field: str) -> NDArray[Any]:
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise BadRequestError(f"{field} is ragged or not numeric", field) from None
    if raw.size and raw.dtype.kind not in JSON_KINDS[datatype]:
        raise BadRequestError(f"{field} must hold {datatype} values", field)
    if raw.size != math.prod(shape):
        raise BadRequestError(
            f"{field} holds {raw.size} values, the shape {list(shape)} needs {math.prod(shape)}",
            field,
        )
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are refused later
            return raw.astype(NUMPY[datatype]).reshape(shape)
    except (ValueError, OverflowError):
        raise BadRequestError(f"{field} does not fit {datatype}", field) from None


def parse(body: bytes, header_length: str | None) -> InferRequest:
    if header_length is None:
        head, binary = body, memoryview(b"")
    else:
        try:
            n = int(header_length)
        except ValueError:
            n = -1
        if not 0 <= n <= len(body):
            raise BadRequestError(
                f"Inference-Header-Content-Length {header_length!r} is not a length within the "
                f"{len(body)}-byte body",
                HEADER_LENGTH,
            )
        head, binary = body[:n], memoryview(body)[n:]
    try:
        doc = _object(decode_json(head), "body")
    except JsonDecodeError as exc:
        raise BadRequestError(f"the inference request is not valid JSON: {exc}", "body") from None

    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequestError("inputs must be a non-empty list of tensors", "inputs")
    inputs: dict[str, NDArray[Any]] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for i, raw in enumerate(raw_inputs):
        field = f"inputs[{i}]"
        tensor = _object(raw, field)
        name = tensor.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequestError(f"{field}.name must be a non-empty string", f"{field}.name")
        if name in inputs:
            raise BadRequestError(f"input {name!r} is given twice", f"{field}.name")
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str) or datatype not in NUMPY:
            raise BadRequestError(
                f"{field}.datatype {datatype!r} is not served (one of {', '.join(NUMPY)})",
                f"{field}.datatype",
            )
        shape = _shape(tensor.get("shape"), f"{field}.shape")
        params = _object(tensor.get("parameters", {}), f"{field}.parameters")
        size = params.get("binary_data_size")
        if size is None:
            if "data" not in tensor:
                raise BadRequestError(
                    f"input {name!r} has neither data nor parameters.binary_data_size",
                    f"{field}.data",
                )
            array = _from_json(tensor["data"], datatype, shape, f"{field}.data")
        else:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise BadRequestError(
                    f"{field}.parameters.binary_data_size must be a byte count",
                    f"{field}.parameters",
                )
            if "data" in tensor:
                raise BadRequestError(
                    f"input {name!r} has both data and binary_data_size", f"{field}.data"
                )
            itemsize = np.dtype(NUMPY[datatype]).itemsize
            if size != math.prod(shape) * itemsize:
                raise BadRequestError(
                    f"input {name!r}: binary_data_size {size} is not {list(shape)} x {itemsize} "
                    f"bytes of {datatype}",
                    f"{field}.parameters",
                )
            if offset + size > len(binary):
                raise BadRequestError(
                    f"input {name!r} runs past the end of the binary data", f"{field}.parameters"
                )
            array = np.frombuffer(binary, NUMPY[datatype], math.prod(shape), offset).reshape(shape)
            offset += size
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise BadRequestError(f"input {name!r} holds NaN or infinity", f"{field}.data")
        inputs[name] = array
        datatypes[name] = datatype
    if offset != len(binary):
        raise BadRequestError(
            f"the body has {len(binary)} bytes of binary data; the inputs declare {offset}",
            HEADER_LENGTH,
        )

    params = _object(doc.get("parameters", {}), "parameters")
    binary_output = bool(_flag(params, "binary_data_output", "parameters"))
    outputs: tuple[RequestedOutput, ...] | None = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise BadRequestError("outputs must be a list", "outputs")
        requested = []
        for i, raw in enumerate(doc["outputs"]):
            field = f"outputs[{i}]"
            out = _object(raw, field)
            if not isinstance(out.get("name"), str):
                raise BadRequestError(f"{field}.name must be a string", f"{field}.name")
            out_params = _object(out.get("parameters", {}), f"{field}.parameters")
            requested.append(
                RequestedOutput(
                    out["name"], _flag(out_params, "binary_data", f"{field}.parameters")
                )
            )
        outputs = tuple(requested)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError("id must be a string", "id")
    return InferRequest(request_id, inputs, datatypes, outputs, binary_output)
