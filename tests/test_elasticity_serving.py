"""A generic enf2enf model (task geometry-fields) over HTTP: a hyperelastic unit cell with a void.

The stand-in model is built here with the onnx helper API, so every answer can be checked to
the number: its encoder and decoder are simple closed forms (below) of exactly the inputs the
service computes with geometry.polylines (encoder points and signed distances), under the
manifest a geometry-fields exporter writes. The same requests run against the in-process cache
and a real Redis.

    latents = reshape([mean(points_x), mean(points_y), mean(sdf)] @ W, (9, 16))
    s       = sum(latents)
    fields  = [sdf * load * 1e-5, x * load * 1e-6, y * load * 1e-6] + s * [1e-3, 0, 1]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from app.families.geometry_domain import geometry_id
from app.main import create_app
from app.settings import Settings
from geometry.grids import grid_points
from geometry.polylines import encoder_points, signed_distance, surface_features
from tests.helpers_serving import Samples, live_server, metric, parse_metrics

pytest_plugins = ["tests.fixtures_redis"]

NAME = "cell-elasticity"
FIELDS = ("von_mises", "ux", "uy")
N_ENCODER = 1024
LATENTS = (9, 16)
W = np.random.default_rng(5).normal(size=(3, LATENTS[0] * LATENTS[1])).astype(np.float32)
MIX = np.array([1e-3, 0.0, 1.0], np.float32)
DOMAIN: dict[str, Any] = {
    "box": [[0.0, 1.0], [0.0, 1.0]],
    "box_is_domain": True,
    "length_unit": "m",
    "conditions": [{"name": "load", "units": "Pa", "range": [10000.0, 120000.0], "positive": True}],
    "max_elements": 1,
    "n_encoder": N_ENCODER,
    "encoder_seed": 0,
    "min_wall_distance": 0.0,
    "shape": {"kind": "star", "center": [0.5, 0.5], "radius": [0.2, 0.4]},
    "latents": {"count": 9, "dim": 16, "grid": 3},
}


def _tensor(name: str, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _save(graph: onnx.GraphProto, path: Path) -> str:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _encoder_graph() -> onnx.GraphProto:
    nodes = [
        helper.make_node("ReduceMean", ["points"], ["mp"], axes=[0], keepdims=0),  # (2,)
        helper.make_node("ReduceMean", ["sdf"], ["ms"], axes=[0], keepdims=1),  # (1,)
        helper.make_node("Concat", ["mp", "ms"], ["feat"], axis=0),  # (3,)
        helper.make_node("Unsqueeze", ["feat", "zero"], ["row"]),  # (1, 3)
        helper.make_node("MatMul", ["row", "w"], ["flat"]),  # (1, 144)
        helper.make_node("Reshape", ["flat", "shape"], ["latents"]),  # (9, 16)
    ]
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(W, "w"),
        numpy_helper.from_array(np.array(LATENTS, np.int64), "shape"),
    ]
    return helper.make_graph(
        nodes,
        "encoder",
        [_tensor("points", [N_ENCODER, 2]), _tensor("sdf", [N_ENCODER])],
        [_tensor("latents", list(LATENTS))],
        inits,
    )


def _decoder_graph() -> onnx.GraphProto:
    nodes = [
        helper.make_node("ReduceSum", ["latents"], ["s"], keepdims=0),  # ()
        helper.make_node("Unsqueeze", ["sdf", "one"], ["sdf_col"]),  # (n, 1)
        helper.make_node("Mul", ["sdf_col", "conditions"], ["a"]),
        helper.make_node("Mul", ["a", "k_vm"], ["vm"]),  # (n, 1)
        helper.make_node("Mul", ["points", "conditions"], ["b"]),
        helper.make_node("Mul", ["b", "k_u"], ["disp"]),  # (n, 2)
        helper.make_node("Concat", ["vm", "disp"], ["raw"], axis=1),  # (n, 3)
        helper.make_node("Mul", ["s", "mix"], ["shift"]),  # (3,)
        helper.make_node("Add", ["raw", "shift"], ["fields"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array(1e-5, np.float32), "k_vm"),
        numpy_helper.from_array(np.array(1e-6, np.float32), "k_u"),
        numpy_helper.from_array(MIX, "mix"),
    ]
    return helper.make_graph(
        nodes,
        "decoder",
        [
            _tensor("latents", list(LATENTS)),
            _tensor("conditions", [1]),
            _tensor("points", ["n", 2]),
            _tensor("sdf", ["n"]),
        ],
        [_tensor("fields", ["n", 3])],
        inits,
    )


def _spec(name: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "dtype": "float32", "shape": shape}


@dataclass
class StandIn:
    models: Path
    name: str = NAME

    @property
    def version_dir(self) -> Path:
        return self.models / self.name / "1"


def write_standin(models: Path) -> StandIn:
    """models/cell-elasticity/1: the two graphs and the manifest a geometry-fields exporter
    writes."""
    t = StandIn(models)
    t.version_dir.mkdir(parents=True)
    enc = _save(_encoder_graph(), t.version_dir / "encoder.onnx")
    dec = _save(_decoder_graph(), t.version_dir / "decoder.onnx")
    manifest = {
        "name": NAME,
        "version": "1",
        "family": "enf2enf",
        "task": "geometry-fields",
        "description": "stand-in: a unit cell with a void under a load on its top edge",
        "fields": list(FIELDS),
        "field_units": ["Pa", "m", "m"],
        "graphs": {
            "encoder": {
                "file": "encoder.onnx",
                "sha256": enc,
                "inputs": [_spec("points", [N_ENCODER, 2]), _spec("sdf", [N_ENCODER])],
                "outputs": [_spec("latents", list(LATENTS))],
            },
            "decoder": {
                "file": "decoder.onnx",
                "sha256": dec,
                "inputs": [
                    _spec("latents", list(LATENTS)),
                    _spec("conditions", [1]),
                    _spec("points", [-1, 2]),
                    _spec("sdf", [-1]),
                ],
                "outputs": [_spec("fields", [-1, 3])],
            },
        },
        "domain": DOMAIN,
        "metrics": {},
    }
    (t.version_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return t


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> StandIn:
    return write_standin(tmp_path_factory.mktemp("elasticity") / "models")


@pytest.fixture(scope="module")
def client(standin: StandIn, cache_backend: dict[str, Any]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=standin.models, **cache_backend))) as c:
        yield c


# -- the model by hand ---------------------------------------------------------------------------


def void(radius: float = 0.3, n: int = 24, center: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """A closed polygon (n + 1, 2) of n vertices on a circle, counter-clockwise."""
    a = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)], axis=1)
    return np.concatenate([pts, pts[:1]])


def star(r0: float = 0.25, r1: float = 0.35, n: int = 20) -> np.ndarray:
    """A void whose vertices alternate between radii r0 and r1 about (0.5, 0.5)."""
    a = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = np.where(np.arange(n) % 2 == 0, r0, r1)
    pts = np.stack([0.5 + r * np.cos(a), 0.5 + r * np.sin(a)], axis=1)
    return np.concatenate([pts, pts[:1]])


def lopsided(r0: float, r1: float, n: int = 64) -> np.ndarray:
    """Radius r1 on the right half (|angle| < 90 deg), r0 on the left: the farthest centroid."""
    a = np.linspace(0.0, 2 * np.pi, n, endpoint=False) + np.pi / n
    r = np.where(np.cos(a) > 0, r1, r0)
    pts = np.stack([0.5 + r * np.cos(a), 0.5 + r * np.sin(a)], axis=1)
    return np.concatenate([pts, pts[:1]])


def crescent(n: int = 16) -> np.ndarray:
    """An annular sector between radii 0.22 and 0.38, 0 to 90 degrees: beside the centre."""
    a = np.linspace(0.0, np.pi / 2, n)
    outer = np.stack([0.5 + 0.38 * np.cos(a), 0.5 + 0.38 * np.sin(a)], axis=1)
    inner = np.stack([0.5 + 0.22 * np.cos(a), 0.5 + 0.22 * np.sin(a)], axis=1)[::-1]
    pts = np.concatenate([outer, inner])
    return np.concatenate([pts, pts[:1]])


def by_hand(polyline: np.ndarray, load: float, points: np.ndarray) -> np.ndarray:
    """(N, 3) [von_mises, ux, uy] of the stand-in, from geometry.polylines as training does."""
    enc_pts, enc_sdf = encoder_points([polyline], N_ENCODER, DOMAIN["box"], seed=0)
    enc_pts, enc_sdf = enc_pts.astype(np.float32), enc_sdf.astype(np.float32)
    feat = np.concatenate([enc_pts.mean(axis=0), [enc_sdf.mean()]]).astype(np.float32)
    s = float((feat[None] @ W).sum())
    pts = np.asarray(points, np.float32)
    sdf = signed_distance(np.asarray(points, np.float64), [polyline]).astype(np.float32)
    out = np.concatenate([(sdf * load * 1e-5)[:, None], pts * load * 1e-6], axis=1).astype(
        np.float64
    )
    return out + s * MIX.astype(np.float64)


def columns(body: dict[str, Any]) -> np.ndarray:
    assert set(body["fields"]) == set(FIELDS)
    return np.stack([np.asarray(body["fields"][k], np.float64) for k in FIELDS], axis=1)


def close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def request(
    geometry: dict[str, Any], points: Any, load: float = 50000.0, **conditions: Any
) -> dict[str, Any]:
    query = {"points": np.asarray(points).tolist()} if not isinstance(points, dict) else points
    return {"geometry": geometry, "conditions": {"load": load, **conditions}, "query": query}


def curves(polyline: np.ndarray) -> dict[str, Any]:
    return {"curves": [polyline.tolist()]}


def post(client: TestClient, path: str, body: Any, status: int = 200) -> dict[str, Any]:
    r = client.post(f"/v1/models/{NAME}/{path}", json=body)
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json()
    return out


def refused(client: TestClient, body: Any, field: str, path: str = "predict") -> str:
    out = post(client, path, body, 422)
    assert out["field"] == field, out
    message: str = out["error"]
    return message


def scrape(client: TestClient) -> Samples:
    return parse_metrics(client.get("/metrics").text)


def cell_points(polyline: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n points of the cell outside the void."""
    pts = np.random.default_rng(seed).uniform(0.0, 1.0, (10 * n, 2))
    kept = pts[signed_distance(pts, [polyline]) > 0.01][:n]
    assert len(kept) == n
    return kept


# -- the tests ------------------------------------------------------------------------------------


def test_listed_with_its_task_and_domain(client: TestClient) -> None:
    model = client.get(f"/v1/models/{NAME}").json()
    assert (model["family"], model["task"]) == ("enf2enf", "geometry-fields")
    assert model["domain"]["conditions"][0]["name"] == "load"
    ready = client.get("/health/ready").json()
    assert ready["refused"] == [] and ready["status"] == "ready"


def test_points_equal_the_graphs_and_a_repeat_is_a_hit(client: TestClient) -> None:
    polyline = void(0.3)
    points = cell_points(polyline, 30, seed=1)
    first = post(client, "predict", request(curves(polyline), points, 50000.0))
    assert first["cache"] == "miss" and first["warnings"] == [], first["warnings"]
    assert (first["model"], first["version"]) == (NAME, "1")
    assert first["geometry_id"] == geometry_id([polyline])
    assert "grid" not in first and "points" not in first
    want = by_hand(polyline, 50000.0, points)
    close(columns(first), want)
    # The physics of the stand-in: von Mises grows with the distance from the void and the load.
    assert np.corrcoef(columns(first)[:, 0], signed_distance(points, [polyline]))[0, 1] > 0.99

    second = post(client, "predict", request(curves(polyline), points, 50000.0))
    assert second["cache"] == "hit" and second["fields"] == first["fields"]


def test_a_known_geometry_skips_the_encoder(client: TestClient) -> None:
    polyline = void(0.28, n=30)
    points = cell_points(polyline, 10, seed=2)
    first = post(client, "predict", request(curves(polyline), points, 40000.0))
    assert first["cache"] == "miss"
    gid = first["geometry_id"]
    before = scrape(client)
    # Another load, by id: the encoder's latents are reused.
    again = post(client, "predict", request({"geometry_id": gid}, points, 80000.0))
    after = scrape(client)
    assert again["cache"] == "partial" and again["geometry_id"] == gid
    runs = "fieldserve_graph_compute_seconds_count"
    assert metric(after, runs, graph="encoder") == metric(before, runs, graph="encoder")
    assert metric(after, runs, graph="decoder") == metric(before, runs, graph="decoder") + 1
    close(columns(again), by_hand(polyline, 80000.0, points))
    # Linear in the load, as the stand-in is.
    vm40, vm80 = columns(first)[:, 0], columns(again)[:, 0]
    s = float(by_hand(polyline, 0.0, points[:1])[0, 0])
    np.testing.assert_allclose(vm80 - s, 2 * (vm40 - s), rtol=1e-4)


def test_the_geometries_endpoint_then_predict_by_id(client: TestClient) -> None:
    polyline = void(0.33, n=16)
    registered = post(client, "geometries", {"geometry": curves(polyline)})
    assert registered["cache"] == "miss" and registered["warnings"] == []
    assert registered["geometry_id"] == geometry_id([polyline])
    again = post(client, "geometries", {"geometry": curves(polyline[:-1])})  # open: the same
    assert again["cache"] == "hit" and again["geometry_id"] == registered["geometry_id"]
    points = cell_points(polyline, 5, seed=3)
    out = post(client, "predict", request({"geometry_id": registered["geometry_id"]}, points))
    assert out["cache"] == "partial"
    close(columns(out), by_hand(polyline, 50000.0, points))
    unknown = {"geometry_id": "0" * 40}
    assert post(client, "predict", request(unknown, points), 404)["field"] == "geometry"


def test_a_grid_covers_the_cell_outside_the_void(client: TestClient) -> None:
    polyline = void(0.3)
    nx, ny = 9, 7
    out = post(client, "predict", request(curves(polyline), {"grid": {"nx": nx, "ny": ny}}))
    full = grid_points([0.0, 0.0], [1.0, 1.0], [nx, ny])
    outside = signed_distance(full, [polyline]) >= 0
    assert out["grid"]["counts"] == [nx, ny]
    assert out["grid"]["lo"] == [0.0, 0.0] and out["grid"]["hi"] == [1.0, 1.0]
    assert out["grid"]["index"] == np.flatnonzero(outside).tolist()
    points = np.asarray(out["points"])
    np.testing.assert_allclose(points, full[outside])
    close(columns(out), by_hand(polyline, 50000.0, points))
    assert out["warnings"] == []

    # Bounds reaching out of the cell: only the points in the cell (and outside the void) kept.
    grid = {"grid": {"nx": 5, "ny": 5, "bounds": [[-1.0, 1.0], [0.0, 1.0]]}}
    out = post(client, "predict", request(curves(polyline), grid))
    kept = np.asarray(out["points"])
    assert (kept[:, 0] >= 0.0).all() and len(kept) == len(out["grid"]["index"])
    close(columns(out), by_hand(polyline, 50000.0, kept))
    # Nothing of the grid in the cell.
    grid = {"grid": {"nx": 3, "ny": 3, "bounds": [[2.0, 3.0], [0.0, 1.0]]}}
    assert "no point" in refused(client, request(curves(polyline), grid), "query")


def test_binary_answers_hold_the_json_answer(client: TestClient) -> None:
    import struct

    polyline = void(0.3)
    body = request(curves(polyline), cell_points(polyline, 6, seed=4), 30000.0)
    as_json = post(client, "predict", body)
    r = client.post(
        f"/v1/models/{NAME}/predict",
        json=body,
        headers={"Accept": "application/x-fieldserve-arrays"},
    )
    assert r.status_code == 200
    magic, n = struct.unpack_from("<4sI", r.content)
    header = json.loads(r.content[8 : 8 + n])
    assert magic == b"FSA\x01" and header["geometry_id"] == as_json["geometry_id"]
    arrays = {a["name"]: a for a in header["arrays"]}
    assert set(arrays) == {f"fields.{k}" for k in FIELDS}
    for k in FIELDS:
        a = arrays[f"fields.{k}"]
        got = np.frombuffer(r.content, a["dtype"], count=a["shape"][0], offset=8 + n + a["offset"])
        np.testing.assert_array_equal(got, np.asarray(as_json["fields"][k], np.float32))


def test_conditions_are_checked_against_the_manifest(client: TestClient) -> None:
    g = curves(void(0.3))
    pts = [[0.1, 0.1]]
    assert "missing" in refused(client, {**request(g, pts), "conditions": {}}, "conditions.load")
    assert "unknown" in refused(client, request(g, pts, speed=1.0), "conditions.speed")
    assert "positive" in refused(client, request(g, pts, -5.0), "conditions.load")
    assert "positive" in refused(client, request(g, pts, 0.0), "conditions.load")
    assert "float32" in refused(client, request(g, pts, 1e300), "conditions.load")
    for raw in ("NaN", "Infinity", "-Infinity"):
        text = json.dumps(request(g, pts)).replace("50000.0", raw)
        r = client.post(
            f"/v1/models/{NAME}/predict", content=text, headers={"content-type": "application/json"}
        )
        assert r.status_code == 422 and r.json()["field"] == "conditions.load", r.text
    # Not numbers at all: the schema's refusal, naming conditions.
    for bad in ("5", True, None, [1.0]):
        body = {**request(g, pts), "conditions": {"load": bad}}
        assert post(client, "predict", body, 422)["field"] == "conditions"
    assert post(client, "predict", {**request(g, pts), "conditions": [1.0]}, 422)["field"] == (
        "conditions"
    )
    # The airfoil's conditions are not this model's.
    body = {**request(g, pts), "conditions": {"aoa_deg": 4.0, "speed": 1.0}}
    assert refused(client, body, "conditions.aoa_deg")


def test_out_of_range_load_and_shape_are_warned(client: TestClient) -> None:
    polyline = void(0.3)
    points = cell_points(polyline, 4, seed=5)
    out = post(client, "predict", request(curves(polyline), points, 200000.0))
    assert [(w["field"], w["code"]) for w in out["warnings"]] == [
        ("conditions.load", "load_outside_trained_range")
    ]
    assert "200000" in out["warnings"][0]["message"] and "Pa" in out["warnings"][0]["message"]
    close(columns(out), by_hand(polyline, 200000.0, points))

    # Radii within the trained 0.2..0.4 (5% slack: 0.19..0.41), even lopsided (radius 0.4 on
    # one half, 0.2 on the other: the centroid 0.119 from the centre): no warning.
    for ok in (
        star(0.2, 0.4),
        star(0.195, 0.405),
        lopsided(0.2, 0.4),
        void(0.25, center=(0.55, 0.5)),
    ):
        out = post(client, "geometries", {"geometry": curves(ok)})
        assert out["warnings"] == [], out["warnings"]
    # Too small, too large, a crescent beside the centre (radii in range, centroid 0.23 away).
    shapes = (void(0.1), star(0.25, 0.45), crescent())
    for shape in shapes:
        out = post(client, "geometries", {"geometry": curves(shape)})
        assert [(w["field"], w["code"]) for w in out["warnings"]] == [
            ("geometry", "shape_outside_trained_range")
        ]
        # The warning travels with the id.
        by_id = post(
            client, "predict", request({"geometry_id": out["geometry_id"]}, [[0.02, 0.02]])
        )
        assert [w["code"] for w in by_id["warnings"]] == ["shape_outside_trained_range"]
    assert "does not surround the centre" in out["warnings"][0]["message"]


def test_points_in_the_void_or_outside_the_cell_are_refused(client: TestClient) -> None:
    g = curves(void(0.3))
    message = refused(client, request(g, [[0.1, 0.1], [0.5, 0.5]]), "query")
    assert "query.points[1]" in message
    message = refused(client, request(g, [[0.1, 0.1], [0.2, 0.9], [1.2, 0.5]]), "query.points")
    assert "query.points[2]" in message
    assert "query.points[0]" in refused(client, request(g, [[0.5, -0.01]]), "query.points")
    # On the edge of the cell is in it.
    out = post(client, "predict", request(g, [[0.0, 0.0], [1.0, 1.0]]))
    assert out["warnings"] == []


def test_geometries_the_model_cannot_take(client: TestClient) -> None:
    pts = [[0.1, 0.1]]
    assert "NACA" in refused(client, request({"naca": "2412"}, pts), "geometry.naca")
    refused(client, {"geometry": {"naca": "0012"}}, "geometry.naca", "geometries")
    leaving = void(0.3, center=(0.85, 0.5))
    assert "outside the domain" in refused(client, request(curves(leaving), pts), "geometry.curves")
    refused(client, {"geometry": curves(leaving)}, "geometry.curves", "geometries")
    two = {"curves": [void(0.1, center=(0.3, 0.3)).tolist(), void(0.1, center=(0.7, 0.7)).tolist()]}
    assert "at most 1" in refused(client, request(two, pts), "geometry")


def _tensor_json(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "shape": list(array.shape), "datatype": "FP32", "data": array.tolist()}


def test_v2_models(client: TestClient) -> None:
    index = {m["name"] for m in client.post("/v2/repository/index").json()}
    assert {NAME, f"{NAME}.encoder", f"{NAME}.decoder"} <= index
    meta = client.get(f"/v2/models/{NAME}").json()
    assert {"name": "conditions", "datatype": "FP32", "shape": [1]} in meta["inputs"]

    polyline = void(0.3)
    points = cell_points(polyline, 12, seed=6)
    enc_pts, enc_sdf = encoder_points([polyline], N_ENCODER, DOMAIN["box"], seed=0)
    feeds = {
        "encoder_points": enc_pts.astype(np.float32),
        "encoder_sdf": enc_sdf.astype(np.float32),
        "conditions": np.array([60000.0], np.float32),
        "points": points.astype(np.float32),
        "sdf": signed_distance(points, [polyline]).astype(np.float32),
    }

    def infer(model: str, tensors: dict[str, np.ndarray], status: int = 200) -> dict[str, Any]:
        body = {"inputs": [_tensor_json(k, v) for k, v in tensors.items()]}
        r = client.post(f"/v2/models/{model}/infer", json=body)
        assert r.status_code == status, r.text
        out: dict[str, Any] = r.json()
        return out

    out = infer(NAME, feeds)
    (fields,) = out["outputs"]
    got = np.asarray(fields["data"], np.float64).reshape(fields["shape"])
    close(got, by_hand(polyline, 60000.0, points))
    # The domain route gives the same numbers.
    domain = post(client, "predict", request(curves(polyline), points, 60000.0))
    np.testing.assert_allclose(columns(domain), got, rtol=1e-6, atol=1e-6)

    # Encoder, then decoder: the same again.
    enc = infer(f"{NAME}.encoder", {"points": feeds["encoder_points"], "sdf": feeds["encoder_sdf"]})
    (latents,) = enc["outputs"]
    assert latents["shape"] == list(LATENTS)
    lat = np.asarray(latents["data"], np.float32).reshape(LATENTS)
    dec = infer(
        f"{NAME}.decoder",
        {"latents": lat, "conditions": feeds["conditions"], "points": feeds["points"],
         "sdf": feeds["sdf"]},
    )  # fmt: skip
    (dfields,) = dec["outputs"]
    np.testing.assert_allclose(
        np.asarray(dfields["data"], np.float64).reshape(dfields["shape"]), got, rtol=1e-6
    )

    # The end-to-end model's policy: the domain route's.
    def field_of(tensors: dict[str, np.ndarray]) -> str:
        body: str = infer(NAME, tensors, 422)["field"]
        return body

    assert field_of({**feeds, "sdf": -np.abs(feeds["sdf"])}) == "inputs.sdf"
    outside = feeds["points"].copy()
    outside[3] = [1.5, 0.5]
    assert field_of({**feeds, "points": outside}) == "inputs.points"
    assert field_of({**feeds, "conditions": np.array([-1.0], np.float32)}) == "inputs.conditions"
    r = client.post(
        f"/v2/models/{NAME}/infer",
        json={"inputs": [_tensor_json(k, v) for k, v in feeds.items() if k != "conditions"]
              + [_tensor_json("conditions", np.array([1.0, 1.0], np.float32))]},
    )  # fmt: skip
    assert r.status_code in (400, 422), r.text
    warned = infer(NAME, {**feeds, "conditions": np.array([5000.0], np.float32)})
    warnings = warned["parameters"]["warnings"]  # one string, as for every V2 answer
    assert "load = 5000" in warnings and "trained range" in warnings


def test_tritonclient_end_to_end(standin: StandIn) -> None:
    import tritonclient.http as httpclient

    polyline = void(0.3)
    points = cell_points(polyline, 7, seed=7)
    enc_pts, enc_sdf = encoder_points([polyline], N_ENCODER, DOMAIN["box"], seed=0)
    feeds = {
        "encoder_points": enc_pts,
        "encoder_sdf": enc_sdf,
        "conditions": [90000.0],
        "points": points,
        "sdf": signed_distance(points, [polyline]),
    }
    app = create_app(Settings(model_dir=standin.models))
    with live_server(app) as url:
        client = httpclient.InferenceServerClient(url=url)
        inputs = []
        for name, value in feeds.items():
            array = np.asarray(value, dtype=np.float32)
            inputs.append(httpclient.InferInput(name, list(array.shape), "FP32"))
            inputs[-1].set_data_from_numpy(array, binary_data=True)
        fields = client.infer(NAME, inputs).as_numpy("fields")
        client.close()
    close(np.asarray(fields, np.float64), by_hand(polyline, 90000.0, points))


def test_the_page_lists_the_model_without_breaking(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    js = client.get("/static/js/main.js")
    if js.status_code == 200:  # the generic view draws any task the page has no view for
        assert "GenericView" in js.text or "generic" in js.text


def test_nothing_is_a_500_for_random_junk(client: TestClient) -> None:
    junk: list[Any] = [None, 0, -1, 1e308, "", "x", [], {}, [[]], [None], {"grid": None}, True]
    good = request(curves(void(0.3)), [[0.1, 0.1]])
    for key in ("geometry", "conditions", "query"):
        for value in junk:
            r = client.post(
                f"/v1/models/{NAME}/predict",
                content=json.dumps({**good, key: value}),
                headers={"content-type": "application/json"},
            )
            assert 400 <= r.status_code < 500, (key, value, r.text)
            assert r.json()["field"].split(".")[0] == key, (key, value, r.json())
    for value in junk:
        r = client.post(
            f"/v1/models/{NAME}/predict", json={**good, "conditions": {"load": 1, "x": value}}
        )
        assert r.status_code == 422 and r.json()["field"].startswith("conditions"), r.text


def test_the_published_examples_for_this_task_are_answered(client: TestClient) -> None:
    from app.routers.examples import PREDICT

    chosen = {k: v for k, v in PREDICT.items() if k.startswith("elasticity")}
    assert chosen
    for example in chosen.values():
        out = post(client, "predict", example["value"])
        assert out["warnings"] == [], out["warnings"]
        assert len(out["fields"]["von_mises"]) == len(example["value"]["query"]["points"])


def test_schemathesis_finds_no_5xx_and_no_schema_violation(standin: StandIn) -> None:
    """The published document over an app serving this model alone: the generic request and
    answer shapes are what the document says."""
    from tests.test_openapi import narrowed, run_schemathesis

    app = create_app(Settings(model_dir=standin.models, max_points=2000))
    with TestClient(app) as c:
        spec = c.get("/openapi.json").json()
        v2_names = [m["name"] for m in c.post("/v2/repository/index").json()]
    spec = narrowed(spec, [NAME], v2_names)
    outcome = run_schemathesis(app, spec, 10)
    assert not outcome.errors, "\n\n".join(outcome.errors[:5])
    assert not outcome.failures, "\n\n".join(outcome.failures[:10])
    assert not [s for s in outcome.statuses if s >= 500]
    assert outcome.statuses[200] > 0


# -- the real tiny model (trained and exported in the session: tests/conftest.py) -------------


@pytest.fixture(scope="module")
def tiny(tiny_elasticity: Any) -> Any:
    return tiny_elasticity


@pytest.fixture(scope="module")
def real(tiny: Any) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=tiny.models))) as c:
        yield c


def real_void(domain: dict[str, Any], n: int = 128) -> np.ndarray:
    """A circle in the middle of the trained shape range (about the box's middle without one)."""
    shape = domain.get("shape") or {}
    (x0, x1), (y0, y1) = domain["box"]
    center = shape.get("center", [(x0 + x1) / 2, (y0 + y1) / 2])
    r = float(np.mean(shape["radius"])) if "radius" in shape else 0.3 * min(x1 - x0, y1 - y0)
    return void(r, n=n, center=(float(center[0]), float(center[1])))


def real_by_hand(version_dir: Path, polyline: np.ndarray, cond: list[float], points: Any) -> Any:
    """The manifest's `compose`, straight from onnxruntime."""
    import onnxruntime as ort

    manifest = json.loads((version_dir / "manifest.json").read_text())
    d = manifest["domain"]
    cpu = ["CPUExecutionProvider"]
    enc = ort.InferenceSession(str(version_dir / "encoder.onnx"), providers=cpu)
    dec = ort.InferenceSession(str(version_dir / "decoder.onnx"), providers=cpu)
    pts, sdf = encoder_points([polyline], d["n_encoder"], d["box"], seed=d["encoder_seed"])
    latents = enc.run(None, {"points": pts.astype(np.float32), "sdf": sdf.astype(np.float32)})[0]
    q = np.asarray(points, np.float64)
    feeds = {
        "latents": latents,
        "conditions": np.asarray(cond, np.float32),
        **per_point_feeds(dec, q, polyline),
    }
    out: np.ndarray = dec.run(None, feeds)[0]
    return out


def per_point_feeds(dec: Any, q: np.ndarray, polyline: np.ndarray) -> dict[str, np.ndarray]:
    """points, sdf and, where the decoder takes it, the surface shape at each point."""
    f = surface_features(q, [polyline]).astype(np.float32)
    feeds = {"points": q.astype(np.float32), "sdf": f[:, 0], "shape": f[:, 1:]}
    names = [i.name for i in dec.get_inputs()]
    return {k: v for k, v in feeds.items() if k in names}


def test_the_real_model_answers_as_its_graphs(real: TestClient, tiny: Any) -> None:
    manifest = json.loads((tiny.version_dir / "manifest.json").read_text())
    assert (manifest["family"], manifest["task"]) == ("enf2enf", "geometry-fields")
    d, fields = manifest["domain"], manifest["fields"]
    names = [c["name"] for c in d["conditions"]]
    cond = [float(np.mean(c["range"])) for c in d["conditions"]]
    polyline = real_void(d)
    points = cell_points(polyline, 20, seed=11)
    url = f"/v1/models/{tiny.name}/predict"
    body = {
        "geometry": {"curves": [polyline.tolist()]},
        "conditions": dict(zip(names, cond, strict=True)),
        "query": {"points": points.tolist()},
    }
    r = real.post(url, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["cache"] == "miss" and out["warnings"] == [], out["warnings"]
    got = np.stack([np.asarray(out["fields"][k], np.float64) for k in fields], axis=1)
    want = real_by_hand(tiny.version_dir, polyline, cond, points).astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())

    # By id, another load: the latents are reused.
    again = {**body, "geometry": {"geometry_id": out["geometry_id"]}}
    again["conditions"] = {c["name"]: float(c["range"][0]) for c in d["conditions"]}
    r = real.post(url, json=again)
    assert r.status_code == 200 and r.json()["cache"] == "partial", r.text

    # A grid over the cell: the points outside the void, every value finite.
    grid = {**body, "query": {"grid": {"nx": 12, "ny": 10}}}
    r = real.post(url, json=grid)
    assert r.status_code == 200, r.text
    g = r.json()
    kept = np.asarray(g["points"])
    assert (signed_distance(kept, [polyline]) >= 0).all() and len(kept) < 120
    assert all(
        np.isfinite(g["fields"][k]).all() and len(g["fields"][k]) == len(kept) for k in fields
    )

    # Refusals name the manifest's conditions; a point in the void (its centre) is refused.
    r = real.post(url, json={**body, "conditions": {}})
    assert r.status_code == 422 and r.json()["field"] == f"conditions.{names[0]}", r.text
    centre = polyline[:-1].mean(axis=0).tolist()
    r = real.post(url, json={**body, "query": {"points": [centre]}})
    assert r.status_code == 422 and r.json()["field"] == "query", r.text
    r = real.post(url, json={**body, "query": {"points": [[0.5, 1.2]]}})
    assert r.status_code == 422 and r.json()["field"] == "query.points", r.text


def test_the_real_model_end_to_end_on_v2(real: TestClient, tiny: Any) -> None:
    manifest = json.loads((tiny.version_dir / "manifest.json").read_text())
    d = manifest["domain"]
    cond = [float(np.mean(c["range"])) for c in d["conditions"]]
    polyline = real_void(d)
    points = cell_points(polyline, 9, seed=12)
    enc_pts, enc_sdf = encoder_points([polyline], d["n_encoder"], d["box"], seed=d["encoder_seed"])
    import onnxruntime as ort

    dec = ort.InferenceSession(
        str(tiny.version_dir / "decoder.onnx"), providers=["CPUExecutionProvider"]
    )
    assert "shape" in [i.name for i in dec.get_inputs()]  # the tiny model takes the shape
    feeds = {
        "encoder_points": enc_pts.astype(np.float32),
        "encoder_sdf": enc_sdf.astype(np.float32),
        "conditions": np.asarray(cond, np.float32),
        **per_point_feeds(dec, points, polyline),
    }
    url = f"/v2/models/{tiny.name}/infer"
    r = real.post(url, json={"inputs": [_tensor_json(k, v) for k, v in feeds.items()]})
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    got = np.asarray(out["data"], np.float64).reshape(out["shape"])
    want = real_by_hand(tiny.version_dir, polyline, cond, points)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    # A per-point input one row short of the points is refused, naming it.
    for name in ("sdf", "shape"):
        short = {**feeds, name: feeds[name][:-1]}
        r = real.post(url, json={"inputs": [_tensor_json(k, v) for k, v in short.items()]})
        assert r.status_code == 422 and r.json()["field"] == f"inputs.{name}", r.text
