"""The HTTP server: uvicorn with a connection cap and a deadline on every request head.

uvicorn bounds idle keep-alive connections but not one that trickles a request head a byte at
a time (each byte restarts its keep-alive timer), nor how many connections are open: measured,
a body sent at 1 byte/s and 200 half-sent heads were held for a whole minute, bounded only by
the open-files limit. What arrives before the head is complete never reaches the app, so it is
guarded here; the body's deadline and the cap on requests in flight are app middleware
(app/guards.py), which can answer in the JSON error shape with the request id.
"""

from __future__ import annotations

import asyncio

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.admission import EXEMPT
from app.settings import Settings

RETRY_AFTER_S = 1
# Connections past the cap that may still send a request head: a health probe among them is
# answered (the others get the 503 once their head is read), so probes pass while the
# service is full; past the headroom too, a connection is refused before it is read.
PROBE_HEADROOM = 16


def raw_response(status: int, reason: str, message: str, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 answer in the JSON error shape, for when no app has the request."""
    body = orjson.dumps({"error": message, "field": None})
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def guarded_protocol(head_timeout_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol plus: beyond `max_connections` open connections a request
    other than a health probe is answered 503 with Retry-After and its connection closed (and
    any connection past the probe headroom, unread); a request head not complete within
    `head_timeout_s` of its first byte (or of the connection) is answered 408 and closed."""
    too_many = raw_response(
        503,
        "Service Unavailable",
        f"more than {max_connections} connections are open; retry shortly",
        RETRY_AFTER_S,
    )
    too_slow = raw_response(
        408,
        "Request Timeout",
        f"the request head did not arrive within {head_timeout_s:g} s",
    )

    class GuardedProtocol(HttpToolsProtocol):
        _head_deadline: asyncio.TimerHandle | None = None
        _refused = False  # answered 503 from its head: the rest of what it sends is ignored

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections + PROBE_HEADROOM:
                transport.write(too_many)
                transport.close()
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._head_deadline is None:  # a keep-alive connection's next request
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            path = self.url.partition(b"?")[0].decode("latin-1")
            if len(self.connections) > max_connections and not path.startswith(EXEMPT):
                self._refused = True
                self.transport.write(too_many)
                self.transport.close()
                return
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._refused:
                super().on_message_complete()

        def _arm(self) -> None:
            self._head_deadline = self.loop.call_later(head_timeout_s, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _head_too_slow(self) -> None:
            self._head_deadline = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(too_slow)
            self.transport.close()

    return GuardedProtocol


def config(app: object, settings: Settings, **overrides: object) -> uvicorn.Config:
    """The uvicorn configuration the service runs with (`python -m app`, tests, benchmarks)."""
    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": None,  # keep the logging configured by app.logs (JSON lines, request ids)
        "access_log": False,  # app.access writes one line per request, with its id
        "http": guarded_protocol(settings.head_timeout_s, settings.max_connections),
        "timeout_keep_alive": settings.keep_alive_s,
        **overrides,
    }
    return uvicorn.Config(app, **options)  # type: ignore[arg-type]
