"""Per request: the request id (X-Request-ID in and out), one access log line, the metrics.

A pure ASGI middleware (no per-request Request object or task): it is on every hot path.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import orjson
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import route_path
from app.logs import request_id
from app.metrics import Metrics

log = logging.getLogger("fieldserve.access")

HEADER = b"x-request-id"
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
UNMATCHED = "unmatched"
NO_MODEL = "-"


def _templates(app: Any) -> list[tuple[re.Pattern[str], str]]:
    """Every route's path template with its pattern, built once per app from the OpenAPI
    paths plus the plain routes (docs)."""
    state = getattr(app, "state", None)
    cached: list[tuple[re.Pattern[str], str]] | None = getattr(state, "route_templates", None)
    if cached is None:
        try:
            paths = list(app.openapi().get("paths", {}))
        except Exception:  # never let a label cost a request
            paths = []
        paths += [
            r.path for r in getattr(app, "routes", ()) if isinstance(getattr(r, "path", None), str)
        ]
        cached = [(compile_path(p)[0], p) for p in dict.fromkeys(paths)]
        if state is not None:
            state.route_templates = cached
    return cached


def _route_template(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The route's path template and path parameters. Requests stopped before routing (auth,
    body limit) are matched here, so they are counted under their route too."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", UNMATCHED)), scope.get("path_params", {})
    for pattern, template in _templates(scope.get("app")):
        found = pattern.fullmatch(route_path(scope))
        if found is not None:
            return template, found.groupdict()
    return UNMATCHED, {}


def _model_label(scope: Scope, params: dict[str, Any]) -> str:
    """A served model's name (or V2 name), else "-": clients cannot grow the label set."""
    name = params.get("name")
    if not isinstance(name, str):
        return NO_MODEL
    repository = getattr(getattr(scope.get("app"), "state", None), "repository", None)
    models = repository.snapshot.models if repository is not None else {}
    if name in models or name.rpartition(".")[0] in models:
        return name
    return NO_MODEL


class AccessMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        sent = dict(scope["headers"]).get(HEADER)
        rid = sent.decode() if sent and _CLIENT_ID.fullmatch(sent) else uuid.uuid4().hex
        token = request_id.set(rid)
        status, started = 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", ()), (HEADER, rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # The last resort: what escaped every handler is a bug. Logged with its traceback
            # and the request id, answered in the error shape (not Starlette's plain text).
            log.exception("unhandled error", extra={"path": scope["path"]})
            if started:
                raise
            body = orjson.dumps(
                {"error": "internal error, logged with this request's id", "field": None}
            )
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_with_id({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - start
            route, params = _route_template(scope)
            model = _model_label(scope, params)
            self.metrics.request(route, model, scope["method"], status, elapsed)
            fields: dict[str, Any] = {
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1e3, 3),
            }
            if model != NO_MODEL:
                fields["model"] = model
            state = scope.get("state") or {}
            if "cache" in state:
                fields["cache"] = state["cache"]
            log.info("request", extra=fields)
            request_id.reset(token)
