"""The page at `/`: look at fields and listen to impulse responses, in any browser.

Plain HTML, CSS and JavaScript modules under app/static/, no build step and no third-party
code: what is in the folder is what the browser runs. Everything the page loads comes from
this app (the Content-Security-Policy says so to the browser too), so it works offline and
behind a firewall, like /docs.

The page and its assets hold no data, so they are open even when API keys are set
(app/auth.py); the page's own API calls carry the key the user types into it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.errors import NotFoundError

STATIC = Path(__file__).parent / "static"
ASSETS = "/static"  # app/auth.py leaves this prefix open
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The browser enforces what the module docstring promises: nothing from another origin, no
# inline script. blob: is for the off-screen canvases the page draws fields into.
_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'self'"
)


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


def _load() -> dict[str, _Asset]:
    """Every file under STATIC, read once: the set is fixed at start, so a request names a
    key of this dict, never a path on disk (no traversal to guard against)."""
    assets = {}
    for path in sorted(STATIC.rglob("*")):
        media_type = _TYPES.get(path.suffix)
        if path.is_file() and media_type is not None:
            body = path.read_bytes()
            etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
            assets[path.relative_to(STATIC).as_posix()] = _Asset(body, media_type, etag)
    return assets


_ASSETS = _load()

router = APIRouter(include_in_schema=False)


def _answer(asset: _Asset, request: Request) -> Response:
    # no-cache = revalidate each time: a new release is seen at once, an unchanged file costs
    # a 304.
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "Content-Security-Policy": _POLICY}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
async def page(request: Request) -> Response:
    found = _ASSETS.get("index.html")
    if found is None:  # an install without its package data (pyproject.toml)
        raise NotFoundError("this installation has no page (app/static is missing)", "path")
    return _answer(found, request)


@router.get(ASSETS + "/{name:path}")
async def asset(name: str, request: Request) -> Response:
    found = _ASSETS.get(name)
    if found is None:
        raise NotFoundError(f"the page has no asset {name[:200]!r}", "path")
    return _answer(found, request)
