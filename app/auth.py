"""API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

    FIELDSERVE_API_KEYS    set: every route but health and the page (/, /static/) needs a key
                           (an API or an admin key)
    FIELDSERVE_ADMIN_KEYS  keys for /v1/admin/*; once either setting is set, admin routes take
                           only these (none configured = admin routes refused for everyone)
    neither set            open

Health probes (/health/*, /v2/health/*) are always open; once keys are set, /health/ready tells
a caller without a valid key only whether the service is ready (its details name hosts and
paths). Keys are compared in constant time (hmac.compare_digest over sha256 digests, against
every configured key, no early exit) and never logged: a refusal is logged with its reason and
the request id only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.codecs import OrjsonResponse
from app.errors import FieldserveError, ForbiddenError, UnauthorizedError

log = logging.getLogger("fieldserve.auth")

OPEN_PREFIXES = ("/health/", "/v2/health/", "/static/")
PAGE = "/"  # the page and its assets (app/page.py) hold no data; its API calls send a key
READY = "/health/ready"  # open, but with details only for a valid key
ADMIN_PREFIX = "/v1/admin"
FIELD = "authorization"


def route_path(scope: Scope) -> str:
    """The path the router matches: without the root_path a proxy may mount the app under
    (what the checks below must see, or a prefixed admin path would pass as an ordinary one)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _known(candidate: bytes, keys: Iterable[bytes]) -> bool:
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate, key)
    return found


def _presented(headers: dict[bytes, bytes]) -> tuple[list[str], str | None]:
    """Keys sent, and a complaint about a malformed Authorization header if there is one."""
    keys: list[str] = []
    problem = None
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            keys.append(token.strip())
        else:
            problem = "the Authorization header must be 'Bearer <key>'"
    api_key = headers.get(b"x-api-key")
    if api_key is not None and api_key.strip():
        keys.append(api_key.decode("latin-1").strip())
    return keys, problem


class AuthMiddleware:
    def __init__(self, app: ASGIApp, api_keys: frozenset[str], admin_keys: frozenset[str]) -> None:
        self.app = app
        self.enabled = bool(api_keys or admin_keys)
        self.api_required = bool(api_keys)
        self._admin = tuple(_digest(k) for k in sorted(admin_keys))
        self._any = tuple(_digest(k) for k in sorted(api_keys | admin_keys))

    def check(self, path: str, headers: dict[bytes, bytes]) -> FieldserveError | None:
        """None when the request may go on, else the refusal to answer."""
        if path == PAGE or path.startswith(OPEN_PREFIXES):
            return None
        admin = path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")
        if not admin and not self.api_required:
            return None
        keys, problem = _presented(headers)
        if not keys:
            return UnauthorizedError(
                problem
                or "this route needs an API key: send 'Authorization: Bearer <key>' or "
                "'X-API-Key: <key>'",
                FIELD,
            )
        digests = [_digest(k) for k in keys]
        if admin:
            if any(_known(d, self._admin) for d in digests):
                return None
            if not self._admin:
                return ForbiddenError(
                    "admin routes are disabled: no FIELDSERVE_ADMIN_KEYS is configured", FIELD
                )
            if any(_known(d, self._any) for d in digests):
                return ForbiddenError(
                    "this route needs an admin key (FIELDSERVE_ADMIN_KEYS); "
                    "the key sent is an API key",
                    FIELD,
                )
            return UnauthorizedError("the key sent is not a valid admin key", FIELD)
        if any(_known(d, self._any) for d in digests):
            return None
        return UnauthorizedError("the API key sent is not valid", FIELD)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, headers = route_path(scope), dict(scope["headers"])
        if path == READY:
            # Open, but what it tells depends on who asks: its details name hosts and paths.
            keys, _ = _presented(headers)
            known = any(_known(_digest(k), self._any) for k in keys)
            scope.setdefault("state", {})["authenticated"] = known
        refusal = self.check(path, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        log.info(
            "refused %s %s: %s",
            scope["method"],
            scope["path"],
            refusal.message,
        )
        headers = {"WWW-Authenticate": 'Bearer realm="fieldserve"'}
        response = OrjsonResponse(
            refusal.body(),
            status_code=refusal.status_code,
            headers=headers if refusal.status_code == 401 else None,
        )
        await response(scope, receive, send)
