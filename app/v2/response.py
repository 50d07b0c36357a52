"""Writing a V2 inference response: JSON tensors, or a JSON header plus binary tensors.

An output goes binary when its `parameters.binary_data` asks (or, when it does not say, the
request's `parameters.binary_data_output`). Binary outputs follow the JSON header in output
order and the response carries `Inference-Header-Content-Length`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from starlette.responses import Response

from app.codecs import encode_json
from app.v2.datatypes import v2_datatype


def infer_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Sequence[tuple[str, NDArray[Any], bool]],
    parameters: Mapping[str, str | int | bool],
) -> Response:
    described: list[dict[str, Any]] = []
    blobs: list[Any] = []
    for name, raw, binary in outputs:
        array = np.ascontiguousarray(raw)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        entry: dict[str, Any] = {
            "name": name,
            "datatype": v2_datatype(array.dtype),
            "shape": list(array.shape),
        }
        if binary:
            entry["parameters"] = {"binary_data_size": array.nbytes}
            blobs.append(array.reshape(-1).view(np.uint8).data)
        else:
            entry["data"] = array.reshape(-1)  # orjson writes numpy directly: no Python floats
        described.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    doc["outputs"] = described
    header = encode_json(doc)
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(
        b"".join([header, *blobs]),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
