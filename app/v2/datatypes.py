"""V2 tensor datatypes and their numpy equivalents (BYTES and BF16 are not served)."""

from __future__ import annotations

import numpy as np

# V2 name -> numpy dtype string (little-endian, as the binary extension sends them).
NUMPY: dict[str, str] = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
_V2 = {np.dtype(v).str: k for k, v in NUMPY.items()}
# JSON numbers a datatype accepts: numpy kinds of np.asarray(data).
JSON_KINDS: dict[str, str] = {
    k: ("b" if k == "BOOL" else "bui" if k[0] in "UI" else "buif") for k in NUMPY
}


def v2_datatype(dtype: str | np.dtype[np.generic]) -> str:
    """'float32' (a manifest dtype) or a numpy dtype -> 'FP32'."""
    try:
        return _V2[np.dtype(dtype).newbyteorder("<").str]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"no V2 datatype for {dtype!r}") from exc
