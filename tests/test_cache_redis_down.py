"""Redis killed or hung mid-test: every request is still answered, correctly and quickly,
and the cache comes back by itself with Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.helpers_serving import (
    air_receivers,
    assert_close,
    by_hand,
    manifest_of,
    metric,
    parse_metrics,
    sources_in_region,
)

if TYPE_CHECKING:
    from tests.fixtures_redis import RedisServer

pytest_plugins = ["tests.fixtures_redis"]

TIMEOUT_S = 0.2
BACKOFF_S = 0.5


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's Redis, emptied, and running again after the test whatever happened."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    yield redis_server
    if redis_server.process is None:
        redis_server.start()
    else:
        redis_server.resume()


def settings(
    tiny_acoustic: Any, url: str, backoff_s: float = BACKOFF_S, local: bool = False
) -> Settings:
    # Without the in-process tier unless asked: these tests are about Redis itself.
    return Settings(
        model_dir=tiny_acoustic.models,
        redis_url=url,
        redis_timeout_s=TIMEOUT_S,
        redis_backoff_s=backoff_s,
        cache_local_max_bytes=1 << 20 if local else 0,
    )


def ask(
    c: TestClient, tiny_acoustic: Any, source: list[float], receivers: np.ndarray
) -> tuple[dict[str, Any], float]:
    times = [0.0, 0.001, 0.002]
    start = time.perf_counter()
    r = c.post(
        f"/v1/models/{tiny_acoustic.name}/predict",
        json={"source": source, "receivers": receivers.tolist(), "times": times},
    )
    elapsed = time.perf_counter() - start
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    assert_close(out["pressure"], by_hand(tiny_acoustic.version_dir, source, receivers, times))
    return out, elapsed


@pytest.mark.parametrize("local", [False, True], ids=["redis-only", "two-tier"])
def test_killing_redis_leaves_every_request_answered(
    tiny_acoustic: Any, server: RedisServer, local: bool
) -> None:
    manifest = manifest_of(tiny_acoustic.version_dir)
    sources = sources_in_region(manifest, 5)
    receivers = air_receivers(manifest, 4, seed=30)
    with TestClient(create_app(settings(tiny_acoustic, server.url, local=local))) as c:
        assert ask(c, tiny_acoustic, sources[0], receivers)[0]["cache"] == "miss"
        assert ask(c, tiny_acoustic, sources[0], receivers)[0]["cache"] == "hit"

        server.kill()
        # Answered by computing, the field unchanged; with the in-process tier, what this
        # replica saw before (or since) is still answered from it (the trunk of these receivers,
        # whole answers).
        for source, then in [(0, "hit"), (1, "partial"), (1, "hit"), (2, "partial")]:
            out, _ = ask(c, tiny_acoustic, sources[source], receivers)
            assert out["cache"] == (then if local else "miss")
        ready = c.get("/health/ready")
        assert ready.status_code == 200  # Redis down: slower, still ready
        assert ready.json()["cache"]["status"] == "down"
        assert "last_error" in ready.json()["cache"]["details"]
        samples = parse_metrics(c.get("/metrics").text)
        assert metric(samples, "fieldserve_cache_errors_total", backend="redis") >= 1
        assert metric(samples, "fieldserve_cache_up", backend="redis") == 0

        server.start()  # empty, as a restarted Redis without persistence is
        deadline = time.monotonic() + 10 * BACKOFF_S
        while c.get("/health/ready").json()["cache"]["status"] != "up":
            assert time.monotonic() < deadline, "the cache did not come back with Redis"
            time.sleep(0.05)
        assert ask(c, tiny_acoustic, sources[3], receivers)[0]["cache"] == (
            "partial" if local else "miss"
        )
        assert ask(c, tiny_acoustic, sources[3], receivers)[0]["cache"] == "hit"
        assert metric(parse_metrics(c.get("/metrics").text), "fieldserve_cache_up") == 1


def test_a_hung_redis_costs_one_timeout_not_one_per_request(
    tiny_acoustic: Any, server: RedisServer
) -> None:
    manifest = manifest_of(tiny_acoustic.version_dir)
    sources = sources_in_region(manifest, 6)
    receivers = air_receivers(manifest, 3, seed=31)
    # A back-off longer than the test: no probe may land among the timed requests.
    with TestClient(create_app(settings(tiny_acoustic, server.url, backoff_s=30))) as c:
        ask(c, tiny_acoustic, sources[0], receivers)  # connections open, Redis known up
        server.pause()
        first, first_s = ask(c, tiny_acoustic, sources[1], receivers)
        later = [ask(c, tiny_acoustic, s, receivers) for s in sources[2:]]
        # The first request waits out one socket timeout and marks Redis down; within the
        # back-off the others do not touch Redis at all.
        assert first_s >= TIMEOUT_S * 0.9
        assert all(elapsed < TIMEOUT_S * 0.9 for _, elapsed in later), [e for _, e in later]
        assert first["cache"] == "miss" and all(o["cache"] == "miss" for o, _ in later)
        server.resume()
