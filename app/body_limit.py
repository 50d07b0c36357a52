"""Refuse request bodies over MAX_BODY_BYTES before they are read into memory, or that arrive
too slowly."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.codecs import OrjsonResponse
from app.errors import BadRequestError, PayloadTooLargeError, RequestTimeoutError


class BodyLimitMiddleware:
    """A declared Content-Length over the limit is answered 413 at once; a chunked body is
    counted as it arrives and cut off with 413 as soon as it passes the limit. A body not
    complete within `timeout_s` of the request's start is answered 408 and its connection
    closed: a client trickling bytes would otherwise hold a worker's memory and a connection
    for as long as it likes."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

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
        complete = False
        deadline = asyncio.get_running_loop().time() + self.timeout_s

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # after the body, only a disconnect can come: no deadline on it
                return await receive()
            left = deadline - asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout(max(left, 0.0)):
                    message = await receive()
            except TimeoutError:
                # Raised inside the endpoint's body read, like the 413 below, so the app's
                # error handler answers it like any other domain error.
                raise RequestTimeoutError(
                    f"the request body did not arrive within {self.timeout_s:g} s", "body"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)
