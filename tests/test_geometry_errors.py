"""Every bad geometry request gets a 4xx with a JSON body naming the field; none gets a 500."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.families.airfoil_domain import MAX_CURVE_POINTS
from app.main import create_app
from app.settings import Settings
from geometry.airfoils import naca4

MAX_POINTS = 200


@pytest.fixture(scope="module")
def client(tiny_airfoil: Any) -> Iterator[TestClient]:
    with TestClient(
        create_app(Settings(model_dir=tiny_airfoil.models, max_points=MAX_POINTS))
    ) as c:
        yield c


def good_body() -> dict[str, Any]:
    return {
        "geometry": {"naca": "2412"},
        "conditions": {"aoa_deg": 4.0, "speed": 1.0},
        "query": {"points": [[0.2, 0.3], [1.2, -0.3]]},
    }


def expect(response: Any, status: int, field: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert body["field"] == field, body
    return body


def test_the_baseline_request_is_good(client: TestClient, tiny_airfoil: Any) -> None:
    r = client.post(f"/v1/models/{tiny_airfoil.name}/predict", json=good_body())
    assert r.status_code == 200, r.text
    assert len(r.json()["fields"]["cp"]) == 2


Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    *parents, leaf = path.split(".")

    def edit(body: dict[str, Any]) -> None:
        node = body
        for p in parents:
            node = node[p]
        node[leaf] = value

    return edit


def _drop(key: str) -> Edit:
    return lambda body: body.pop(key)


SQUARE = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.2], [0.0, 0.2]]
FIGURE_EIGHT = [[0.0, 0.0], [0.6, 0.2], [0.6, 0.0], [0.0, 0.3], [0.0, 0.0]]
SPIKE = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.2], [0.5, 0.4], [0.5, 0.2], [0.0, 0.2]]

BAD: list[tuple[str, Edit, int, str]] = [
    # geometry
    ("geometry missing", _drop("geometry"), 422, "geometry"),
    ("geometry a string", _set("geometry", "2412"), 422, "geometry"),
    ("geometry no known key", _set("geometry", {"shape": "2412"}), 422, "geometry"),
    ("naca five digits", _set("geometry", {"naca": "99999"}), 422, "geometry"),
    ("naca letters", _set("geometry", {"naca": "2a12"}), 422, "geometry"),
    ("naca no camber position", _set("geometry", {"naca": "2012"}), 422, "geometry"),
    ("naca zero thickness", _set("geometry", {"naca": "0000"}), 422, "geometry"),
    ("naca a number", _set("geometry", {"naca": 2412}), 422, "geometry"),
    ("naca and curves", _set("geometry", {"naca": "2412", "curves": [SQUARE]}), 422, "geometry"),
    ("curves empty", _set("geometry", {"curves": []}), 422, "geometry"),
    ("curve empty", _set("geometry", {"curves": [[]]}), 422, "geometry"),
    ("curve two points", _set("geometry", {"curves": [[[0, 0], [1, 0]]]}), 422, "geometry"),
    (
        "curve without area",
        _set("geometry", {"curves": [[[0, 0], [0.5, 0], [1, 0]]]}),
        422,
        "geometry",
    ),
    (
        "curve of repeated points",
        _set("geometry", {"curves": [[[0, 0], [0, 0], [1, 0], [1, 0]]]}),
        422,
        "geometry",
    ),
    ("curve crossing itself", _set("geometry", {"curves": [FIGURE_EIGHT]}), 422, "geometry"),
    ("curve doubling back", _set("geometry", {"curves": [SPIKE]}), 422, "geometry"),
    (
        "curve points in 3-D",
        _set("geometry", {"curves": [[[0, 0, 0], [1, 0, 0], [0, 1, 0]]]}),
        422,
        "geometry",
    ),
    ("curve ragged", _set("geometry", {"curves": [[[0, 0], [1], [0, 1]]]}), 422, "geometry"),
    ("curve strings", _set("geometry", {"curves": [[["a", "b"]] * 3]}), 422, "geometry"),
    (
        "too many elements",
        _set(
            "geometry",
            {"curves": [[[x + a, y] for a, y in SQUARE] for x in (0.0, 0.6, 1.2)]},
        ),
        422,
        "geometry",
    ),
    (
        "elements crossing",
        _set("geometry", {"curves": [SQUARE, [[x + 0.25, y + 0.1] for x, y in SQUARE]]}),
        422,
        "geometry",
    ),
    (
        "element inside another",
        _set("geometry", {"curves": [SQUARE, [[0.2, 0.05], [0.3, 0.05], [0.25, 0.1]]]}),
        422,
        "geometry",
    ),
    (
        "too many curve points",
        _set(
            "geometry",
            {"curves": [naca4("0012", 2 * (MAX_CURVE_POINTS // 2)).tolist()]},
        ),
        422,
        "geometry",
    ),
    ("geometry_id malformed", _set("geometry", {"geometry_id": "xyz"}), 422, "geometry"),
    ("geometry_id a number", _set("geometry", {"geometry_id": 7}), 422, "geometry"),
    ("geometry_id unknown", _set("geometry", {"geometry_id": "ab" * 20}), 404, "geometry"),
    # conditions
    ("conditions missing", _drop("conditions"), 422, "conditions"),
    ("aoa missing", _set("conditions", {"speed": 1.0}), 422, "conditions"),
    ("aoa a string", _set("conditions.aoa_deg", "4"), 422, "conditions"),
    ("aoa boolean", _set("conditions.aoa_deg", True), 422, "conditions"),
    ("speed zero", _set("conditions.speed", 0.0), 422, "conditions"),
    ("speed negative", _set("conditions.speed", -1.0), 422, "conditions"),
    ("aoa beyond float32", _set("conditions.aoa_deg", 1e300), 422, "conditions"),
    ("conditions extra key", _set("conditions.mach", 0.3), 422, "conditions"),
    # query
    ("query missing", _drop("query"), 422, "query"),
    ("query a list", _set("query", [[0.2, 0.3]]), 422, "query"),
    ("query no known key", _set("query", {"receivers": [[0.2, 0.3]]}), 422, "query"),
    ("points empty", _set("query.points", []), 422, "query"),
    ("points 3-D", _set("query.points", [[0.2, 0.3, 0.0]]), 422, "query"),
    ("points 1-D", _set("query.points", [0.2, 0.3]), 422, "query"),
    ("point inside the body", _set("query.points", [[0.2, 0.3], [0.3, 0.02]]), 422, "query"),
    ("point beyond float32", _set("query.points", [[1e300, 0.0]]), 422, "query"),
    ("too many points", _set("query.points", [[0.2, 0.3]] * (MAX_POINTS + 1)), 422, "query"),
    ("grid too big", _set("query", {"grid": {"nx": 100, "ny": 100}}), 422, "query"),
    ("grid zero", _set("query", {"grid": {"nx": 0, "ny": 4}}), 422, "query"),
    ("grid float count", _set("query", {"grid": {"nx": 2.5, "ny": 4}}), 422, "query"),
    (
        "grid bounds reversed",
        _set("query", {"grid": {"nx": 4, "ny": 4, "bounds": [[1, 0], [0, 1]]}}),
        422,
        "query",
    ),
    (
        "grid bounds one axis",
        _set("query", {"grid": {"nx": 4, "ny": 4, "bounds": [[0, 1]]}}),
        422,
        "query",
    ),
    (
        "grid all inside the body",
        _set("query", {"grid": {"nx": 2, "ny": 2, "bounds": [[0.3, 0.31], [0.01, 0.02]]}}),
        422,
        "query",
    ),
    ("unknown top-level key", _set("source", [0.5, 0.5]), 422, "source"),
]


@pytest.mark.parametrize(("what", "edit", "status", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_name_the_field(
    client: TestClient, tiny_airfoil: Any, what: str, edit: Edit, status: int, field: str
) -> None:
    body = good_body()
    edit(body)
    r = client.post(f"/v1/models/{tiny_airfoil.name}/predict", json=body)
    expect(r, status, field)
    if "geometry" in body and field == "geometry":
        # The geometries endpoint validates the same way.
        r = client.post(
            f"/v1/models/{tiny_airfoil.name}/geometries", json={"geometry": body["geometry"]}
        )
        expect(r, status, field)


_Q = '"query": {"points": [[0.5, 0.5]]}'
_G = '"geometry": {"naca": "2412"}'
_C = '"conditions": {"aoa_deg": 4, "speed": 1}'


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (
            '{"geometry": {"curves": [[[0, 0], [NaN, 0], [0, 1]]]}, ' + _C + ", " + _Q + "}",
            "geometry",
        ),
        ("{" + _G + ', "conditions": {"aoa_deg": NaN, "speed": 1}, ' + _Q + "}", "conditions"),
        ("{" + _G + ', "conditions": {"aoa_deg": 4, "speed": Infinity}, ' + _Q + "}", "conditions"),
        ("{" + _G + ", " + _C + ', "query": {"points": [[0.5, NaN]]}}', "query"),
        (
            "{" + _G + ", " + _C + ', "query": {"grid": {"nx": 2, "ny": 2, '
            '"bounds": [[0, Infinity], [0, 1]]}}}',
            "query",
        ),
    ],
    ids=["curve", "aoa", "speed", "point", "bounds"],
)
def test_nan_and_infinity_are_refused(
    client: TestClient, tiny_airfoil: Any, raw: str, field: str
) -> None:
    r = client.post(
        f"/v1/models/{tiny_airfoil.name}/predict",
        content=raw,
        headers={"content-type": "application/json"},
    )
    expect(r, 422, field)


REASONS = {
    "naca five digits": "5 digits",
    "naca letters": "is not of the form",
    "curve two points": "at least 3 distinct points",
    "curve without area": "encloses no area",
    "curve crossing itself": "intersects itself",
    "curve doubling back": "doubles back",
    "too many elements": "at most 2",
    "elements crossing": "cross or touch",
    "element inside another": "lies inside element 0",
    "too many curve points": f"limit of {MAX_CURVE_POINTS}",
    "geometry_id unknown": "unknown",
    "speed zero": "must be positive",
    "point inside the body": "query.points[1]",
    "too many points": f"limit of {MAX_POINTS}",
    "grid all inside the body": "no point of this grid",
}


def test_refusals_say_why(client: TestClient, tiny_airfoil: Any) -> None:
    edits = {what: edit for what, edit, _, _ in BAD}
    for what, reason in REASONS.items():
        body = good_body()
        edits[what](body)
        r = client.post(f"/v1/models/{tiny_airfoil.name}/predict", json=body)
        assert reason in r.json()["error"], (what, r.json())


def test_bodies_that_are_not_objects(client: TestClient, tiny_airfoil: Any) -> None:
    for url, body in (("predict", good_body()), ("geometries", {"geometry": {"naca": "2412"}})):
        full = f"/v1/models/{tiny_airfoil.name}/{url}"
        expect(client.post(full, content=b"{nope"), 400, "body")
        expect(client.post(full, json=[1, 2]), 400, "body")
        expect(client.post(full, json={**body, "x": 1}), 422, "x")
    r = client.post("/v1/models/nope/geometries", json={"geometry": {"naca": "2412"}})
    expect(r, 404, "model")
    r = client.post(
        f"/v1/models/{tiny_airfoil.name}/versions/9/geometries",
        json={"geometry": {"naca": "2412"}},
    )
    expect(r, 404, "version")


def test_nothing_is_a_500_for_random_junk(client: TestClient, tiny_airfoil: Any) -> None:
    """Junk in every slot of the request: 4xx, never 500."""
    junk: list[Any] = [None, 0, -1, 1e308, "", "x", [], {}, [[]], [None], {"grid": None}, True]
    url = f"/v1/models/{tiny_airfoil.name}/predict"
    for key in ("geometry", "conditions", "query"):
        for value in junk:
            body = good_body()
            body[key] = value
            r = client.post(
                url, content=json.dumps(body), headers={"content-type": "application/json"}
            )
            assert 400 <= r.status_code < 500, (key, value, r.text)
            assert r.json()["field"] == key, (key, value, r.json())
    for value in junk:
        body = good_body()
        body["geometry"] = {"curves": [value]}
        r = client.post(url, json=body)
        assert r.status_code == 422 and r.json()["field"] == "geometry", (value, r.text)
    ok = np.asarray(naca4("0012", 40))
    for bad in (ok[:, :1], ok[None], ok + np.inf):
        body = good_body()
        body["geometry"] = {"curves": [json.loads(json.dumps(bad.tolist()))]}
        r = client.post(url, content=json.dumps(body), headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["field"] == "geometry", r.text


def test_both_families_serve_side_by_side(
    tiny_acoustic: Any, tiny_airfoil: Any, tmp_path: Any
) -> None:
    """One repository with a DeepONet and an enf2enf: both listed with their family; the
    geometries route belongs to the enf2enf only."""
    import shutil

    for t in (tiny_acoustic, tiny_airfoil):
        shutil.copytree(t.version_dir, tmp_path / t.name / "1")
    with TestClient(create_app(Settings(model_dir=tmp_path))) as c:
        listed = {m["name"]: m["family"] for m in c.get("/v1/models").json()["models"]}
        assert listed == {tiny_acoustic.name: "deeponet", tiny_airfoil.name: "enf2enf"}
        r = c.post(
            f"/v1/models/{tiny_acoustic.name}/geometries", json={"geometry": {"naca": "2412"}}
        )
        assert "enf2enf" in expect(r, 404, "model")["error"]
        r = c.post(
            f"/v1/models/{tiny_airfoil.name}/geometries", json={"geometry": {"naca": "2412"}}
        )
        assert r.status_code == 200, r.text
        # A flow request to the acoustic model is refused as an acoustic request would be.
        r = c.post(f"/v1/models/{tiny_acoustic.name}/predict", json=good_body())
        assert r.status_code == 422
