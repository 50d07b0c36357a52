"""/docs and /redoc work offline: every asset they load is served by the app itself."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

# What a page loads: src/href attributes, and URLs in its inline script.
_REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)|url:\s*["']([^"']+)""")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    empty = tmp_path_factory.mktemp("no-models")
    with TestClient(create_app(Settings(model_dir=empty))) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_name_no_other_host_and_their_assets_are_served(
    client: TestClient, page: str
) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text and "https://" not in r.text
    loaded = [a or b for a, b in _REFERENCE.findall(r.text)]
    assert "/openapi.json" in loaded and len(loaded) >= 3, loaded
    for path in loaded:
        asset = client.get(path)
        assert asset.status_code == 200, path
        assert len(asset.content) > 1000, path
