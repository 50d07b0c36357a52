"""Open Inference Protocol (KServe V2): metadata, JSON and binary tensors, and tritonclient.http
against a real uvicorn server, whose answers equal the domain route's and the graphs'."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.helpers_serving import (
    air_receivers,
    assert_close,
    by_hand,
    live_server,
    manifest_of,
    sources_in_region,
)

MAX_POINTS = 5000


@pytest.fixture(scope="module")
def client(tiny_acoustic: Any) -> Iterator[TestClient]:
    settings = Settings(model_dir=tiny_acoustic.models, max_points=MAX_POINTS)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def manifest(tiny_acoustic: Any) -> dict[str, Any]:
    return manifest_of(tiny_acoustic.version_dir)


def points_of(receivers: np.ndarray, times: list[float]) -> np.ndarray:
    """Receiver-major space-time rows, as the domain route builds them."""
    return np.array([[*r, t] for r in receivers for t in times], dtype=np.float32)


def domain_pressure(
    c: Any, name: str, source: list[float], receivers: np.ndarray, times: Any
) -> Any:
    r = c.post(
        f"/v1/models/{name}/predict",
        json={"source": source, "receivers": receivers.tolist(), "times": times},
    )
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["pressure"], dtype=np.float32)


def tensor(name: str, array: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.tolist()}


def binary_body(
    inputs: list[tuple[str, np.ndarray, str]], extra: dict[str, Any] | None = None
) -> tuple[bytes, dict[str, str]]:
    header = {
        "inputs": [
            {
                "name": n,
                "shape": list(a.shape),
                "datatype": d,
                "parameters": {"binary_data_size": a.nbytes},
            }
            for n, a, d in inputs
        ],
        **(extra or {}),
    }
    head = json.dumps(header).encode()
    return head + b"".join(a.tobytes() for _, a, _ in inputs), {
        "Inference-Header-Content-Length": str(len(head))
    }


def read_binary(response: Any) -> dict[str, np.ndarray]:
    n = int(response.headers["inference-header-content-length"])
    doc = json.loads(response.content[:n])
    out, offset = {}, n
    for o in doc["outputs"]:
        size = o["parameters"]["binary_data_size"]
        dtype = {"FP32": np.float32}[o["datatype"]]
        out[o["name"]] = np.frombuffer(response.content[offset : offset + size], dtype).reshape(
            o["shape"]
        )
        offset += size
    assert offset == len(response.content)
    return out


# -- server and model metadata ---------------------------------------------------------------


def test_server_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "fieldserve" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_matches_the_manifest(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    name, dim = tiny_acoustic.name, tiny_acoustic.dim
    graphs = manifest["graphs"]
    for graph in ("branch", "trunk"):
        for url in (f"/v2/models/{name}.{graph}", f"/v2/models/{name}.{graph}/versions/1"):
            meta = client.get(url).json()
            assert meta["name"] == f"{name}.{graph}" and meta["versions"] == ["1"]
            assert meta["platform"] == "onnxruntime_onnx"
            for side in ("inputs", "outputs"):
                assert meta[side] == [
                    {"name": t["name"], "datatype": "FP32", "shape": t["shape"]}
                    for t in graphs[graph][side]
                ]
                assert all(t["dtype"] == "float32" for t in graphs[graph][side])
    e2e = client.get(f"/v2/models/{name}").json()
    assert e2e["platform"] == "ensemble"
    assert e2e["inputs"] == [
        {"name": "source", "datatype": "FP32", "shape": [-1, dim]},
        {"name": "points", "datatype": "FP32", "shape": [-1, dim + 1]},
    ]
    assert e2e["outputs"] == [{"name": "pressure", "datatype": "FP32", "shape": [-1, -1]}]
    index = client.post("/v2/repository/index").json()
    assert {m["name"] for m in index} == {name, f"{name}.branch", f"{name}.trunk"}
    for ready in (f"/v2/models/{name}/ready", f"/v2/models/{name}.trunk/versions/1/ready"):
        assert client.get(ready).json()["ready"] is True


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v2/models/nope", "model"),
        ("/v2/models/{name}.encoder", "model"),
        ("/v2/models/{name}/versions/7", "version"),
        ("/v2/models/nope/ready", "model"),
    ],
)
def test_unknown_models_are_404(
    client: TestClient, tiny_acoustic: Any, path: str, field: str
) -> None:
    r = client.get(path.format(name=tiny_acoustic.name))
    assert r.status_code == 404 and r.json()["field"] == field and r.json()["error"]


# -- inference with plain HTTP ---------------------------------------------------------------


def test_json_inference_equals_the_domain_route(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    source = sources_in_region(manifest, 1)[0]
    receivers = air_receivers(manifest, 4, seed=40)
    times = [0.0, 0.001, 0.002]
    want = domain_pressure(client, tiny_acoustic.name, source, receivers, times)
    src = np.asarray([source], np.float32)
    pts = points_of(receivers, times)
    r = client.post(
        f"/v2/models/{tiny_acoustic.name}/infer",
        json={"id": "req-1", "inputs": [tensor("source", src), tensor("points", pts)]},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["model_name"] == tiny_acoustic.name and doc["model_version"] == "1"
    assert doc["id"] == "req-1"
    assert doc["parameters"]["cache"] == "partial"  # both factors cached by the domain route
    (out,) = doc["outputs"]
    assert out["name"] == "pressure" and out["datatype"] == "FP32"
    assert out["shape"] == [1, len(pts)]
    got = np.asarray(out["data"], np.float32).reshape(len(receivers), len(times))
    np.testing.assert_array_equal(got, want)


def test_binary_inference_of_every_graph_equals_onnxruntime(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    cpu = ["CPUExecutionProvider"]
    vdir = tiny_acoustic.version_dir
    sources = np.asarray(sources_in_region(manifest, 3), np.float32)
    pts = points_of(air_receivers(manifest, 5, seed=41), [0.0, 0.0015, 0.003])
    branch = ort.InferenceSession(str(vdir / "branch.onnx"), providers=cpu)
    trunk = ort.InferenceSession(str(vdir / "trunk.onnx"), providers=cpu)
    want_coefficients = branch.run(None, {"source": sources})[0]
    want_basis = trunk.run(None, {"points": pts})[0]

    body, headers = binary_body([("source", sources, "FP32")])
    r = client.post(f"/v2/models/{tiny_acoustic.name}.branch/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    # No outputs and no binary_data_output asked: the answer is JSON.
    coefficients = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(3, -1)
    np.testing.assert_allclose(coefficients, want_coefficients, rtol=1e-6, atol=1e-6)

    body, headers = binary_body(
        [("points", pts, "FP32")], {"parameters": {"binary_data_output": True}}
    )
    r = client.post(f"/v2/models/{tiny_acoustic.name}.trunk/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    basis = read_binary(r)["basis"]
    np.testing.assert_allclose(basis, want_basis, rtol=1e-6, atol=1e-6)
    again = client.post(
        f"/v2/models/{tiny_acoustic.name}.trunk/infer", content=body, headers=headers
    )
    assert (
        json.loads(again.content[: int(again.headers["inference-header-content-length"])])[
            "parameters"
        ]["cache"]
        == "hit"
    )
    np.testing.assert_array_equal(read_binary(again)["basis"], basis)

    # End to end, several sources at once, asking for the output in binary explicitly.
    body, headers = binary_body(
        [("source", sources, "FP32"), ("points", pts, "FP32")],
        {"outputs": [{"name": "pressure", "parameters": {"binary_data": True}}]},
    )
    r = client.post(
        f"/v2/models/{tiny_acoustic.name}/versions/1/infer", content=body, headers=headers
    )
    assert r.status_code == 200, r.text
    pressure = read_binary(r)["pressure"]
    assert pressure.shape == (3, len(pts))
    want = want_coefficients.astype(np.float64) @ want_basis.T.astype(np.float64)
    np.testing.assert_allclose(pressure, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_a_repeated_call_is_answered_whole_from_the_cache(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    """Keyed on the bound tensors: the same tensors sent as JSON, then binary, are a hit."""
    sources = np.asarray(sources_in_region(manifest, 4)[2:], np.float32)
    pts = points_of(air_receivers(manifest, 3, seed=43), [0.0, 0.002])
    url = f"/v2/models/{tiny_acoustic.name}/infer"
    first = client.post(url, json={"inputs": [tensor("source", sources), tensor("points", pts)]})
    assert first.status_code == 200, first.text
    assert first.json()["parameters"]["cache"] == "miss"
    body, headers = binary_body([("source", sources, "FP32"), ("points", pts, "FP32")])
    again = client.post(url, content=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["parameters"]["cache"] == "hit"
    assert again.json()["outputs"] == first.json()["outputs"]


def test_gzip_requests_are_accepted(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    src = np.asarray(sources_in_region(manifest, 1), np.float32)
    body = json.dumps({"inputs": [tensor("source", src)]}).encode()
    r = client.post(
        f"/v2/models/{tiny_acoustic.name}.branch/infer",
        content=gzip.compress(body),
        headers={"Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/v2/models/{tiny_acoustic.name}.branch/infer",
        content=body,
        headers={"Content-Encoding": "br"},
    )
    assert r.status_code == 415 and r.json()["field"] == "content-encoding"


def _bad_requests(name: str, dim: int) -> list[tuple[str, str, dict[str, Any], int, str]]:
    src = np.full((1, dim), 0.5, np.float32)
    pts = np.full((2, dim + 1), 0.001, np.float32)
    good = [tensor("source", src), tensor("points", pts)]
    e2e = f"/v2/models/{name}/infer"
    trunk = f"/v2/models/{name}.trunk/infer"
    return [
        ("no inputs", e2e, {"inputs": []}, 400, "inputs"),
        ("missing input", e2e, {"inputs": good[:1]}, 400, "inputs"),
        ("unknown input", e2e, {"inputs": [*good, tensor("extra", src)]}, 400, "inputs"),
        ("twice", e2e, {"inputs": [*good, good[0]]}, 400, "inputs[2].name"),
        ("FP64", e2e, {"inputs": [tensor("source", src, "FP64"), good[1]]}, 400, "inputs.source"),
        (
            "BYTES",
            e2e,
            {"inputs": [tensor("source", src, "BYTES"), good[1]]},
            400,
            "inputs[0].datatype",
        ),
        ("rank", trunk, {"inputs": [tensor("points", pts.reshape(-1))]}, 400, "inputs.points"),
        ("width", trunk, {"inputs": [tensor("points", pts[:, :dim])]}, 400, "inputs.points"),
        (
            "size vs shape",
            trunk,
            {
                "inputs": [
                    {
                        "name": "points",
                        "shape": [3, dim + 1],
                        "datatype": "FP32",
                        "data": pts.ravel().tolist(),
                    }
                ]
            },
            400,
            "inputs[0].data",
        ),
        (
            "strings",
            trunk,
            {
                "inputs": [
                    {
                        "name": "points",
                        "shape": [1, dim + 1],
                        "datatype": "FP32",
                        "data": ["a"] * (dim + 1),
                    }
                ]
            },
            400,
            "inputs[0].data",
        ),
        (
            "no data",
            trunk,
            {"inputs": [{"name": "points", "shape": [1, dim + 1], "datatype": "FP32"}]},
            400,
            "inputs[0].data",
        ),
        (
            "bad shape",
            trunk,
            {"inputs": [{"name": "points", "shape": [-1, 3], "datatype": "FP32", "data": []}]},
            400,
            "inputs[0].shape",
        ),
        (
            "empty",
            trunk,
            {"inputs": [tensor("points", np.zeros((0, dim + 1), np.float32))]},
            400,
            "inputs.points",
        ),
        (
            "too many points",
            trunk,
            {"inputs": [tensor("points", np.full((MAX_POINTS + 1, dim + 1), 0.001, np.float32))]},
            400,
            "inputs.points",
        ),
        (
            "too many values",
            e2e,
            {
                "inputs": [
                    tensor("source", np.repeat(src, 3, 0)),
                    tensor("points", np.full((MAX_POINTS // 2, dim + 1), 0.001, np.float32)),
                ]
            },
            422,
            "points",
        ),
        (
            "datatype not a string",
            e2e,
            {"inputs": [{**good[0], "datatype": ["FP32"]}, good[1]]},
            400,
            "inputs[0].datatype",
        ),
        (
            "unknown output",
            e2e,
            {"inputs": good, "outputs": [{"name": "velocity"}]},
            400,
            "outputs",
        ),
        (
            "binary flag",
            e2e,
            {"inputs": good, "parameters": {"binary_data_output": "yes"}},
            400,
            "parameters.binary_data_output",
        ),
        ("id type", e2e, {"inputs": good, "id": 7}, 400, "id"),
        (
            "points that overflow the trunk (its answer would be null)",
            trunk,
            {"inputs": [tensor("points", np.full((1, dim + 1), 3e38, np.float32))]},
            422,
            "inputs.points",
        ),
        (
            "source in a wall",
            e2e,
            {"inputs": [tensor("source", np.full((1, dim), 50.0, np.float32)), good[1]]},
            422,
            "source",
        ),
        (
            "point in a wall",
            e2e,
            {"inputs": [good[0], tensor("points", np.full((1, dim + 1), -1.0, np.float32))]},
            422,
            "points",
        ),
    ]


def test_bad_inference_requests_name_the_problem(client: TestClient, tiny_acoustic: Any) -> None:
    for what, url, doc, status, field in _bad_requests(tiny_acoustic.name, tiny_acoustic.dim):
        r = client.post(url, json=doc)
        assert r.status_code == status, (what, r.text)
        assert r.json()["field"] == field and r.json()["error"], (what, r.json())


def test_bad_binary_requests_name_the_problem(client: TestClient, tiny_acoustic: Any) -> None:
    dim = tiny_acoustic.dim
    url = f"/v2/models/{tiny_acoustic.name}.trunk/infer"
    pts = np.full((2, dim + 1), 0.001, np.float32)
    body, headers = binary_body([("points", pts, "FP32")])
    cases = [
        ("not json", b"{nope", {}, "body"),
        (
            "header length",
            body,
            {"Inference-Header-Content-Length": "99999"},
            "inference-header-content-length",
        ),
        (
            "header length text",
            body,
            {"Inference-Header-Content-Length": "ten"},
            "inference-header-content-length",
        ),
        ("missing bytes", body[:-4], headers, "inputs[0].parameters"),
        ("extra bytes", body + b"\0" * 4, headers, "inference-header-content-length"),
    ]
    nan = pts.copy()
    nan[1, 0] = np.nan
    nan_body, nan_headers = binary_body([("points", nan, "FP32")])
    cases.append(("nan", nan_body, nan_headers, "inputs[0].data"))
    # No element, but one dimension no array can have: once a 500 from numpy.
    empty = {"name": "points", "shape": [0, 2**62, dim + 1], "datatype": "FP32",
             "parameters": {"binary_data_size": 0}}  # fmt: skip
    huge = json.dumps({"inputs": [empty]}).encode()
    huge_headers = {"Inference-Header-Content-Length": str(len(huge))}
    cases.append(("huge zero-size shape", huge, huge_headers, "inputs[0].shape"))
    for what, content, hdrs, field in cases:
        r = client.post(url, content=content, headers=hdrs)
        assert r.status_code == 400, (what, r.text)
        assert r.json()["field"] == field, (what, r.json())


# -- tritonclient.http against a real server --------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_acoustic: Any) -> Iterator[str]:
    with live_server(create_app(Settings(model_dir=tiny_acoustic.models))) as url:
        yield url


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infer_equals_the_domain_route(
    server: str, tiny_acoustic: Any, manifest: dict[str, Any], binary: bool
) -> None:
    import httpx
    import tritonclient.http as httpclient

    name, dim = tiny_acoustic.name, tiny_acoustic.dim
    source = sources_in_region(manifest, 2)[1 if binary else 0]
    receivers = air_receivers(manifest, 6, seed=42)
    times = [0.0, 0.001, 0.002, 0.003]
    with httpx.Client(base_url=f"http://{server}") as web:
        want = domain_pressure(web, name, source, receivers, times)
    assert_close(want, by_hand(tiny_acoustic.version_dir, source, receivers, times))

    client = httpclient.InferenceServerClient(url=server)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(name) and client.is_model_ready(f"{name}.trunk")
        meta = client.get_model_metadata(name)
        assert [i["shape"] for i in meta["inputs"]] == [[-1, dim], [-1, dim + 1]]
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]

        src = np.asarray([source], np.float32)
        pts = points_of(receivers, times)
        inputs = [
            httpclient.InferInput("source", list(src.shape), "FP32"),
            httpclient.InferInput("points", list(pts.shape), "FP32"),
        ]
        inputs[0].set_data_from_numpy(src, binary_data=binary)
        inputs[1].set_data_from_numpy(pts, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("pressure", binary_data=binary)]
        result = client.infer(name, inputs, outputs=outputs, request_id="t-1")
        pressure = result.as_numpy("pressure")
        assert pressure.shape == (1, len(pts)) and pressure.dtype == np.float32
        np.testing.assert_array_equal(pressure.reshape(len(receivers), len(times)), want)
        response = result.get_response()
        assert response["id"] == "t-1" and response["parameters"]["cache"] in ("partial", "hit")

        # One graph alone, with the default (binary) outputs and a gzip-compressed request.
        trunk_in = httpclient.InferInput("points", list(pts.shape), "FP32")
        trunk_in.set_data_from_numpy(pts, binary_data=binary)
        basis = client.infer(
            f"{name}.trunk", [trunk_in], request_compression_algorithm="gzip"
        ).as_numpy("basis")
        assert basis.shape[0] == len(pts)
        with httpx.Client(base_url=f"http://{server}") as web:
            r = web.post(
                f"/v2/models/{name}.branch/infer",
                json={"inputs": [tensor("source", src)]},
            )
        coefficients = np.asarray(r.json()["outputs"][0]["data"], np.float32)
        recomposed = basis.astype(np.float64) @ coefficients.astype(np.float64)
        assert_close(recomposed.reshape(len(receivers), len(times)), want.astype(np.float64))

        with pytest.raises(Exception, match="no V2 model named"):
            client.get_model_metadata("nope")
    finally:
        client.close()
