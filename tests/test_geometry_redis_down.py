"""Redis killed mid-test: geometry requests by NACA code or curves are still answered with the
graphs' numbers; a geometry id, which lives only in the cache, is a 404 that says so; and the
ids work again once Redis is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from geometry.airfoils import naca4
from tests.helpers_serving import (
    assert_close,
    flow_by_hand,
    flow_columns,
    fluid_points,
    manifest_of,
)

if TYPE_CHECKING:
    from tests.fixtures_redis import RedisServer

pytest_plugins = ["tests.fixtures_redis"]


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[RedisServer]:
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    yield redis_server
    if redis_server.process is None:
        redis_server.start()


def test_killing_redis_leaves_geometry_requests_answered(
    tiny_airfoil: Any, server: RedisServer
) -> None:
    domain = manifest_of(tiny_airfoil.version_dir)["domain"]
    polylines = [naca4("2415", domain["panels_per_element"])]
    points = fluid_points(polylines, 8, seed=40)
    want = flow_by_hand(tiny_airfoil.version_dir, polylines, 4.0, 1.0, points)
    settings = Settings(
        model_dir=tiny_airfoil.models,
        redis_url=server.url,
        redis_timeout_s=0.2,
        redis_backoff_s=0.3,
        cache_local_max_bytes=0,  # Redis alone: the in-process tier would remember the id
    )
    url = f"/v1/models/{tiny_airfoil.name}"

    def ask(c: TestClient, geometry: dict[str, Any]) -> Any:
        return c.post(
            f"{url}/predict",
            json={
                "geometry": geometry,
                "conditions": {"aoa_deg": 4.0, "speed": 1.0},
                "query": {"points": points.tolist()},
            },
        )

    with TestClient(create_app(settings)) as c:
        gid = c.post(f"{url}/geometries", json={"geometry": {"naca": "2415"}}).json()["geometry_id"]
        server.kill()
        for _ in range(2):
            r = ask(c, {"naca": "2415"})
            assert r.status_code == 200, r.text
            assert r.json()["cache"] == "miss"  # nothing reachable: all computed
            assert_close(flow_columns(r.json()), want)
        r = ask(c, {"geometry_id": gid})
        assert r.status_code == 404 and r.json()["field"] == "geometry"
        assert "the cache is down" in r.json()["error"]
        server.start()  # empty: the id has to be given again
        server.flush()
        deadline = time.monotonic() + 10
        while c.get("/health/ready").json()["cache"]["status"] != "up":
            assert time.monotonic() < deadline, "the cache did not come back"
            time.sleep(0.1)
        r = c.post(f"{url}/geometries", json={"geometry": {"naca": "2415"}})
        assert r.status_code == 200 and r.json()["geometry_id"] == gid
        r = ask(c, {"geometry_id": gid})
        assert r.status_code == 200 and r.json()["cache"] == "partial", r.text
        assert_close(flow_columns(r.json()), want)
