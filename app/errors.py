"""Domain errors and the one place that turns them into HTTP responses.

Every client-facing error body has the same shape, `{"error": str, "field": str | null}`
(plus `details` for multi-problem validation failures), whatever raised it: our own checks,
pydantic, FastAPI's parameter parsing or Starlette's routing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.codecs import OrjsonResponse

log = logging.getLogger("fieldserve.errors")


class FieldserveError(Exception):
    """A request the service cannot answer; `field` names the part of the request at fault."""

    status_code = 400
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self, message: str, field: str | None = None, details: Sequence[dict[str, Any]] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = tuple(details)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "field": self.field}
        if self.details:
            body["details"] = list(self.details)
        return body


class BadRequestError(FieldserveError):
    """The body is not something we can parse at all (not JSON, not an object)."""

    status_code = 400


class InvalidInputError(FieldserveError):
    """Parsed, but a value is wrong: type, dimension, NaN, inside a wall, too many points."""

    status_code = 422


class UnauthorizedError(FieldserveError):
    """No key, or a key that is not one of the configured ones."""

    status_code = 401


class ForbiddenError(FieldserveError):
    """A valid key without the right to this route (an API key on an admin route)."""

    status_code = 403


class NotFoundError(FieldserveError):
    status_code = 404


class NotAcceptableError(FieldserveError):
    """The Accept header names no format the route can answer in."""

    status_code = 406


class RequestTimeoutError(FieldserveError):
    """The body did not arrive in time: answered, and the connection closed (the rest of the
    body may still be on its way)."""

    status_code = 408
    headers: ClassVar[Mapping[str, str]] = {"connection": "close"}


class PayloadTooLargeError(FieldserveError):
    status_code = 413


class UnsupportedMediaTypeError(FieldserveError):
    """A Content-Encoding the service cannot decode."""

    status_code = 415


class ServiceUnavailableError(FieldserveError):
    """More requests in flight than the service takes at once: retry shortly."""

    status_code = 503
    headers: ClassVar[Mapping[str, str]] = {"retry-after": "1"}


class ManifestError(Exception):
    """A model version on disk cannot be served; the message becomes its refusal reason."""


def _parts(loc: Sequence[int | str]) -> list[int | str]:
    # Tags of our discriminated unions start with '#' (see app/schemas.py): pydantic's
    # bookkeeping, not part of the client's request, so they are dropped from locations.
    return [p for p in loc if not (isinstance(p, str) and p.startswith("#"))]


def _dotted(parts: Sequence[int | str]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# Problems listed in an error's details: a 3 MB body with 200,000 unknown keys was answered
# with 11.7 MB of details, one per key.
MAX_DETAILS = 20


def _validation_error(errors: Sequence[Any], skip: int = 0) -> InvalidInputError:
    """pydantic-style errors -> one 422 whose `field` is the first offending top-level key."""
    located = [(_parts(e["loc"][skip:]), str(e["msg"])) for e in errors[:MAX_DETAILS]]
    details = [{"loc": _dotted(parts) or "body", "error": msg} for parts, msg in located]
    if not located:
        return InvalidInputError("invalid request", "body")
    if len(errors) > MAX_DETAILS:
        details.append({"loc": "body", "error": f"and {len(errors) - MAX_DETAILS} more problems"})
    parts, _ = located[0]
    field = str(parts[0]) if parts else "body"
    return InvalidInputError(f"{details[0]['loc']}: {details[0]['error']}", field, details)


def invalid_input(exc: ValidationError) -> InvalidInputError:
    return _validation_error(exc.errors(include_url=False, include_input=False))


def _domain_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, FieldserveError)
    return OrjsonResponse(exc.body(), status_code=exc.status_code, headers=dict(exc.headers))


def _request_validation_error(request: Request, exc: Exception) -> Response:
    # FastAPI's own parameter checks (path, query): answered like ours. The first element of
    # each location ('path', 'query', ...) says where the field is, not which it is.
    assert isinstance(exc, RequestValidationError)
    return _domain_error(request, _validation_error(exc.errors(), skip=1))


def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return OrjsonResponse(
        {"error": str(exc.detail), "field": None}, status_code=exc.status_code, headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FieldserveError, _domain_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
