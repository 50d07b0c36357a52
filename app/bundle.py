"""The fieldserve array bundle (FSA1): a small JSON header followed by raw arrays.

One format for two uses: the value of every cache entry (Redis or in-process) and the binary
answer of the domain routes (`Accept: application/x-fieldserve-arrays`). No pickle: a value
read back from a shared cache is parsed, never executed.

    bytes 0-3    magic  b"FSA\\x01"
    bytes 4-7    H, the header length, uint32 little-endian
    bytes 8..    H bytes of UTF-8 JSON, space-padded so that 8 + H is a multiple of 8:
                 {...any JSON fields..., "arrays": [{"name", "dtype", "shape", "offset"}, ...]}
    then         the arrays' bytes, C order, little-endian; array i starts at
                 8 + H + arrays[i].offset, and every offset is a multiple of 8

`dtype` is numpy's spelling ("<f4" float32, "<f8" float64, "<i8" int64, ...). An array
nested in the JSON object is named by its dotted path ("grid.index").
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

MAGIC = b"FSA\x01"
MEDIA_TYPE = "application/x-fieldserve-arrays"
_ALIGN = 8
_PREFIX = struct.Struct("<4sI")
# Numeric dtypes only: object or string arrays have no raw-bytes meaning.
DTYPES = frozenset(
    {"<f2", "<f4", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "|b1"}
)


class BundleError(ValueError):
    """Bytes that are not a well-formed bundle (a corrupt or foreign cache value)."""


@dataclass(frozen=True)
class Bundle:
    meta: Mapping[str, Any] = field(default_factory=dict)
    arrays: Mapping[str, NDArray[Any]] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


def _little_endian(array: NDArray[Any]) -> NDArray[Any]:
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array


def _pad(n: int) -> int:
    return -n % _ALIGN


def encode(bundle: Bundle) -> bytes:
    """Header + arrays in one buffer (a single copy of each array)."""
    entries: list[dict[str, Any]] = []
    parts: list[Any] = []
    offset = 0
    for name, raw in bundle.arrays.items():
        array = _little_endian(raw)
        if array.dtype.str not in DTYPES:
            raise BundleError(f"array {name!r} has dtype {array.dtype}, not a numeric one")
        entries.append(
            {"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
        )
        parts.append(array.reshape(-1).view(np.uint8).data)
        offset += array.nbytes
        pad = _pad(offset)
        if pad:
            parts.append(b"\0" * pad)
            offset += pad
    header = orjson.dumps({**bundle.meta, "arrays": entries}, option=orjson.OPT_SERIALIZE_NUMPY)
    header += b" " * _pad(_PREFIX.size + len(header))
    return b"".join([_PREFIX.pack(MAGIC, len(header)), header, *parts])


def decode(data: bytes | memoryview) -> Bundle:
    """Bundle from bytes; arrays are read-only views into `data` (no copy)."""
    if len(data) < _PREFIX.size:
        raise BundleError("too short to be a bundle")
    magic, length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise BundleError("not a bundle (bad magic)")
    start = _PREFIX.size + length
    if start > len(data):
        raise BundleError("header runs past the end")
    try:
        meta = orjson.loads(bytes(data[_PREFIX.size : start]))
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"header is not JSON: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("arrays"), list):
        raise BundleError("header has no 'arrays' list")
    arrays: dict[str, NDArray[Any]] = {}
    for entry in meta.pop("arrays"):
        try:
            name, dtype, shape, offset = (entry[k] for k in ("name", "dtype", "shape", "offset"))
        except (KeyError, TypeError):
            raise BundleError(f"array entry {entry!r} is incomplete") from None
        if not (
            isinstance(name, str)
            and dtype in DTYPES
            and isinstance(shape, list)
            and all(isinstance(n, int) and n >= 0 for n in shape)
            and isinstance(offset, int)
            and offset >= 0
        ):
            raise BundleError(f"array entry {entry!r} is malformed")
        count = math.prod(shape)
        size = count * np.dtype(dtype).itemsize
        if start + offset + size > len(data):
            raise BundleError(f"array {name!r} runs past the end")
        arrays[name] = np.frombuffer(data, dtype, count, start + offset).reshape(shape)
    return Bundle(meta, arrays)


def split(fields: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON part, arrays by dotted path): numpy arrays anywhere in nested dicts move out."""
    rest: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    for key, value in fields.items():
        path = f"{prefix}{key}"
        if isinstance(value, np.ndarray):
            arrays[path] = value
        elif isinstance(value, Mapping):
            inner, inner_arrays = split(value, f"{path}.")
            rest[key] = inner
            arrays.update(inner_arrays)
        else:
            rest[key] = value
    return rest, arrays


def join(rest: Mapping[str, Any], arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `split`."""
    out: dict[str, Any] = {
        k: (join(v, {}) if isinstance(v, Mapping) else v) for k, v in rest.items()
    }
    for path, array in arrays.items():
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = array
    return out
