"""Caching over HTTP, the same tests against the in-process cache and a real Redis.

Numbers, not just states: a hit returns the same field, a partial answer is still the graphs'
field, and the graph run counters in /metrics prove which factor was (not) recomputed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import app.runtime
from app.main import create_app
from app.settings import Settings
from tests.helpers_serving import (
    Samples,
    air_receivers,
    assert_close,
    by_hand,
    manifest_of,
    metric,
    parse_metrics,
    sources_in_region,
)

pytest_plugins = ["tests.fixtures_redis"]


@pytest.fixture(scope="module")
def client(tiny_acoustic: Any, cache_backend: dict[str, Any]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=tiny_acoustic.models, **cache_backend))) as c:
        yield c


@pytest.fixture(scope="module")
def manifest(tiny_acoustic: Any) -> dict[str, Any]:
    return manifest_of(tiny_acoustic.version_dir)


def post(client: TestClient, name: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/v1/models/{name}/predict", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def scrape(client: TestClient) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200
    return parse_metrics(r.text)


def runs(samples: Samples, graph: str) -> float:
    """session.run calls of a graph so far (the compute-time histogram's count)."""
    return metric(samples, "fieldserve_graph_compute_seconds_count", graph=graph)


def body(source: list[float], receivers: np.ndarray, times: Any) -> dict[str, Any]:
    return {"source": source, "receivers": receivers.tolist(), "times": times}


def test_a_repeated_request_is_a_hit_with_the_same_field(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any], cache_backend: Any
) -> None:
    source = sources_in_region(manifest, 1)[0]
    receivers = air_receivers(manifest, 5, seed=10)
    times = {"start": 0.0, "stop": 0.004, "num": 9}
    request = body(source, receivers, times)
    first = post(client, tiny_acoustic.name, request)
    assert first["cache"] == "miss"
    assert_close(
        first["pressure"],
        by_hand(tiny_acoustic.version_dir, source, receivers, np.linspace(0, 0.004, 9)),
    )
    before = scrape(client)
    second = post(client, tiny_acoustic.name, request)
    after = scrape(client)
    assert second["cache"] == "hit"
    assert second["pressure"] == first["pressure"] and second["times"] == first["times"]
    assert second["warnings"] == first["warnings"]
    assert runs(after, "branch") == runs(before, "branch")
    assert runs(after, "trunk") == runs(before, "trunk")
    hits = "fieldserve_cache_hits_total"
    assert metric(after, hits, kind="response") == metric(before, hits, kind="response") + 1
    ready = client.get("/health/ready").json()["cache"]
    assert ready["backend"] == ("redis" if cache_backend["redis_url"] else "memory")
    assert ready["status"] == "up"


def test_the_same_request_spelt_otherwise_is_a_hit(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    """Keys are on the body's canonical form: spacing and key order do not matter."""
    request = body(sources_in_region(manifest, 4)[3], air_receivers(manifest, 3, seed=12), [0.0])
    first = post(client, tiny_acoustic.name, request)
    assert first["cache"] == "miss"
    reordered = json.dumps(dict(reversed(list(request.items()))), indent=3)
    r = client.post(
        f"/v1/models/{tiny_acoustic.name}/predict",
        content=reordered,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200 and r.json()["cache"] == "hit"
    assert r.json()["pressure"] == first["pressure"]


def test_a_moved_source_reuses_the_trunk(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    first_source, moved = sources_in_region(manifest, 3)[1:]
    receivers = air_receivers(manifest, 6, seed=11)
    times = [0.0, 0.001, 0.002, 0.003]
    assert post(client, tiny_acoustic.name, body(first_source, receivers, times))["cache"] == "miss"
    before = scrape(client)
    out = post(client, tiny_acoustic.name, body(moved, receivers, times))
    after = scrape(client)
    assert out["cache"] == "partial"
    assert runs(after, "trunk") == runs(before, "trunk")  # not recomputed
    assert runs(after, "branch") == runs(before, "branch") + 1
    hits = "fieldserve_cache_hits_total"
    assert metric(after, hits, kind="trunk") == metric(before, hits, kind="trunk") + 1
    misses = "fieldserve_cache_misses_total"
    assert metric(after, misses, kind="branch") == metric(before, misses, kind="branch") + 1
    # Still the graphs' field for the moved source, not the first one's.
    assert_close(out["pressure"], by_hand(tiny_acoustic.version_dir, moved, receivers, times))


def test_new_receivers_reuse_the_branch(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    source = sources_in_region(manifest, 4)[3]
    times = [0.0005, 0.0025]
    post(client, tiny_acoustic.name, body(source, air_receivers(manifest, 3, seed=12), times))
    receivers = air_receivers(manifest, 4, seed=13)
    before = scrape(client)
    out = post(client, tiny_acoustic.name, body(source, receivers, times))
    after = scrape(client)
    assert out["cache"] == "partial"
    assert runs(after, "branch") == runs(before, "branch")
    assert runs(after, "trunk") == runs(before, "trunk") + 1
    assert_close(out["pressure"], by_hand(tiny_acoustic.version_dir, source, receivers, times))


def test_the_same_request_spelt_differently_reuses_both_factors(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    source = sources_in_region(manifest, 5)[4]
    receivers = air_receivers(manifest, 3, seed=14)
    ranged = post(
        client, tiny_acoustic.name, body(source, receivers, {"start": 0, "stop": 0.002, "num": 3})
    )
    listed = body(source, receivers, np.linspace(0, 0.002, 3).tolist())
    before = scrape(client)
    out = post(client, tiny_acoustic.name, listed)
    after = scrape(client)
    # Other bytes, so not the stored answer; but both factors came from the cache.
    assert out["cache"] == "partial"
    assert runs(after, "branch") == runs(before, "branch")
    assert runs(after, "trunk") == runs(before, "trunk")
    assert out["pressure"] == ranged["pressure"]


@pytest.fixture
def slow_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each session.run takes 0.15 s longer, so concurrent requests really overlap."""
    real = app.runtime.Graph.run

    def slow(self: Any, feeds: Any, release: bool | None = None) -> Any:
        time.sleep(0.15)
        return real(self, feeds, release)

    monkeypatch.setattr(app.runtime.Graph, "run", slow)


@pytest.mark.usefixtures("slow_graphs")
def test_concurrent_identical_requests_compute_once(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    source = sources_in_region(manifest, 6)[5]
    request = body(source, air_receivers(manifest, 4, seed=15), [0.001, 0.002])
    before = scrape(client)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post(client, tiny_acoustic.name, request), range(6)))
    after = scrape(client)
    assert runs(after, "branch") == runs(before, "branch") + 1
    assert runs(after, "trunk") == runs(before, "trunk") + 1
    assert sorted(a["cache"] for a in answers) == ["hit"] * 5 + ["miss"]
    assert all(a["pressure"] == answers[0]["pressure"] for a in answers)
    shared = "fieldserve_cache_shared_total"
    waited = metric(after, shared, kind="response") - metric(before, shared, kind="response")
    hits = metric(after, "fieldserve_cache_hits_total", kind="response") - metric(
        before, "fieldserve_cache_hits_total", kind="response"
    )
    assert waited + hits == 5 and waited >= 1


@pytest.mark.usefixtures("slow_graphs")
def test_concurrent_sources_on_new_receivers_share_one_trunk_run(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any]
) -> None:
    sources = sources_in_region(manifest, 4)
    receivers = air_receivers(manifest, 5, seed=16)
    times = [0.0, 0.003]
    before = scrape(client)
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda s: post(client, tiny_acoustic.name, body(s, receivers, times)), sources)
        )
    after = scrape(client)
    assert runs(after, "trunk") == runs(before, "trunk") + 1
    for source, answer in zip(sources, answers, strict=True):
        assert_close(
            answer["pressure"], by_hand(tiny_acoustic.version_dir, source, receivers, times)
        )


def test_entries_have_documented_keys_a_ttl_and_no_pickle(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any], cache_backend: Any
) -> None:
    post(
        client,
        tiny_acoustic.name,
        body(sources_in_region(manifest, 1)[0], air_receivers(manifest, 2, seed=17), [0.001]),
    )
    pattern = re.compile(
        rf"fieldserve:{re.escape(tiny_acoustic.name)}:1:(branch|trunk|response):[0-9a-f]{{40}}"
    )
    ttl = client.app.state.settings.cache_ttl_s  # type: ignore[attr-defined]
    if cache_backend["redis_url"]:
        import redis

        r = redis.Redis.from_url(cache_backend["redis_url"])
        keys = [k.decode() for k in r.scan_iter("fieldserve:*")]
        values = [r.get(k) for k in keys]
        ttls = [r.ttl(k) for k in keys]
        r.close()
    else:
        entries = client.app.state.cache.backend.items()  # type: ignore[attr-defined]
        keys = [k for k, _, _ in entries]
        values = [v for _, v, _ in entries]
        ttls = [expires - time.monotonic() for _, _, expires in entries]
    assert keys and all(pattern.fullmatch(k) for k in keys), keys
    assert {k.split(":")[3] for k in keys} == {"branch", "trunk", "response"}
    assert all(v is not None and v[:4] == b"FSA\x01" for v in values)
    assert all(0 < t <= ttl for t in ttls)


def test_values_over_the_size_cap_are_never_stored(
    tiny_acoustic: Any, manifest: dict[str, Any], cache_backend: dict[str, Any]
) -> None:
    settings = Settings(model_dir=tiny_acoustic.models, cache_max_item_bytes=300, **cache_backend)
    receivers = air_receivers(manifest, 20, seed=18)
    times = [0.0, 0.001, 0.002]
    source = sources_in_region(manifest, 7)[6]
    request = body(source, receivers, times)
    with TestClient(create_app(settings)) as c:
        answers = [post(c, tiny_acoustic.name, request) for _ in range(2)]
        samples = scrape(c)
    # The coefficients (9 floats) fit in 300 bytes; the basis (60 x 9 floats) and the whole
    # answer do not: computed twice, the trunk streamed, and still the graphs' field.
    assert [a["cache"] for a in answers] == ["miss", "partial"]
    assert metric(samples, "fieldserve_cache_too_large_total", kind="response") == 2
    assert runs(samples, "trunk") == 2 and runs(samples, "branch") == 1
    for answer in answers:
        assert_close(
            answer["pressure"], by_hand(tiny_acoustic.version_dir, source, receivers, times)
        )
