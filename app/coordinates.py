"""Big coordinate arrays in request bodies: checked and converted by numpy in one pass.

pydantic would validate each float as a Python object and then numpy would convert the list
again. Each type carries the JSON schema it is documented with on the OpenAPI page.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError


def _float_array(ndim: int) -> PlainValidator:
    def validate(value: Any) -> NDArray[np.float64]:
        what = "a non-empty list of numbers" if ndim == 1 else "a non-empty list of points"
        if not isinstance(value, list) or not value:
            raise PydanticCustomError("array_type", f"must be {what}")
        try:
            raw = np.asarray(value)
        except (ValueError, TypeError, OverflowError):
            ragged = "must be a flat list" if ndim == 1 else "points differ in length"
            raise PydanticCustomError("array_shape", ragged) from None
        if raw.ndim != ndim or raw.size == 0:
            raise PydanticCustomError("array_shape", f"must be {what}")
        # Kind 'b' (booleans), 'U' (strings) and 'O' (ragged or mixed) are not coordinates.
        if raw.dtype.kind not in "iuf":
            raise PydanticCustomError("array_type", "must hold numbers only")
        arr = raw.astype(np.float64, copy=False)
        bad = ~np.isfinite(arr)
        if bad.any():
            index = "".join(f"[{int(i)}]" for i in np.argwhere(bad)[0])
            raise PydanticCustomError("finite_number", f"element {index} is not a finite number")
        boolean = _boolean_at(value, arr)
        if boolean is not None:
            raise PydanticCustomError("array_type", f"element {boolean} is a boolean, not a number")
        return arr

    return PlainValidator(validate)


# Beyond this many 0s and 1s, one pass over the elements' types in C beats indexing each.
_FEW = 64


def _boolean_at(value: list[Any], arr: NDArray[np.float64]) -> str | None:
    """Where a JSON true or false sits among numbers (numpy made it 1 or 0), or None.

    Only elements equal to 0 or 1 can be one, so the Python objects are looked at only when
    there are such elements: the arrays are the big part of a request."""
    candidates = np.argwhere((arr == 0) | (arr == 1))
    if len(candidates) > _FEW:
        flat = itertools.chain.from_iterable(value) if arr.ndim == 2 else value
        if bool not in map(type, flat):
            return None
    for index in candidates:
        item: Any = value
        for i in index:
            item = item[int(i)]
        if isinstance(item, bool):
            return "".join(f"[{int(i)}]" for i in index)
    return None


def _array_schema(
    ndim: int, coordinates: tuple[int, int] | None = None, min_points: int = 1
) -> WithJsonSchema:
    """The documented shape. The validator above takes any width (the family names the field
    when a point's width is not its model's), the schema says which widths a model can have."""
    schema: dict[str, Any] = {"type": "number"}
    if coordinates is not None:
        lo, hi = coordinates
        schema = {"type": "array", "items": schema, "minItems": lo, "maxItems": hi}
        ndim -= 1
    for _ in range(ndim):
        schema = {"type": "array", "items": schema, "minItems": min_points}
    return WithJsonSchema(schema)


# Acoustic rooms are 2-D or 3-D; airfoils are 2-D.
RoomPoints = Annotated[NDArray[np.float64], _float_array(2), _array_schema(2, (2, 3))]
PlanePoints = Annotated[NDArray[np.float64], _float_array(2), _array_schema(2, (2, 2))]
# A closed polyline needs three distinct points (geometry.airfoils.check_polylines).
Polyline = Annotated[NDArray[np.float64], _float_array(2), _array_schema(2, (2, 2), 3)]
ValueArray = Annotated[NDArray[np.float64], _float_array(1), _array_schema(1)]
