"""The domain routes' binary answers, chosen by Accept, read back with the README's reader."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.helpers_serving import air_receivers, manifest_of, sources_in_region

MEDIA = "application/x-fieldserve-arrays"


def read_arrays(body: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The README's reader, verbatim: header fields and arrays of an FSA1 answer."""
    magic, n = struct.unpack_from("<4sI", body)
    assert magic == b"FSA\x01"
    header = json.loads(body[8 : 8 + n])
    arrays = {
        a["name"]: np.frombuffer(
            body, a["dtype"], count=int(np.prod(a["shape"])), offset=8 + n + a["offset"]
        ).reshape(a["shape"])
        for a in header.pop("arrays")
    }
    return header, arrays


@pytest.fixture(scope="module")
def client(tiny_acoustic: Any) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=tiny_acoustic.models))) as c:
        yield c


@pytest.fixture(scope="module")
def request_body(tiny_acoustic: Any) -> dict[str, Any]:
    manifest = manifest_of(tiny_acoustic.version_dir)
    return {
        "source": sources_in_region(manifest, 1)[0],
        "receivers": air_receivers(manifest, 7, seed=50).tolist(),
        "times": {"start": 0.0, "stop": 0.004, "num": 5},
    }


@pytest.mark.parametrize("accept", [MEDIA, "application/octet-stream", f"text/html, {MEDIA}"])
def test_binary_answer_holds_the_json_answer(
    client: TestClient, tiny_acoustic: Any, request_body: dict[str, Any], accept: str
) -> None:
    url = f"/v1/models/{tiny_acoustic.name}/predict"
    as_json = client.post(url, json=request_body).json()
    r = client.post(url, json=request_body, headers={"Accept": accept})
    assert r.status_code == 200 and r.headers["content-type"] == MEDIA
    header, arrays = read_arrays(r.content)
    assert arrays["pressure"].dtype == np.float32 and arrays["pressure"].shape == (7, 5)
    assert arrays["times"].dtype == np.float64
    # The same numbers as the JSON answer, bit for bit, and the same other fields.
    np.testing.assert_array_equal(arrays["pressure"], np.asarray(as_json["pressure"], np.float32))
    np.testing.assert_array_equal(arrays["times"], as_json["times"])
    assert header == {k: as_json[k] for k in ("model", "version", "warnings")} | {"cache": "hit"}
    assert len(r.content) < len(json.dumps(as_json).encode())


def test_grid_answers_carry_receivers_and_the_grid_index(
    client: TestClient, tiny_acoustic: Any, request_body: dict[str, Any]
) -> None:
    grid = {"nx": 5, "ny": 4} | ({"nz": 3} if tiny_acoustic.dim == 3 else {})
    body = request_body | {"receivers": {"grid": grid}}
    url = f"/v1/models/{tiny_acoustic.name}/predict"
    as_json = client.post(url, json=body).json()
    header, arrays = read_arrays(client.post(url, json=body, headers={"Accept": MEDIA}).content)
    assert set(arrays) == {"pressure", "times", "receivers", "grid.index"}
    assert arrays["grid.index"].dtype == np.int64
    assert arrays["grid.index"].tolist() == as_json["grid"]["index"]
    np.testing.assert_array_equal(arrays["receivers"], as_json["receivers"])
    assert header["grid"] == {k: v for k, v in as_json["grid"].items() if k != "index"}


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        (None, "json"),
        ("*/*", "json"),
        ("application/json", "json"),
        (f"application/json;q=0.5, {MEDIA}", "arrays"),
        (f"{MEDIA};q=0.2, application/json", "json"),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "json"),
    ],
)
def test_accept_negotiation(
    client: TestClient,
    tiny_acoustic: Any,
    request_body: dict[str, Any],
    accept: str | None,
    kind: str,
) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    r = client.post(f"/v1/models/{tiny_acoustic.name}/predict", json=request_body, headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == ("application/json" if kind == "json" else MEDIA)


def test_unanswerable_accept_is_406_and_errors_stay_json(
    client: TestClient, tiny_acoustic: Any, request_body: dict[str, Any]
) -> None:
    url = f"/v1/models/{tiny_acoustic.name}/predict"
    r = client.post(url, json=request_body, headers={"Accept": "text/csv"})
    assert r.status_code == 406 and r.json()["field"] == "accept"
    assert MEDIA in r.json()["error"]
    bad = request_body | {"source": [float("nan")] * tiny_acoustic.dim}
    r = client.post(url, content=json.dumps(bad), headers={"Accept": MEDIA})
    assert r.status_code == 422 and r.headers["content-type"] == "application/json"
    assert r.json()["field"] == "source"
