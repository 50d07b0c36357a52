"""The page at `/`, in a real browser over the shipped models, and its place in the API.

The browser is Debian's chromium driven by Playwright (`make chromium` installs it; `make
test` depends on that). Playwright cannot download its own browsers here, so the test launches
/usr/bin/chromium; without it the test fails saying so rather than skipping: the acceptance
of the page is this test.

Screenshots go to a temporary folder, or to FIELDSERVE_SCREENSHOTS when set:
`FIELDSERVE_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest -q tests/test_page.py`
refreshes the README's pictures (each run would otherwise rewrite committed files with new
latencies in them).
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, Response, sync_playwright

from app.families.acoustic_domain import AcousticDomain
from app.main import create_app
from app.page import STATIC
from app.settings import Settings
from geometry.airfoils import naca4, two_element
from geometry.voxels import encode_mask
from tests.helpers_serving import live_server

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
CHROMIUM = Path("/usr/bin/chromium")
KEY = "page-test-key"


# -- without a browser: the page in the API ------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    empty = tmp_path_factory.mktemp("no-models")
    settings = Settings(model_dir=empty, api_keys=frozenset({KEY}))
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_page_and_its_assets_are_open_but_the_api_still_needs_a_key(
    keyed: TestClient,
) -> None:
    page = keyed.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # The browser is told too: nothing from another origin, no inline script.
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(static/[^"]+)"', page.text)
    assert {"static/page.css", "static/js/main.js"} <= set(assets)
    for path in assets:
        r = keyed.get("/" + path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].split(";")[0] in ("text/css", "text/javascript")
        again = keyed.get("/" + path, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and not again.content
    assert keyed.get("/v1/models").status_code == 401
    assert keyed.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    # Only the page's own files: no path reaches outside app/static (or into it unlisted).
    for bad in ("/static/../main.py", "/static/%2e%2e/main.py", "/static/js", "/static/nope.js"):
        r = keyed.get(bad)
        assert r.status_code in (401, 404), bad
        assert "import" not in r.text
    # Open means the page's paths only: the rest of the API is not opened by a prefix.
    assert keyed.get("/static-not").status_code == 401


def test_the_page_is_not_in_the_openapi_document_and_names_no_other_host(
    keyed: TestClient,
) -> None:
    doc = keyed.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert "/" not in doc["paths"] and not any(p.startswith("/static") for p in doc["paths"])
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    assert len(files) >= 5
    for path in files:
        text = path.read_text()
        assert not re.search(r"https?://", text), f"{path} names another host"
        assert "import(" not in text  # no module fetched by a computed name
    # The dev extra's Playwright is what the test below drives; the app never imports it.
    assert "playwright" not in (ROOT / "app" / "page.py").read_text()


# -- in the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the page test needs Debian's chromium (`make chromium`, "
            "run by `make test`, installs it with apt-get)"
        )
    with sync_playwright() as playwright:
        # Audio may start without a gesture: the Listen click is one, but headless chromium
        # has no sound card, and the test asks only that the AudioContext runs.
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--autoplay-policy=no-user-gesture-required", "--mute-audio"],
        )
        try:
            yield launched
        finally:
            launched.close()


def wait_for(page: Page, expression: str, timeout_s: float = 30.0) -> Any:
    """Poll a JavaScript expression until truthy. (Playwright's wait_for_function evaluates a
    string in the page, which the page's Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            error = page.evaluate("document.getElementById('error').textContent")
            raise AssertionError(f"timed out waiting for {expression!r}; page error: {error!r}")
        time.sleep(0.05)


def distinct_colours(page: Page, canvas_id: str) -> int:
    return int(
        page.evaluate(
            """(id) => {
                const c = document.getElementById(id);
                const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                const seen = new Set();
                for (let i = 0; i < d.length; i += 4) {
                    seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
                }
                return seen.size;
            }""",
            canvas_id,
        )
    )


def answers(page: Page) -> dict[str, tuple[float, str]]:
    """The page's answers panel: label -> (latency in ms, cache state), each one checked."""
    rows = page.eval_on_selector_all(
        "#latency tr",
        "rs => rs.map(r => [r.cells[0].firstChild.textContent, r.cells[1].textContent,"
        " r.cells[2].textContent])",
    )
    out = {}
    for label, ms, cache in rows:
        match = re.fullmatch(r"([\d.]+) ms", ms)
        assert match and cache in ("miss", "partial", "hit"), (label, ms, cache)
        out[label] = (float(match.group(1)), cache)
    return out


def click_at(page: Page, point: list[float]) -> None:
    x, y = page.evaluate("(p) => window.fieldserve.view.clientOf(p)", point)
    page.mouse.click(x, y)


def wav_format(body: bytes) -> tuple[int, int, int, int]:
    """(channels, sample rate, bits, samples) of a PCM WAV."""
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE" and body[12:16] == b"fmt "
    _, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body, 20)
    assert body[36:40] == b"data"
    (size,) = struct.unpack_from("<I", body, 40)
    return channels, rate, bits, size // (channels * bits // 8)


def section_lift(series: list[dict[str, Any]]) -> float:
    """Cl of the main element from surface Cp: the integral of Cp_lower - Cp_upper over x."""
    upper = next(s for s in series if s["label"].endswith("upper"))
    lower = next(s for s in series if s["label"].endswith("lower"))
    x = np.linspace(max(upper["x"][0], lower["x"][0]), min(upper["x"][-1], lower["x"][-1]), 400)
    cp_u = np.interp(x, upper["x"], upper["y"])
    cp_l = np.interp(x, lower["x"], lower["y"])
    return float(np.trapezoid(cp_l - cp_u, x))


def test_the_pages_geometry_is_the_services(browser: Browser, tmp_path: Path) -> None:
    """The page draws rooms and airfoils and picks its receivers with JavaScript copies of
    geometry/: they must agree with what the service computes, or the page would ask for
    points in walls (422) and draw bodies where the model saw none."""
    rng = np.random.default_rng(0)
    rooms = []
    for manifest in sorted(MODELS.glob("acoustics-*/*/manifest.json")):
        domain = json.loads(manifest.read_text())["domain"]
        size = np.asarray(AcousticDomain.from_manifest(domain).room.size)
        points = rng.uniform(-0.05, 1.05, (2000, len(size))) * size  # some outside it
        rooms.append((domain, points))
    # A voxelised mesh scene (none is shipped): its packed mask is decoded in the browser.
    mask = rng.uniform(size=(12, 10, 8)) < 0.7
    voxels = {"kind": "voxels", "size": [2.4, 2.0, 1.6], "counts": [12, 10, 8]}
    voxels["air"] = encode_mask(mask)
    voxel_points = rng.uniform(0, 1, (2000, 3)) * voxels["size"]
    section = naca4("4412", 160)
    flap = two_element("2412", "0012", 0.3, 10.0, 0.02, 160, overlap=0.015)
    with live_server(create_app(Settings(model_dir=tmp_path))) as address:
        page = browser.new_page()
        page.goto(f"http://{address}/")
        got = page.evaluate(
            """async ([rooms, voxels, voxelPoints]) => {
                const g = await import("./static/js/geometry.js");
                const air = [];
                for (const [domain, points] of rooms) {
                    const room = await g.Room.fromDomain(domain);
                    air.push(points.map((p) => room.isAir(p)));
                }
                const vox = await g.Room.fromDomain({ scene: voxels });
                return {
                    air,
                    voxelAir: voxelPoints.map((p) => vox.isAir(p)),
                    naca: g.naca4(g.parseNaca("4412"), 160),
                    flap: g.twoElement(g.parseNaca("2412"), g.parseNaca("0012"), 0.3, 10, 0.02,
                                       160, 0.015),
                };
            }""",
            [[[d, p.tolist()] for d, p in rooms], voxels, voxel_points.tolist()],
        )
        page.close()
    for (domain, points), js in zip(rooms, got["air"], strict=True):
        service = AcousticDomain.from_manifest(domain).room.is_air(points)
        assert 0.1 < service.mean() < 1 and np.array_equal(js, service), domain.get("room")
    cells = np.floor(voxel_points / np.asarray(voxels["size"]) * mask.shape).astype(int)
    assert np.array_equal(got["voxelAir"], mask[tuple(cells.T)])
    np.testing.assert_allclose(got["naca"], section, atol=1e-12)
    for js_body, body in zip(got["flap"], flap, strict=True):
        np.testing.assert_allclose(js_body, body, atol=1e-9)


def test_the_page_shows_fields_plays_an_impulse_response_and_draws_airfoils(
    browser: Browser, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("FIELDSERVE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    settings = Settings(model_dir=MODELS, api_keys=frozenset({KEY}))
    with live_server(create_app(settings)) as address:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        failures: list[str] = []
        page.on("pageerror", lambda e: failures.append(str(e)))
        sent_keys: list[str | None] = []
        page.on(
            "request",
            lambda r: sent_keys.append(r.headers.get("authorization")) if "/v1/" in r.url else None,
        )
        page.goto(f"http://{address}/")

        # Keys are set: the page itself loads, and says in words that the API wants a key.
        wait_for(page, "!document.getElementById('error').hidden")
        assert "API key" in page.inner_text("#error")
        page.fill("#api-key", KEY)
        page.press("#api-key", "Enter")  # change event: stored, models fetched again
        page.locator("#api-key").blur()
        wait_for(page, "!!(window.fieldserve.view && window.fieldserve.view.frame2d)")
        assert page.evaluate("localStorage.getItem('fieldserve.apiKey')") == KEY
        names = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
        assert sorted(names) == sorted(p.name for p in MODELS.iterdir() if p.is_dir())
        model = page.input_value("#model")
        assert model.startswith("acoustics-")

        # A source inside furniture (or a wall) is refused by the service, shown in its words.
        if model == "acoustics-furnished-3d":
            click_at(page, [2.2, 1.6])  # the cabinet reaches 1.8 m, above the 1.3 m plan
            wait_for(page, "!document.getElementById('error').hidden")
            assert "inside the cabinet" in page.inner_text("#error")

        # Place a source: the field arrives (binary) and plays as a colour movie.
        click_at(page, [0.8, 1.0])
        wait_for(page, "document.getElementById('field-canvas').dataset.frames")
        wait_for(page, "document.getElementById('ir-canvas').dataset.drawn")
        assert page.get_attribute("#field-canvas", "data-frames") == "41"
        assert distinct_colours(page, "field-canvas") > 200
        assert distinct_colours(page, "ir-canvas") > 10
        assert {"field", "impulse response"} <= set(answers(page))
        frame = page.evaluate("window.fieldserve.view.frame")
        wait_for(page, f"window.fieldserve.view.frame !== {frame}", 5)  # the movie plays

        # Listen: the WAV impulse response, convolved with a clap in a running AudioContext.
        with page.expect_response(lambda r: r.url.endswith("/impulse-response")) as answer:
            page.click("#listen")
        response: Response = answer.value
        assert response.status == 200, response.text()
        assert response.headers["content-type"] == "audio/wav"
        channels, rate, bits, samples = wav_format(response.body())
        assert (channels, rate, bits) == (1, 48_000, 16)
        audio = wait_for(page, "window.fieldserve.audio && window.fieldserve.audio.played")
        audio = page.evaluate("window.fieldserve.audio")
        assert audio["request"] == 200 and audio["state"] == "running"
        assert abs(audio["irSeconds"] - samples / rate) < 2 / rate
        assert audio["played"] >= 0.2  # the 0.25 s clap ran through the context's clock
        assert "listen (WAV)" in answers(page)
        page.evaluate(
            "(() => { const s = document.getElementById('time'); s.value = 4;"
            " s.dispatchEvent(new Event('input')); })()"
        )  # a still frame for the picture
        page.screenshot(path=str(shots / "page-acoustics.png"))

        # Airfoils: NACA 4412 at 6 degrees; the Cp field and surface Cp are drawn.
        page.select_option("#model", "airfoil-enf2enf")
        page.wait_for_selector("#naca")
        page.fill("#naca", "4412")
        page.evaluate(
            "(() => { const s = document.getElementById('aoa'); s.value = 6;"
            " s.dispatchEvent(new Event('change')); })()"
        )
        want = "NACA 4412, aoa 6, speed 1"
        wait_for(page, f"document.getElementById('surface-canvas').dataset.drawn === {want!r}")
        assert page.get_attribute("#cp-canvas", "data-drawn") == want
        assert distinct_colours(page, "cp-canvas") > 200
        assert distinct_colours(page, "surface-canvas") > 10
        # The plot is physics, not just pixels: suction on top, and the section's lift near
        # potential-flow theory: 2 pi (alpha - alpha_0) = 1.11 (thin airfoil, alpha_0 = -4.15
        # deg for a 4412) times 1 + 0.77 t = 1.09 for its thickness, so 1.22; measured 1.18
        # (Cp taken 0.01 chord off the wall, the last 1.5% of chord left out).
        series = page.evaluate("window.fieldserve.view.surfaceSeries")
        upper = next(s for s in series if s["label"] == "upper")
        lower = next(s for s in series if s["label"] == "lower")
        assert min(upper["y"]) < -1.0 < min(lower["y"])
        assert 1.05 < section_lift(series) < 1.35
        assert {"flow field", "surface Cp"} <= set(answers(page))
        page.screenshot(path=str(shots / "page-airfoil.png"))

        assert not failures, failures
        # Every API call carried the key typed into the page (the first, before it, none).
        assert sent_keys[0] is None and set(sent_keys[1:]) == {f"Bearer {KEY}"}
        context.close()
    for name in ("page-acoustics.png", "page-airfoil.png"):
        assert (shots / name).stat().st_size > 20_000
    assert time.monotonic() - started < 50
