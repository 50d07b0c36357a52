"""The geometry (enf2enf) routes over HTTP, against the in-process cache and a real Redis.

Numbers, not just states: every field equals the encoder and decoder graphs composed by hand
with geometry.airfoils, a repeated request is a hit, a known geometry skips the encoder (the
graph run counters in /metrics prove it), and the geometries endpoint hands out ids that
predictions reuse.
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.families.airfoil_domain import geometry_id
from app.main import create_app
from app.settings import Settings
from geometry.airfoils import inside, naca4, two_element
from geometry.grids import grid_points
from tests.helpers_serving import (
    Samples,
    assert_close,
    flow_by_hand,
    flow_columns,
    fluid_points,
    manifest_of,
    metric,
    parse_metrics,
)

pytest_plugins = ["tests.fixtures_redis"]

MEDIA = "application/x-fieldserve-arrays"


@pytest.fixture(scope="module")
def client(tiny_airfoil: Any, cache_backend: dict[str, Any]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=tiny_airfoil.models, **cache_backend))) as c:
        yield c


@pytest.fixture(scope="module")
def domain(tiny_airfoil: Any) -> dict[str, Any]:
    found: dict[str, Any] = manifest_of(tiny_airfoil.version_dir)["domain"]
    return found


def naca(code: str, domain: dict[str, Any]) -> list[np.ndarray]:
    return [naca4(code, domain["panels_per_element"])]


def post(client: TestClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(url, json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def predict(client: TestClient, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return post(client, f"/v1/models/{name}/predict", body)


def flow(
    geometry: dict[str, Any], points: np.ndarray, aoa: float = 4.0, speed: float = 1.0
) -> dict[str, Any]:
    return {
        "geometry": geometry,
        "conditions": {"aoa_deg": aoa, "speed": speed},
        "query": {"points": points.tolist()},
    }


def scrape(client: TestClient) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200
    return parse_metrics(r.text)


def runs(samples: Samples, graph: str) -> float:
    return metric(samples, "fieldserve_graph_compute_seconds_count", graph=graph)


def hits(samples: Samples, kind: str) -> float:
    return metric(samples, "fieldserve_cache_hits_total", kind=kind)


def test_naca_request_equals_the_graphs_and_a_repeat_is_a_hit(
    client: TestClient, tiny_airfoil: Any, domain: dict[str, Any]
) -> None:
    polylines = naca("2412", domain)
    points = fluid_points(polylines, 40, seed=1)
    request = flow({"naca": "2412"}, points)
    first = predict(client, tiny_airfoil.name, request)
    assert first["cache"] == "miss" and first["warnings"] == []
    assert first["model"] == tiny_airfoil.name and first["version"] == "1"
    assert first["geometry_id"] == geometry_id(polylines)
    assert "points" not in first and "grid" not in first
    assert_close(
        flow_columns(first), flow_by_hand(tiny_airfoil.version_dir, polylines, 4.0, 1.0, points)
    )

    before = scrape(client)
    second = predict(client, tiny_airfoil.name, request)
    after = scrape(client)
    assert second["cache"] == "hit"
    assert second["fields"] == first["fields"] and second["geometry_id"] == first["geometry_id"]
    assert runs(after, "encoder") == runs(before, "encoder")
    assert runs(after, "decoder") == runs(before, "decoder")
    assert hits(after, "response") == hits(before, "response") + 1


def test_a_second_query_set_on_the_same_naca_skips_the_encoder(
    client: TestClient, tiny_airfoil: Any, domain: dict[str, Any]
) -> None:
    polylines = naca("4415", domain)
    predict(client, tiny_airfoil.name, flow({"naca": "4415"}, fluid_points(polylines, 10, seed=2)))
    points = fluid_points(polylines, 25, seed=3)
    before = scrape(client)
    # Other points and other conditions: only the decoder runs again.
    out = predict(client, tiny_airfoil.name, flow({"naca": "NACA 4415"}, points, 7.5, 0.8))
    after = scrape(client)
    assert out["cache"] == "partial"
    assert runs(after, "encoder") == runs(before, "encoder")  # the encoder did not run
    assert runs(after, "decoder") == runs(before, "decoder") + 1
    assert hits(after, "encoder") == hits(before, "encoder") + 1
    assert_close(
        flow_columns(out), flow_by_hand(tiny_airfoil.version_dir, polylines, 7.5, 0.8, points)
    )


def test_the_geometries_endpoint_then_predict_by_id(
    client: TestClient, tiny_airfoil: Any, domain: dict[str, Any]
) -> None:
    name = tiny_airfoil.name
    polylines = naca("0015", domain)
    before = scrape(client)
    registered = post(client, f"/v1/models/{name}/geometries", {"geometry": {"naca": "0015"}})
    after = scrape(client)
    assert registered == {
        "geometry_id": geometry_id(polylines),
        "model": name,
        "version": "1",
        "cache": "miss",
        "warnings": [],
    }
    assert runs(after, "encoder") == runs(before, "encoder") + 1
    assert runs(after, "decoder") == runs(before, "decoder")
    again = post(client, f"/v1/models/{name}/versions/1/geometries", {"geometry": {"naca": "0015"}})
    assert again["cache"] == "hit" and again["geometry_id"] == registered["geometry_id"]

    points = fluid_points(polylines, 30, seed=4)
    before = scrape(client)
    out = predict(client, name, flow({"geometry_id": registered["geometry_id"]}, points, 2.0))
    after = scrape(client)
    assert out["cache"] == "partial" and out["geometry_id"] == registered["geometry_id"]
    assert runs(after, "encoder") == runs(before, "encoder")
    assert hits(after, "encoder") == hits(before, "encoder") + 1
    assert hits(after, "geometry") == hits(before, "geometry") + 1
    assert_close(
        flow_columns(out), flow_by_hand(tiny_airfoil.version_dir, polylines, 2.0, 1.0, points)
    )
    # The id in a prediction's answer works the same way, and so does the id endpoint.
    by_id = post(
        client, f"/v1/models/{name}/geometries", {"geometry": {"geometry_id": out["geometry_id"]}}
    )
    assert by_id["cache"] == "hit" and by_id["geometry_id"] == out["geometry_id"]


def test_curves_equal_to_the_naca_polyline_give_the_naca_answer(
    client: TestClient, tiny_airfoil: Any, domain: dict[str, Any]
) -> None:
    polylines = naca("2312", domain)
    points = fluid_points(polylines, 20, seed=5)
    by_code = predict(client, tiny_airfoil.name, flow({"naca": "2312"}, points))
    # Open (the closing point left out): the service closes it, so it is the same polyline.
    curve = polylines[0][:-1].tolist()
    before = scrape(client)
    by_curve = predict(client, tiny_airfoil.name, flow({"curves": [curve]}, points))
    after = scrape(client)
    assert by_curve["geometry_id"] == by_code["geometry_id"]
    assert by_curve["fields"] == by_code["fields"]
    assert by_curve["cache"] == "partial"  # the naca request's latents
    assert runs(after, "encoder") == runs(before, "encoder")


def test_two_element_curves_equal_the_graphs(
    client: TestClient, tiny_airfoil: Any, domain: dict[str, Any]
) -> None:
    polylines = two_element("2412", "0012", 0.3, 10.0, 0.02, domain["panels_per_element"])
    points = fluid_points(polylines, 30, seed=6)
    out = predict(
        client,
        tiny_airfoil.name,
        flow({"curves": [p.tolist() for p in polylines]}, points, 3.0, 1.2),
    )
    assert out["cache"] == "miss" and out["warnings"] == []
    assert out["geometry_id"] == geometry_id(polylines)
    want = flow_by_hand(tiny_airfoil.version_dir, polylines, 3.0, 1.2, points)
    assert_close(flow_columns(out), want)


def test_a_grid_leaves_out_points_inside_the_body(
    client: TestClient, tiny_airfoil: Any, domain: dict[str, Any]
) -> None:
    polylines = naca("2412", domain)
    bounds = [[-0.1, 1.1], [-0.2, 0.2]]
    body = {
        "geometry": {"naca": "2412"},
        "conditions": {"aoa_deg": 1.0, "speed": 1.0},
        "query": {"grid": {"nx": 13, "ny": 9, "bounds": bounds}},
    }
    out = predict(client, tiny_airfoil.name, body)
    full = grid_points([-0.1, -0.2], [1.1, 0.2], [13, 9])
    solid = inside(full, polylines)
    assert solid.any() and not solid.all()
    index = np.asarray(out["grid"]["index"])
    np.testing.assert_array_equal(index, np.flatnonzero(~solid))
    assert out["grid"]["counts"] == [13, 9]
    assert out["grid"]["lo"] == [-0.1, -0.2] and out["grid"]["hi"] == [1.1, 0.2]
    np.testing.assert_array_equal(np.asarray(out["points"]), full[index])
    assert_close(
        flow_columns(out), flow_by_hand(tiny_airfoil.version_dir, polylines, 1.0, 1.0, full[index])
    )
    # The grid's row through the chord line touches the surface: nearer than training came.
    assert {w["code"] for w in out["warnings"]} <= {"query_near_wall"}
    # Without bounds the grid spans the trained box.
    default = predict(client, tiny_airfoil.name, {**body, "query": {"grid": {"nx": 4, "ny": 3}}})
    assert default["grid"]["lo"] == [domain["box"][0][0], domain["box"][1][0]]
    assert default["grid"]["hi"] == [domain["box"][0][1], domain["box"][1][1]]
    assert default["cache"] == "partial"


def test_out_of_domain_requests_answer_with_warnings(
    client: TestClient, tiny_airfoil: Any, domain: dict[str, Any]
) -> None:
    name = tiny_airfoil.name
    polylines = naca("2412", domain)
    points = fluid_points(polylines, 5, seed=7)
    aoa_hi = domain["aoa_deg"][1] + 5.0
    speed_hi = domain["speed"][1] * 2
    out = predict(client, name, flow({"naca": "2412"}, points, aoa_hi, speed_hi))
    codes = {(w["field"], w["code"]) for w in out["warnings"]}
    assert codes == {
        ("conditions", "aoa_outside_trained_range"),
        ("conditions", "speed_outside_trained_range"),
    }
    # Answered all the same, with the graphs' numbers.
    assert_close(
        flow_columns(out),
        flow_by_hand(tiny_airfoil.version_dir, polylines, aoa_hi, speed_hi, points),
    )

    # 9% camber: more than the trained range of m.
    assert domain["naca"]["m"][1] < 0.09
    out = predict(client, name, flow({"naca": "9412"}, fluid_points(naca("9412", domain), 3)))
    assert [(w["field"], w["code"]) for w in out["warnings"]] == [
        ("geometry", "naca_outside_trained_range")
    ]
    assert "m = 0.09" in out["warnings"][0]["message"]
    registered = post(client, f"/v1/models/{name}/geometries", {"geometry": {"naca": "9412"}})
    assert [w["code"] for w in registered["warnings"]] == ["naca_outside_trained_range"]
    # A geometry_id carries its geometry's warnings along.
    by_id = predict(
        client, name, flow({"geometry_id": registered["geometry_id"]}, np.array([[1.4, 0.7]]))
    )
    assert [w["code"] for w in by_id["warnings"]] == ["naca_outside_trained_range"]

    # Query points outside the box, and on the surface itself.
    far = np.array([[3.0, 0.0], [0.5, 0.5]])
    surface = polylines[0][5:6]
    out = predict(client, name, flow({"naca": "2412"}, np.concatenate([far, surface])))
    assert {(w["field"], w["code"]) for w in out["warnings"]} == {
        ("query", "query_outside_box"),
        ("query", "query_near_wall"),
    }
    assert np.isfinite(flow_columns(out)).all()
    # A body reaching out of the box.
    wide = [[[-0.9, 0.0], [0.0, 0.1], [1.0, 0.0], [0.0, -0.1]]]
    out = predict(client, name, flow({"curves": wide}, np.array([[0.5, 0.5]])))
    assert [w["code"] for w in out["warnings"]] == ["geometry_outside_box"]


def test_binary_answers_hold_the_json_answer(
    client: TestClient, tiny_airfoil: Any, domain: dict[str, Any]
) -> None:
    body = {
        "geometry": {"naca": "0012"},
        "conditions": {"aoa_deg": 5.0, "speed": 1.0},
        "query": {"grid": {"nx": 8, "ny": 6}},
    }
    want = predict(client, tiny_airfoil.name, body)
    r = client.post(f"/v1/models/{tiny_airfoil.name}/predict", json=body, headers={"Accept": MEDIA})
    assert r.status_code == 200 and r.headers["content-type"] == MEDIA
    magic, n = struct.unpack_from("<4sI", r.content)
    assert magic == b"FSA\x01"
    header = json.loads(r.content[8 : 8 + n])
    arrays = {
        a["name"]: np.frombuffer(
            r.content, a["dtype"], count=int(np.prod(a["shape"])), offset=8 + n + a["offset"]
        ).reshape(a["shape"])
        for a in header.pop("arrays")
    }
    assert set(arrays) == {"fields.u", "fields.v", "fields.cp", "points", "grid.index"}
    for k in ("u", "v", "cp"):
        assert arrays[f"fields.{k}"].dtype == np.float32
        np.testing.assert_array_equal(
            arrays[f"fields.{k}"], np.asarray(want["fields"][k], np.float32)
        )
    np.testing.assert_array_equal(arrays["points"], np.asarray(want["points"]))
    np.testing.assert_array_equal(arrays["grid.index"], np.asarray(want["grid"]["index"]))
    assert header["geometry_id"] == want["geometry_id"] and header["cache"] == "hit"
    assert header["grid"]["counts"] == [8, 6] and header["model"] == tiny_airfoil.name
    r = client.post(
        f"/v1/models/{tiny_airfoil.name}/geometries",
        json={"geometry": {"naca": "0012"}},
        headers={"Accept": "application/octet-stream"},
    )
    assert r.status_code == 200 and r.headers["content-type"] == MEDIA


def test_unknown_geometry_ids_are_404(client: TestClient, tiny_airfoil: Any) -> None:
    unknown = "0" * 40
    for url, body in [
        (
            f"/v1/models/{tiny_airfoil.name}/predict",
            flow({"geometry_id": unknown}, np.array([[0.5, 0.5]])),
        ),
        (f"/v1/models/{tiny_airfoil.name}/geometries", {"geometry": {"geometry_id": unknown}}),
    ]:
        r = client.post(url, json=body)
        assert r.status_code == 404, r.text
        assert r.json()["field"] == "geometry" and unknown in r.json()["error"]


def test_entries_have_documented_keys_a_ttl_and_no_pickle(
    client: TestClient, tiny_airfoil: Any, domain: dict[str, Any], cache_backend: Any
) -> None:
    name = tiny_airfoil.name
    registered = post(client, f"/v1/models/{name}/geometries", {"geometry": {"naca": "6412"}})
    pattern = re.compile(
        rf"fieldserve:{re.escape(name)}:1:(encoder|geometry|response):[0-9a-f]{{40}}"
    )
    ttl = client.app.state.settings.cache_ttl_s  # type: ignore[attr-defined]
    if cache_backend["redis_url"]:
        import redis

        r = redis.Redis.from_url(cache_backend["redis_url"])
        keys = [k.decode() for k in r.scan_iter(f"fieldserve:{name}:*")]
        values = [r.get(k) for k in keys]
        ttls = [r.ttl(k) for k in keys]
        r.close()
    else:
        entries = [
            e
            for e in client.app.state.cache.backend.items()  # type: ignore[attr-defined]
            if e[0].startswith(f"fieldserve:{name}:")
        ]
        keys = [k for k, _, _ in entries]
        values = [v for _, v, _ in entries]
        ttls = [expires - time.monotonic() for _, _, expires in entries]
    assert keys and all(pattern.fullmatch(k) for k in keys), keys
    assert {k.split(":")[3] for k in keys} == {"encoder", "geometry", "response"}
    # The polylines are kept under the geometry id itself.
    assert f"fieldserve:{name}:1:geometry:{registered['geometry_id']}" in keys
    assert all(v is not None and v[:4] == b"FSA\x01" for v in values)
    assert all(0 < t <= ttl for t in ttls)


def test_model_listing_shows_the_family(client: TestClient, tiny_airfoil: Any) -> None:
    (model,) = [
        m for m in client.get("/v1/models").json()["models"] if m["name"] == tiny_airfoil.name
    ]
    assert model["family"] == "enf2enf" and model["task"] == "airfoil-flow"
    assert model["domain"]["aoa_deg"] and model["domain"]["max_elements"] == 2
    detail = client.get(f"/v1/models/{tiny_airfoil.name}").json()
    assert set(detail["manifest"]["graphs"]) == {"encoder", "decoder"}
    ready = client.get("/health/ready").json()
    assert {"name": tiny_airfoil.name, "family": "enf2enf"}.items() <= ready["models"][0].items()
