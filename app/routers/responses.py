"""The error answers each route documents on the OpenAPI page, all in the one error shape.

Middleware answers some of them before any route runs (401/403 from app.auth, 413 from
app.body_limit, 500 from app.access), so the routes list them here rather than raise them.
"""

from __future__ import annotations

from typing import Any

from app.schemas import ErrorBody

_REQUEST_ID = {
    "X-Request-ID": {
        "description": "The request's id (the client's, when it sent a well-formed one).",
        "schema": {"type": "string"},
    }
}
_DESCRIPTIONS = {
    400: "The body cannot be read: not JSON, or not a JSON object.",
    401: "API keys are configured (FIELDSERVE_API_KEYS) and the request has no valid one.",
    403: "A valid key without the right to this route: an API key on an admin route, or no "
    "FIELDSERVE_ADMIN_KEYS configured.",
    404: "No such model or version is served.",
    406: "The Accept header names no format this route answers in.",
    408: "The body did not arrive within FIELDSERVE_BODY_TIMEOUT_S; the connection is closed.",
    413: "The body is over FIELDSERVE_MAX_BODY_BYTES.",
    415: "A Content-Encoding the service cannot decode.",
    422: "A value is invalid; `field` names it and `details` lists every problem found.",
    500: "An unexpected error (a bug), logged with this answer's X-Request-ID.",
    503: "More requests in flight than FIELDSERVE_MAX_CONCURRENT_REQUESTS, or connections than "
    "FIELDSERVE_MAX_CONNECTIONS: retry after Retry-After seconds.",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'Bearer realm="fieldserve"',
            "schema": {"type": "string"},
        }
    },
    500: _REQUEST_ID,
    503: {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
}


def errors(*codes: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these statuses (a code, or a code with its own description),
    and 500: any route can meet a bug, answered by the last-resort handler."""
    out: dict[int | str, dict[str, Any]] = {}
    for item in (*codes, 500):
        code, text = item if isinstance(item, tuple) else (item, _DESCRIPTIONS[item])
        entry: dict[str, Any] = {"model": ErrorBody, "description": text}
        if code in _HEADERS:
            entry["headers"] = _HEADERS[code]
        out[code] = entry
    return out


# Every route but the health probes and /metrics: behind the key check (app.auth) and the cap
# on requests in flight (app.admission).
GUARDED = (401, 503)
# Every route that reads a body: its size limit and its deadline (app.body_limit).
BODY = (408, 413)
# A path parameter FastAPI could not parse would be answered in the error shape, not FastAPI's
# own: declared so the page does not show FastAPI's `detail` body for these routes.
PARAMS = (422,)
