"""Getting requests off the wire and arrays onto it.

JSON goes out through orjson on the raw numpy arrays (OPT_SERIALIZE_NUMPY): no Python lists
of floats are ever built for a field. The binary codecs of a later issue belong here too.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import JSONResponse

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def encode_json(content: Any) -> bytes:
    return orjson.dumps(content, option=_DUMPS_OPTIONS)


class OrjsonResponse(JSONResponse):
    # A JSONResponse to FastAPI, so the OpenAPI page shows each route's model, not a string.
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode_json(content)


class JsonDecodeError(ValueError):
    pass


def decode_json(body: bytes) -> Any:
    """orjson first (fast); the stdlib as a fallback so that NaN, Infinity and 1e999 parse.

    Those are not JSON, but clients send them (Python's json.dumps writes NaN); parsing them
    lets validation answer "source[1] is not a finite number" instead of "invalid JSON".
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as fast_error:
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise JsonDecodeError(str(fast_error)) from None
