"""Refuse request bodies over MAX_BODY_BYTES before they are read into memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.codecs import OrjsonResponse
from app.errors import BadRequestError, PayloadTooLargeError


class BodyLimitMiddleware:
    """A declared Content-Length over the limit is answered 413 at once; a chunked body is
    counted as it arrives and cut off with 413 as soon as it passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"the request body is larger than {self.max_bytes} bytes", "body"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            error: BadRequestError | PayloadTooLargeError | None = None
            try:
                if int(declared) > self.max_bytes:
                    error = self._too_large()
            except ValueError:
                error = BadRequestError("the Content-Length header is not a number", "body")
            if error is not None:
                response = OrjsonResponse(error.body(), status_code=error.status_code)
                await response(scope, receive, send)
                return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the endpoint's body read, so the app's error handler
                    # answers it like any other domain error.
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)
