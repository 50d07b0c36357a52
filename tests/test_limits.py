"""Every V2 call is bounded in bytes before any graph runs: its answer (as it will be sent,
binary or JSON) and the arrays it holds; big runs are chunked and give the same values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from app.families.deeponet import CHUNK_ROWS
from app.main import create_app
from app.runtime import SHRINK_ROWS
from app.settings import Settings
from tests.helpers_serving import manifest_of, metric, parse_metrics, sources_in_region
from tests.test_v2 import binary_body, read_binary

SOURCES = 100


@pytest.fixture(scope="module")
def width(tiny_acoustic: Any) -> int:
    """Columns of the branch's coefficients (p + 1)."""
    spec = manifest_of(tiny_acoustic.version_dir)["graphs"]["branch"]["outputs"][0]
    return int(spec["shape"][1])


@pytest.fixture(scope="module")
def client(tiny_acoustic: Any, width: int) -> Iterator[TestClient]:
    # 100 sources' coefficients fit as binary (4 bytes a value), not as JSON (up to 16).
    settings = Settings(
        model_dir=tiny_acoustic.models,
        max_points=50_000,
        max_response_bytes=SOURCES * width * 8,
        max_work_bytes=SOURCES * width * 8,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def sources(tiny_acoustic: Any, n: int) -> np.ndarray:
    region = np.asarray(sources_in_region(manifest_of(tiny_acoustic.version_dir), 4), np.float32)
    return np.resize(region, (n, region.shape[1]))


def graph_runs(client: TestClient) -> float:
    samples = parse_metrics(client.get("/metrics").text)
    return metric(samples, "fieldserve_graph_compute_seconds_count")


def test_the_answer_is_bounded_as_it_will_be_sent(client: TestClient, tiny_acoustic: Any) -> None:
    model = f"{tiny_acoustic.name}.branch"
    many = sources(tiny_acoustic, SOURCES)
    body, headers = binary_body(
        [("source", many, "FP32")], {"parameters": {"binary_data_output": True}}
    )
    r = client.post(f"/v2/models/{model}/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert read_binary(r)["coefficients"].shape[0] == SOURCES

    before = graph_runs(client)
    body, headers = binary_body([("source", many[::-1].copy(), "FP32")])  # JSON answer
    r = client.post(f"/v2/models/{model}/infer", content=body, headers=headers)
    assert r.status_code == 422, r.text
    error = r.json()
    assert error["field"] == "inputs.source"
    assert "FIELDSERVE_MAX_RESPONSE_BYTES" in error["error"] and "binary" in error["error"]
    assert graph_runs(client) == before  # refused from the shapes, nothing computed


def test_the_arrays_held_are_bounded(client: TestClient, tiny_acoustic: Any, width: int) -> None:
    """Few values answered, many held: each source's coefficients besides the one point."""
    n = SOURCES * 4
    points = np.zeros((1, tiny_acoustic.dim + 1), np.float32)
    body, headers = binary_body(
        [("source", sources(tiny_acoustic, n), "FP32"), ("points", points, "FP32")],
        {"parameters": {"binary_data_output": True}},
    )
    before = graph_runs(client)
    r = client.post(f"/v2/models/{tiny_acoustic.name}/infer", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "inputs.source"
    assert "FIELDSERVE_MAX_WORK_BYTES" in r.json()["error"]
    assert graph_runs(client) == before


def test_runs_in_chunks_give_the_values_of_one_run(tiny_acoustic: Any) -> None:
    """More rows than a chunk (and than the arena-releasing threshold): the same numbers."""
    n = CHUNK_ROWS + SHRINK_ROWS + 17
    many = sources(tiny_acoustic, n) + np.linspace(0, 1e-3, n, dtype=np.float32)[:, None]
    cpu = ["CPUExecutionProvider"]
    branch = ort.InferenceSession(str(tiny_acoustic.version_dir / "branch.onnx"), providers=cpu)
    want = branch.run(None, {"source": many})[0]
    settings = Settings(model_dir=tiny_acoustic.models, max_points=50_000)
    with TestClient(create_app(settings)) as c:
        body, headers = binary_body(
            [("source", many, "FP32")], {"parameters": {"binary_data_output": True}}
        )
        r = c.post(f"/v2/models/{tiny_acoustic.name}.branch/infer", content=body, headers=headers)
        assert r.status_code == 200, r.text
        head = json.loads(r.content[: int(r.headers["inference-header-content-length"])])
        assert head["outputs"][0]["shape"] == list(want.shape)
        np.testing.assert_allclose(read_binary(r)["coefficients"], want, rtol=1e-6, atol=1e-6)


def test_a_domain_answer_is_bounded_as_it_will_be_sent(
    client: TestClient, tiny_acoustic: Any, width: int
) -> None:
    """A receiver grid whose JSON answer (pressure, receivers, grid index) would pass the
    limit: refused before anything runs, naming receivers; the same as raw arrays fits."""
    limit = SOURCES * width * 8
    n = limit // (16 + 24 * (tiny_acoustic.dim + 1)) + 50  # over the limit as JSON only
    side = int(np.ceil(n ** (1 / tiny_acoustic.dim)))
    grid = dict(zip(("nx", "ny", "nz"), [side] * tiny_acoustic.dim, strict=False))
    body = {
        "source": sources(tiny_acoustic, 1)[0].tolist(),
        "receivers": {"grid": grid},
        "times": [0.001],
    }
    url = f"/v1/models/{tiny_acoustic.name}/predict"
    before = graph_runs(client)
    r = client.post(url, json=body)
    assert r.status_code == 422 and r.json()["field"] == "receivers", r.text
    assert "FIELDSERVE_MAX_RESPONSE_BYTES" in r.json()["error"]
    assert graph_runs(client) == before
    r = client.post(url, json=body, headers={"Accept": "application/x-fieldserve-arrays"})
    assert r.status_code == 200, r.text
    # Now cached whole: asked again as JSON, the stored answer is still too big to send so.
    r = client.post(url, json=body)
    assert r.status_code == 422 and r.json()["field"] == "accept", r.text
