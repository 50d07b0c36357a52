"""A cap on the requests in flight: beyond it, 503 with Retry-After, at once.

Work queued behind a saturated service only grows everyone's latency and its memory; a quick
503 tells a client (or a load balancer) to go elsewhere or come back. Health probes and the
metrics page are never refused: they must answer fast exactly when the service is busy.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth import route_path
from app.codecs import OrjsonResponse
from app.errors import ServiceUnavailableError

EXEMPT = ("/health/", "/v2/health/", "/metrics")


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, max_requests: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope).startswith(EXEMPT):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_requests:
            error = ServiceUnavailableError(
                f"{self.in_flight} requests are in flight, the most this service takes at "
                "once (FIELDSERVE_MAX_CONCURRENT_REQUESTS); retry shortly"
            )
            response = OrjsonResponse(error.body(), error.status_code, dict(error.headers))
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
