"""Every bad request gets a 4xx with a JSON body naming the field; none gets a 500."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from geometry import Room

MAX_POINTS = 500
MAX_BODY = 4096


@pytest.fixture(scope="module")
def client(tiny_acoustic: Any) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=tiny_acoustic.models, max_points=MAX_POINTS, max_body_bytes=MAX_BODY
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def domain(tiny_acoustic: Any) -> dict[str, Any]:
    domain: dict[str, Any] = json.loads((tiny_acoustic.version_dir / "manifest.json").read_text())[
        "domain"
    ]
    return domain


def good_body(domain: dict[str, Any]) -> dict[str, Any]:
    lo, hi = np.asarray(domain["source_region"]["lo"]), np.asarray(domain["source_region"]["hi"])
    dim = domain["dim"]
    return {
        "source": ((lo + hi) / 2).tolist(),
        "receivers": [[0.15] * dim, [0.2] * dim],
        "times": {"start": 0.0, "stop": 0.004, "num": 5},
    }


def expect(response: Any, status: int, field: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert body["field"] == field, body
    return body


def test_the_baseline_request_is_good(
    client: TestClient, tiny_acoustic: Any, domain: dict[str, Any]
) -> None:
    r = client.post(f"/v1/models/{tiny_acoustic.name}/predict", json=good_body(domain))
    assert r.status_code == 200, r.text
    assert np.asarray(r.json()["pressure"]).shape == (2, 5)


Edit = Callable[[dict[str, Any], int], None]


def _set(key: str, value: Any) -> Edit:
    return lambda body, dim: body.__setitem__(key, value)


BAD_VALUES: list[tuple[str, Edit, str]] = [
    ("source wrong dimension", lambda b, d: b.__setitem__("source", [0.5] * (d + 1)), "source"),
    ("source one coordinate", _set("source", [0.5]), "source"),
    ("source empty", _set("source", []), "source"),
    ("source string", _set("source", "middle"), "source"),
    ("source numeric strings", lambda b, d: b.__setitem__("source", ["0.5"] * d), "source"),
    ("source booleans", lambda b, d: b.__setitem__("source", [True] * d), "source"),
    ("source missing", lambda b, d: b.pop("source"), "source"),
    ("source outside the room", lambda b, d: b.__setitem__("source", [5.0] * d), "source"),
    ("source negative", lambda b, d: b.__setitem__("source", [-0.1] * d), "source"),
    ("source on the wall", lambda b, d: b.__setitem__("source", [0.0] * d), "source"),
    (
        "receivers wrong dimension",
        lambda b, d: b.__setitem__("receivers", [[0.2] * (d + 1)]),
        "receivers",
    ),
    ("receivers ragged", lambda b, d: b.__setitem__("receivers", [[0.2] * d, [0.2]]), "receivers"),
    ("receivers empty", _set("receivers", []), "receivers"),
    ("receivers flat", lambda b, d: b.__setitem__("receivers", [0.2] * d), "receivers"),
    ("receivers strings", lambda b, d: b.__setitem__("receivers", [["a"] * d]), "receivers"),
    ("receivers a number", _set("receivers", 3), "receivers"),
    (
        "receivers outside the room",
        lambda b, d: b.__setitem__("receivers", [[9.0] * d]),
        "receivers",
    ),
    ("grid without ny", _set("receivers", {"grid": {"nx": 4}}), "receivers"),
    (
        "grid zero",
        lambda b, d: b.__setitem__(
            "receivers", {"grid": dict(zip(["nx", "ny", "nz"], [0, 3, 3][:d], strict=False))}
        ),
        "receivers",
    ),
    (
        "grid float counts",
        lambda b, d: b.__setitem__(
            "receivers", {"grid": dict(zip(["nx", "ny", "nz"], [2.5, 3, 3][:d], strict=False))}
        ),
        "receivers",
    ),
    (
        "grid wrong dimension",
        lambda b, d: b.__setitem__(
            "receivers", {"grid": dict(zip(["nx", "ny", "nz"], [3, 3, 3][: 5 - d], strict=False))}
        ),
        "receivers",
    ),
    ("grid unknown key", _set("receivers", {"grid": {"nx": 2, "ny": 2, "n": 2}}), "receivers"),
    ("times empty", _set("times", []), "times"),
    ("times num zero", _set("times", {"start": 0, "stop": 0.004, "num": 0}), "times"),
    ("times backwards", _set("times", {"start": 0.004, "stop": 0.0, "num": 3}), "times"),
    ("times missing num", _set("times", {"start": 0.0, "stop": 0.004}), "times"),
    ("times nested", _set("times", [[0.0]]), "times"),
    ("times string", _set("times", "now"), "times"),
    ("times beyond float32", _set("times", [0.0, 1e300]), "times"),
    ("times range too wide", _set("times", {"start": -1e308, "stop": 1e308, "num": 3}), "times"),
    ("unknown key", _set("reciever", [[0.2, 0.2]]), "reciever"),
]


@pytest.mark.parametrize(
    ("edit", "field"), [(e, f) for _, e, f in BAD_VALUES], ids=[name for name, _, _ in BAD_VALUES]
)
def test_bad_values_are_422_naming_the_field(
    client: TestClient, tiny_acoustic: Any, domain: dict[str, Any], edit: Edit, field: str
) -> None:
    body = good_body(domain)
    edit(body, domain["dim"])
    expect(client.post(f"/v1/models/{tiny_acoustic.name}/predict", json=body), 422, field)


def test_source_and_receivers_inside_a_solid_are_refused(
    client: TestClient, tiny_acoustic: Any, domain: dict[str, Any]
) -> None:
    room = Room.from_spec(domain["room"])
    assert room.solids, "the fixture rooms have a solid in 2-D and 3-D"
    inside = ((np.asarray(room.solids[0].lo) + room.solids[0].hi) / 2).tolist()
    url = f"/v1/models/{tiny_acoustic.name}/predict"
    body = good_body(domain) | {"source": inside}
    assert "wall" in expect(client.post(url, json=body), 422, "source")["error"]
    body = good_body(domain) | {"receivers": [[0.2] * domain["dim"], inside]}
    assert "receivers[1]" in expect(client.post(url, json=body), 422, "receivers")["error"]


@pytest.mark.parametrize(
    ("literal", "field"),
    [
        ("NaN", "source"),
        ("Infinity", "source"),
        ("-Infinity", "source"),
        ("1e999", "source"),
    ],
)
def test_non_finite_source_is_422(
    client: TestClient, tiny_acoustic: Any, domain: dict[str, Any], literal: str, field: str
) -> None:
    body = good_body(domain)
    text = json.dumps(body).replace(
        json.dumps(body["source"]), "[" + ", ".join([literal] * domain["dim"]) + "]"
    )
    expect(client.post(f"/v1/models/{tiny_acoustic.name}/predict", content=text), 422, field)


@pytest.mark.parametrize("key", ["receivers", "times"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e999"])
def test_non_finite_arrays_are_422(
    client: TestClient, tiny_acoustic: Any, domain: dict[str, Any], key: str, literal: str
) -> None:
    body = good_body(domain)
    body["times"] = [0.0, 0.001]
    marker = 12345.678
    if key == "receivers":
        body["receivers"][1][0] = marker
    else:
        body["times"][1] = marker
    text = json.dumps(body).replace(str(marker), literal)
    error = expect(client.post(f"/v1/models/{tiny_acoustic.name}/predict", content=text), 422, key)
    assert "[1]" in error["error"]  # says which element


def test_times_whose_field_is_not_finite_are_422_never_null(
    client: TestClient, tiny_acoustic: Any, domain: dict[str, Any]
) -> None:
    """3e38 s is a float32, but the trunk's arithmetic overflows there: refused, not null."""
    body = good_body(domain)
    body["times"] = [0.0, 3e38]
    r = client.post(f"/v1/models/{tiny_acoustic.name}/predict", json=body)
    assert "not finite" in expect(r, 422, "times")["error"]


def test_too_many_points(client: TestClient, tiny_acoustic: Any, domain: dict[str, Any]) -> None:
    url = f"/v1/models/{tiny_acoustic.name}/predict"
    dim = domain["dim"]
    body = good_body(domain) | {"times": {"start": 0, "stop": 0.004, "num": MAX_POINTS}}
    expect(client.post(url, json=body), 422, "receivers")  # 2 receivers x MAX_POINTS times
    body = good_body(domain) | {"times": {"start": 0, "stop": 0.004, "num": 10**12}}
    expect(client.post(url, json=body), 422, "times")  # refused before any array is built
    grid = dict(zip(["nx", "ny", "nz"], [10**6] * dim, strict=False))
    body = good_body(domain) | {"receivers": {"grid": grid}}
    expect(client.post(url, json=body), 422, "receivers")
    body = good_body(domain) | {"receivers": [[0.2] * dim] * 120}  # 120 x 5 = 600 > 500
    expect(client.post(url, json=body), 422, "receivers")


def test_unknown_model_or_version_is_404(
    client: TestClient, tiny_acoustic: Any, domain: dict[str, Any]
) -> None:
    body = good_body(domain)
    expect(client.post("/v1/models/no-such-model/predict", json=body), 404, "model")
    expect(client.post("/v1/models/no-such-model/versions/1/predict", json=body), 404, "model")
    # 5,000 digits: past Python's int-string limit, which once made this a 500.
    for version in ["2", "0", "abc", "01", "1" * 5000]:
        r = client.post(f"/v1/models/{tiny_acoustic.name}/versions/{version}/predict", json=body)
        assert len(expect(r, 404, "version")["error"]) < 200
    expect(client.get("/v1/models/no-such-model"), 404, "model")


def test_body_over_the_limit_is_413(
    client: TestClient, tiny_acoustic: Any, domain: dict[str, Any]
) -> None:
    url = f"/v1/models/{tiny_acoustic.name}/predict"
    body = good_body(domain) | {"times": [0.001] * (MAX_BODY // 4)}
    text = json.dumps(body).encode()
    assert len(text) > MAX_BODY
    expect(client.post(url, content=text), 413, "body")  # Content-Length declared

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length, counted as it arrives
        for start in range(0, len(text), 1000):
            yield text[start : start + 1000]

    r = client.post(url, content=chunks())
    expect(r, 413, "body")


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"", 400),
        (b"{", 400),
        (b"not json", 400),
        (b"\xff\xfe", 400),
        (b"[1, 2]", 400),
        (b"null", 400),
        (b'"text"', 400),
        (b"{}", 422),
    ],
)
def test_unparseable_bodies(
    client: TestClient, tiny_acoustic: Any, content: bytes, status: int
) -> None:
    r = client.post(f"/v1/models/{tiny_acoustic.name}/predict", content=content)
    expect(r, status, "body" if status == 400 else "source")


def test_framework_errors_keep_the_error_shape(client: TestClient) -> None:
    expect(client.get("/no/such/route"), 404, None)
    expect(client.get("/v1/admin/reload"), 405, None)


def test_an_unexpected_error_is_500_in_the_error_shape_with_the_request_id(
    tiny_acoustic: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(model_dir=tiny_acoustic.models))

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom", headers={"X-Request-ID": "abc123"})
    expect(r, 500, None)
    assert r.headers["x-request-id"] == "abc123"
    logged = [rec for rec in caplog.records if rec.getMessage() == "unhandled error"]
    assert logged and logged[0].exc_info is not None


def test_an_error_lists_a_bounded_number_of_problems(
    tiny_acoustic: Any, domain: dict[str, Any]
) -> None:
    """200,000 unknown keys: the answer names the first and counts the rest, it does not grow
    with the body."""
    body = {**good_body(domain), **{f"k{i}": i for i in range(200_000)}}
    with TestClient(create_app(Settings(model_dir=tiny_acoustic.models))) as c:
        r = c.post(f"/v1/models/{tiny_acoustic.name}/predict", json=body)
    details = expect(r, 422, "k0")["details"]
    assert len(details) == 21 and details[-1]["error"] == "and 199980 more problems"
    assert len(r.content) < 5_000
