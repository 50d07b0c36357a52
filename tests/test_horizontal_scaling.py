"""Horizontal scaling: two `python -m app` processes behind one Redis serve as one service.

What a load balancer in front of N replicas (docker compose's scale profile, the Kubernetes
Deployment) relies on: an answer or a factor computed by one replica is a cache hit in every
other, with the same numbers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from tests.helpers_deploy import Service, launch
from tests.helpers_serving import (
    air_receivers,
    assert_close,
    by_hand,
    free_port,
    manifest_of,
    metric,
    parse_metrics,
    sources_in_region,
)

if TYPE_CHECKING:
    from tests.fixtures_redis import RedisServer

pytest_plugins = ["tests.fixtures_redis"]

TWO_D = pytest.mark.parametrize("tiny_acoustic", [2], indirect=True, ids=["2d"])


def post(url: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/models/{name}/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def graph_runs(url: str, graph: str) -> float:
    samples = parse_metrics(httpx.get(f"{url}/metrics").text)
    return metric(samples, "fieldserve_graph_compute_seconds_count", graph=graph)


@TWO_D
def test_two_app_processes_share_one_redis(
    tiny_acoustic: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    if redis_server.process is None:  # a test that killed it failed before starting it again
        redis_server.start()
    redis_server.flush()
    services: list[Service] = []
    try:
        for i in range(2):
            port = free_port()
            env = {
                **os.environ,
                "FIELDSERVE_MODEL_DIR": str(tiny_acoustic.models),
                "FIELDSERVE_REDIS_URL": redis_server.url,
                "FIELDSERVE_PORT": str(port),
                "FIELDSERVE_INTRA_OP_THREADS": "1",
                "FIELDSERVE_LOG_LEVEL": "warning",
            }
            services.append(launch([sys.executable, "-m", "app"], env, port, tmp_path / f"{i}.log"))
        for service in services:  # both start at once, then both must turn ready
            service.wait_ready()
        a, b = (s.url for s in services)
        assert a != b
        for url in (a, b):
            cache = httpx.get(f"{url}/health/ready").json()["cache"]
            assert cache["backend"] == "redis" and cache["status"] == "up"

        manifest = manifest_of(tiny_acoustic.version_dir)
        name = tiny_acoustic.name
        source, other_source = sources_in_region(manifest, 2)
        receivers = air_receivers(manifest, 6, seed=21)
        times = {"start": 0.0, "stop": 0.004, "num": 9}
        request = {"source": source, "receivers": receivers.tolist(), "times": times}

        first = post(a, name, request)
        assert first["cache"] == "miss"
        want = by_hand(tiny_acoustic.version_dir, source, receivers, np.linspace(0, 0.004, 9))
        assert_close(first["pressure"], want)

        # The same request through the other process: a hit, the same answer field for field,
        # and that process never ran a graph.
        second = post(b, name, request)
        assert second["cache"] == "hit"
        assert second.keys() == first.keys()
        assert {k: v for k, v in second.items() if k != "cache"} == {
            k: v for k, v in first.items() if k != "cache"
        }
        assert graph_runs(b, "branch") == 0 and graph_runs(b, "trunk") == 0

        # Factors are shared too: a moved source through B reuses the trunk A computed.
        moved = post(b, name, {**request, "source": other_source})
        assert moved["cache"] == "partial"
        assert graph_runs(b, "trunk") == 0 and graph_runs(b, "branch") == 1
        assert_close(
            moved["pressure"],
            by_hand(tiny_acoustic.version_dir, other_source, receivers, np.linspace(0, 0.004, 9)),
        )
        # ... and what B computed is a hit through A.
        assert post(a, name, {**request, "source": other_source})["cache"] == "hit"
        assert graph_runs(a, "branch") == 1 and graph_runs(a, "trunk") == 1

        client = redis_server.client()
        keys = [k.decode() for k in client.scan_iter(match="fieldserve:*")]
        client.close()
        assert keys and all(k.startswith(f"fieldserve:{name}:1:") for k in keys)
    finally:
        for service in services:
            service.stop()
