"""Open Inference Protocol for an enf2enf model: `<name>.encoder`, `<name>.decoder` and `<name>`
end to end, with tritonclient.http against a real server; answers equal the domain route's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from geometry.airfoils import encoder_points, naca4, signed_distance
from tests.helpers_serving import fluid_points, live_server, manifest_of


@pytest.fixture(scope="module")
def domain(tiny_airfoil: Any) -> dict[str, Any]:
    found: dict[str, Any] = manifest_of(tiny_airfoil.version_dir)["domain"]
    return found


@pytest.fixture(scope="module")
def client(tiny_airfoil: Any) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=tiny_airfoil.models))) as c:
        yield c


def inputs_of(
    domain: dict[str, Any], code: str, aoa: float, speed: float, points: np.ndarray
) -> dict[str, np.ndarray]:
    """The end-to-end model's tensors, built with geometry.airfoils as the manifest says."""
    polylines = [naca4(code, domain["panels_per_element"])]
    enc_pts, enc_sdf = encoder_points(
        polylines, domain["n_encoder"], domain["box"], seed=domain["encoder_seed"]
    )
    return {
        "encoder_points": enc_pts.astype(np.float32),
        "encoder_sdf": enc_sdf.astype(np.float32),
        "conditions": np.array([aoa, speed], np.float32),
        "points": points.astype(np.float32),
        "sdf": signed_distance(points, polylines).astype(np.float32),
    }


def domain_fields(c: Any, name: str, code: str, aoa: float, speed: float, pts: Any) -> np.ndarray:
    r = c.post(
        f"/v1/models/{name}/predict",
        json={
            "geometry": {"naca": code},
            "conditions": {"aoa_deg": aoa, "speed": speed},
            "query": {"points": pts.tolist()},
        },
    )
    assert r.status_code == 200, r.text
    f = r.json()["fields"]
    return np.stack([np.asarray(f[k], np.float32) for k in ("u", "v", "cp")], axis=1)


def tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "shape": list(array.shape), "datatype": "FP32", "data": array.tolist()}


def test_metadata_of_the_three_models(
    client: TestClient, tiny_airfoil: Any, domain: dict[str, Any]
) -> None:
    name, m = tiny_airfoil.name, domain["n_encoder"]
    graphs = manifest_of(tiny_airfoil.version_dir)["graphs"]
    index = client.post("/v2/repository/index").json()
    # The baseline DeepONet in the version folder is not served.
    assert {x["name"] for x in index} == {name, f"{name}.encoder", f"{name}.decoder"}
    for graph in ("encoder", "decoder"):
        meta = client.get(f"/v2/models/{name}.{graph}").json()
        assert meta["platform"] == "onnxruntime_onnx"
        for side in ("inputs", "outputs"):
            assert meta[side] == [
                {"name": t["name"], "datatype": "FP32", "shape": t["shape"]}
                for t in graphs[graph][side]
            ]
    e2e = client.get(f"/v2/models/{name}").json()
    assert e2e["platform"] == "ensemble"
    assert e2e["inputs"] == [
        {"name": "encoder_points", "datatype": "FP32", "shape": [m, 2]},
        {"name": "encoder_sdf", "datatype": "FP32", "shape": [m]},
        {"name": "conditions", "datatype": "FP32", "shape": [2]},
        {"name": "points", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "sdf", "datatype": "FP32", "shape": [-1]},
    ]
    assert e2e["outputs"] == [{"name": "fields", "datatype": "FP32", "shape": [-1, 3]}]
    r = client.get(f"/v2/models/{name}.baseline_deeponet")
    assert r.status_code == 404 and r.json()["field"] == "model"


def test_json_inference_equals_the_domain_route_and_the_graphs(
    client: TestClient, tiny_airfoil: Any, domain: dict[str, Any]
) -> None:
    name = tiny_airfoil.name
    points = fluid_points([naca4("2412", domain["panels_per_element"])], 12, seed=20)
    want = domain_fields(client, name, "2412", 3.0, 1.1, points)
    feeds = inputs_of(domain, "2412", 3.0, 1.1, points)
    r = client.post(
        f"/v2/models/{name}/infer", json={"inputs": [tensor(k, v) for k, v in feeds.items()]}
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    (out,) = doc["outputs"]
    assert out["name"] == "fields" and out["shape"] == [12, 3]
    np.testing.assert_array_equal(np.asarray(out["data"], np.float32).reshape(12, 3), want)
    assert doc["parameters"]["cache"] == "miss"  # other key than the domain route's latents

    cpu = ["CPUExecutionProvider"]
    vdir = tiny_airfoil.version_dir
    encoder = ort.InferenceSession(str(vdir / "encoder.onnx"), providers=cpu)
    decoder = ort.InferenceSession(str(vdir / "decoder.onnx"), providers=cpu)
    latents = encoder.run(None, {"points": feeds["encoder_points"], "sdf": feeds["encoder_sdf"]})[0]
    r = client.post(
        f"/v2/models/{name}.encoder/infer",
        json={
            "inputs": [
                tensor("points", feeds["encoder_points"]),
                tensor("sdf", feeds["encoder_sdf"]),
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["parameters"]["cache"] == "hit"  # the end-to-end call's latents
    got = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(latents.shape)
    np.testing.assert_array_equal(got, latents)
    dec_feeds = {
        "latents": latents,
        "conditions": feeds["conditions"],
        "points": feeds["points"],
        "sdf": feeds["sdf"],
    }
    r = client.post(
        f"/v2/models/{name}.decoder/infer",
        json={"inputs": [tensor(k, v) for k, v in dec_feeds.items()]},
    )
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(12, 3)
    np.testing.assert_allclose(got, decoder.run(None, dec_feeds)[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got, want)


def test_end_to_end_policy(client: TestClient, tiny_airfoil: Any, domain: dict[str, Any]) -> None:
    name = tiny_airfoil.name
    points = np.array([[0.5, 0.4], [3.0, 0.0]])
    feeds = inputs_of(domain, "0012", domain["aoa_deg"][1] + 1, 1.0, points)
    r = client.post(
        f"/v2/models/{name}/infer", json={"inputs": [tensor(k, v) for k, v in feeds.items()]}
    )
    assert r.status_code == 200, r.text
    warnings = r.json()["parameters"]["warnings"]
    assert "aoa_deg" in warnings and "outside the trained box" in warnings
    inside = {**feeds, "sdf": np.array([0.1, -0.01], np.float32)}
    r = client.post(
        f"/v2/models/{name}/infer", json={"inputs": [tensor(k, v) for k, v in inside.items()]}
    )
    assert r.status_code == 422 and r.json()["field"] == "inputs.sdf"
    still = {**feeds, "conditions": np.array([4.0, 0.0], np.float32)}
    r = client.post(
        f"/v2/models/{name}/infer", json={"inputs": [tensor(k, v) for k, v in still.items()]}
    )
    assert r.status_code == 422 and r.json()["field"] == "inputs.conditions"
    short = {**feeds, "encoder_points": feeds["encoder_points"][:-1]}
    r = client.post(
        f"/v2/models/{name}/infer", json={"inputs": [tensor(k, v) for k, v in short.items()]}
    )
    assert r.status_code == 400 and r.json()["field"] == "inputs.encoder_points"


@pytest.fixture(scope="module")
def server(tiny_airfoil: Any) -> Iterator[str]:
    with live_server(create_app(Settings(model_dir=tiny_airfoil.models))) as url:
        yield url


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infer_equals_the_domain_route(
    server: str, tiny_airfoil: Any, domain: dict[str, Any], binary: bool
) -> None:
    import httpx
    import tritonclient.http as httpclient

    name = tiny_airfoil.name
    code, aoa, speed = ("4412", 6.0, 0.9) if binary else ("0012", -2.0, 1.3)
    points = fluid_points([naca4(code, domain["panels_per_element"])], 40, seed=21)
    with httpx.Client(base_url=f"http://{server}") as web:
        want = domain_fields(web, name, code, aoa, speed, points)

    client = httpclient.InferenceServerClient(url=server)
    try:
        assert client.is_model_ready(name) and client.is_model_ready(f"{name}.encoder")
        feeds = inputs_of(domain, code, aoa, speed, points)
        inputs = []
        for key, value in feeds.items():
            infer_input = httpclient.InferInput(key, list(value.shape), "FP32")
            infer_input.set_data_from_numpy(value, binary_data=binary)
            inputs.append(infer_input)
        outputs = [httpclient.InferRequestedOutput("fields", binary_data=binary)]
        result = client.infer(name, inputs, outputs=outputs, request_id="geo-1")
        fields = result.as_numpy("fields")
        assert fields.shape == (40, 3) and fields.dtype == np.float32
        np.testing.assert_array_equal(fields, want)
        assert result.get_response()["id"] == "geo-1"

        enc_inputs = []
        for key in ("points", "sdf"):
            value = feeds[f"encoder_{key}"]
            infer_input = httpclient.InferInput(key, list(value.shape), "FP32")
            infer_input.set_data_from_numpy(value, binary_data=binary)
            enc_inputs.append(infer_input)
        latents = client.infer(f"{name}.encoder", enc_inputs)
        assert latents.get_response()["parameters"]["cache"] == "hit"
        want_shape = manifest_of(tiny_airfoil.version_dir)["graphs"]["encoder"]["outputs"][0]
        assert list(latents.as_numpy("latents").shape) == want_shape["shape"]
    finally:
        client.close()
