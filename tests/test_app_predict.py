"""Predictions over HTTP equal the exported ONNX graphs composed by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers_serving import assert_close, by_hand

from app.main import create_app
from app.settings import Settings
from geometry import Box, Room, grid_points


@pytest.fixture(scope="module")
def client(tiny_acoustic: Any) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=tiny_acoustic.models))) as c:
        yield c


@pytest.fixture(scope="module")
def manifest(tiny_acoustic: Any) -> dict[str, Any]:
    return json.loads((tiny_acoustic.version_dir / "manifest.json").read_text())


def room_of(manifest: dict[str, Any]) -> Room:
    return Room.from_spec(manifest["domain"]["room"])


def air_receivers(manifest: dict[str, Any], n: int, seed: int = 0) -> np.ndarray:
    room = room_of(manifest)
    pts = np.random.default_rng(seed).uniform(0, 1, (20 * n, room.dim)) * np.asarray(room.size)
    return pts[room.wall_distance(pts) > 0.02][:n]


def centre_source(manifest: dict[str, Any]) -> list[float]:
    """A source well inside the trained domain: in the region, farthest from any wall."""
    region = Box.from_spec(manifest["domain"]["source_region"])
    candidates = grid_points(region.lo, region.hi, [9] * region.dim)
    best = candidates[np.argmax(room_of(manifest).wall_distance(candidates))]
    assert room_of(manifest).wall_distance(best[None])[0] >= manifest["domain"]["wall_margin"]
    return [float(v) for v in best]


def test_points_and_time_range_match_the_graphs(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    source = centre_source(manifest)
    receivers = air_receivers(manifest, 6)
    tmax = manifest["domain"]["time_window"][1]
    body = {
        "source": source,
        "receivers": receivers.tolist(),
        "times": {"start": 0.0, "stop": tmax, "num": 13},
    }
    r = client.post(f"/v1/models/{tiny_acoustic.name}/predict", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    times = np.linspace(0.0, tmax, 13)
    np.testing.assert_allclose(out["times"], times)
    assert_close(out["pressure"], by_hand(tiny_acoustic.version_dir, source, receivers, times))
    assert out["model"] == tiny_acoustic.name and out["version"] == "1"
    assert out["cache"] == "miss" and out["warnings"] == []
    assert "receivers" not in out  # only echoed for grids
    # A field that is identically zero would also "match" a broken composition.
    assert np.abs(out["pressure"]).max() > 0


def test_time_list_and_pinned_version(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    source = centre_source(manifest)
    receivers = air_receivers(manifest, 3, seed=1)
    times = [0.0035, 0.0, 0.001]  # any order: answered in the order asked
    body = {"source": source, "receivers": receivers.tolist(), "times": times}
    pinned = client.post(f"/v1/models/{tiny_acoustic.name}/versions/1/predict", json=body)
    latest = client.post(f"/v1/models/{tiny_acoustic.name}/predict", json=body)
    assert pinned.status_code == 200 and latest.status_code == 200
    assert pinned.json()["times"] == times
    want = by_hand(tiny_acoustic.version_dir, source, receivers, times)
    assert_close(pinned.json()["pressure"], want)
    assert pinned.json()["pressure"] == latest.json()["pressure"]


def test_grid_returns_only_air_receivers(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    room = room_of(manifest)
    counts = [7, 5, 4][: room.dim]
    grid = dict(zip(["nx", "ny", "nz"], counts, strict=False))
    source = centre_source(manifest)
    times = [0.0, 0.002, 0.004]
    r = client.post(
        f"/v1/models/{tiny_acoustic.name}/predict",
        json={"source": source, "receivers": {"grid": grid}, "times": times},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    # Expected: cell centres of the room's box, C order, those in the air kept.
    axes = [(np.arange(n) + 0.5) * s / n for n, s in zip(counts, room.size, strict=True)]
    centres = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=-1)
    air = room.is_air(centres)
    receivers = np.asarray(out["receivers"])
    np.testing.assert_allclose(receivers, centres[air], atol=1e-12)
    assert out["grid"]["counts"] == counts
    assert out["grid"]["index"] == np.flatnonzero(air).tolist()
    assert room.is_air(receivers).all()
    if room.solids:  # the 2-D L-shape: the cut-out corner's cells are dropped
        assert 0 < len(receivers) < len(centres)
    assert_close(out["pressure"], by_hand(tiny_acoustic.version_dir, source, receivers, times))


def test_out_of_domain_requests_answer_with_warnings(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    domain = manifest["domain"]
    room = room_of(manifest)
    # In the air but hugging the x=0 wall: outside the trained region and within the margin.
    source = centre_source(manifest)
    source[0] = 0.5 * domain["wall_margin"] * 0.5
    assert room.is_air(np.asarray([source])).all()
    tmax = domain["time_window"][1]
    receivers = air_receivers(manifest, 2)
    times = [0.5 * tmax, 2.0 * tmax]
    r = client.post(
        f"/v1/models/{tiny_acoustic.name}/predict",
        json={"source": source, "receivers": receivers.tolist(), "times": times},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    codes = {(w["field"], w["code"]) for w in out["warnings"]}
    assert codes == {
        ("source", "source_outside_trained_region"),
        ("source", "source_near_wall"),
        ("times", "times_outside_trained_window"),
    }
    assert all(w["message"] for w in out["warnings"])
    # Still answered, and still the graphs' answer.
    assert_close(out["pressure"], by_hand(tiny_acoustic.version_dir, source, receivers, times))


def test_model_listing_and_health(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["refused"] == []
    assert body["cache"]["backend"] == "memory" and body["cache"]["status"] == "up"
    assert body["execution_provider"] == "CPUExecutionProvider"
    assert body["models"] == [
        {
            "name": tiny_acoustic.name,
            "version": "1",
            "family": "deeponet",
            "task": "acoustics",
            "provider": "CPUExecutionProvider",
            "state": "promoted",  # its first export promoted it
        }
    ]

    listed = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in listed] == [tiny_acoustic.name]
    assert listed[0]["domain"] == manifest["domain"]
    assert listed[0]["provider"] == "CPUExecutionProvider"
    detail = client.get(f"/v1/models/{tiny_acoustic.name}").json()
    assert detail["version"] == "1" and detail["versions"] == ["1"]
    assert (detail["latest"], detail["state"], detail["promoted"]) == ("1", "promoted", ["1"])
    assert detail["manifest"]["graphs"] == manifest["graphs"]
    assert client.get("/v1/models/nope").json()["field"] == "model"
