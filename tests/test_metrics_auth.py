"""/metrics (parsed, and counting what happened), request ids and structured logs, API keys."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.auth import AuthMiddleware
from app.logs import JsonFormatter
from app.main import create_app
from app.settings import Settings
from tests.helpers_serving import (
    Samples,
    air_receivers,
    manifest_of,
    metric,
    parse_metrics,
    sources_in_region,
)

PREDICT = "/v1/models/{name}/predict"
USER, ADMIN = "user-key-5f1c", "admin-key-9a7e"


def good_body(tiny_acoustic: Any, seed: int = 60) -> dict[str, Any]:
    manifest = manifest_of(tiny_acoustic.version_dir)
    return {
        "source": sources_in_region(manifest, 1)[0],
        "receivers": air_receivers(manifest, 3, seed=seed).tolist(),
        "times": [0.0, 0.001],
    }


@pytest.fixture(scope="module")
def client(tiny_acoustic: Any) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=tiny_acoustic.models))) as c:
        yield c


def scrape(c: TestClient, **headers: str) -> Samples:
    r = c.get("/metrics", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return parse_metrics(r.text)


# -- metrics -------------------------------------------------------------------------------


def test_metrics_count_requests_errors_cache_and_compute(
    client: TestClient, tiny_acoustic: Any
) -> None:
    name = tiny_acoustic.name
    url = f"/v1/models/{name}/predict"
    labels = {"route": PREDICT, "model": name}
    before = scrape(client)
    body = good_body(tiny_acoustic)
    assert client.post(url, json=body).json()["cache"] == "miss"
    assert client.post(url, json=body).json()["cache"] == "hit"
    assert client.post(url, json=body | {"source": [99.0] * tiny_acoustic.dim}).status_code == 422
    assert client.post("/v1/models/not-a-model/predict", json=body).status_code == 404
    after = scrape(client)

    def delta(metric_name: str, **want: str) -> float:
        return metric(after, metric_name, **want) - metric(before, metric_name, **want)

    assert delta("fieldserve_requests_total", **labels, method="POST", status="200") == 2
    assert delta("fieldserve_requests_total", **labels, status="422") == 1
    assert delta("fieldserve_request_errors_total", **labels, status="422") == 1
    # An unknown model name does not become a label value: clients cannot grow the series.
    assert delta("fieldserve_request_errors_total", route=PREDICT, model="-", status="404") == 1
    assert not any(("model", "not-a-model") in ls for _, ls in after)
    assert delta("fieldserve_request_duration_seconds_count", **labels) == 3
    assert delta("fieldserve_request_duration_seconds_bucket", **labels, le="+Inf") == 3
    assert delta("fieldserve_cache_hits_total", model=name, kind="response") == 1
    # The 422 was looked up too (an answer is only known to be bad once computed).
    assert delta("fieldserve_cache_misses_total", model=name, kind="response") == 2
    assert delta("fieldserve_cache_misses_total", model=name, kind="branch") == 1
    assert delta("fieldserve_cache_misses_total", model=name, kind="trunk") == 1
    for graph in ("branch", "trunk"):
        assert delta("fieldserve_graph_compute_seconds_count", model=name, graph=graph) == 1
        assert delta("fieldserve_graph_compute_seconds_sum", model=name, graph=graph) > 0
    provider = "CPUExecutionProvider"
    assert metric(after, "fieldserve_execution_provider_info", provider=provider) == 1
    model_info = {"model": name, "version": "1", "family": "deeponet", "provider": provider}
    assert metric(after, "fieldserve_model_info", **model_info) == 1
    assert metric(after, "fieldserve_cache_up", backend="memory") == 1
    assert metric(after, "fieldserve_cache_entries") >= 3


def test_v2_requests_are_counted_per_v2_model(client: TestClient, tiny_acoustic: Any) -> None:
    name = f"{tiny_acoustic.name}.branch"
    before = scrape(client)
    doc = {"inputs": [{"name": "source", "shape": [1, tiny_acoustic.dim], "datatype": "FP32",
                       "data": good_body(tiny_acoustic)["source"]}]}  # fmt: skip
    assert client.post(f"/v2/models/{name}/infer", json=doc).status_code == 200
    after = scrape(client)
    want = {"route": "/v2/models/{name}/infer", "model": name, "status": "200"}
    assert metric(after, "fieldserve_requests_total", **want) == (
        metric(before, "fieldserve_requests_total", **want) + 1
    )


# -- request ids and logs ------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The service's loggers, formatted as `python -m app` formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("fieldserve")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_request_ids_in_and_out_and_in_every_log_line(
    client: TestClient, tiny_acoustic: Any, json_log: io.StringIO
) -> None:
    url = f"/v1/models/{tiny_acoustic.name}/predict"
    r = client.post(url, json=good_body(tiny_acoustic, 61), headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    generated = client.get("/health/live").headers["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    unsafe = client.get("/health/live", headers={"X-Request-ID": "a b\tc" + "x" * 200})
    assert unsafe.headers["x-request-id"] != "a b\tc" + "x" * 200  # replaced, not echoed
    lines = log_lines(json_log)
    access = [line for line in lines if line["logger"] == "fieldserve.access"]
    first = access[0]
    assert first["request_id"] == "abc-123" and first["route"] == PREDICT
    assert (
        first["status"] == 200
        and first["cache"] == r.json()["cache"]
        and first["model"] == tiny_acoustic.name
    )
    assert first["duration_ms"] > 0 and first["level"] == "info" and first["ts"]
    assert {line["request_id"] for line in access[1:]} == {
        generated,
        unsafe.headers["x-request-id"],
    }


# -- API keys ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked(tiny_acoustic: Any) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=tiny_acoustic.models, api_keys=frozenset({USER}), admin_keys=frozenset({ADMIN})
    )
    with TestClient(create_app(settings)) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def expect_refusal(r: Any, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["field"] == "authorization" and words in r.json()["error"], r.json()
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_health_is_open_and_everything_else_needs_a_key(
    locked: TestClient, tiny_acoustic: Any
) -> None:
    for path in ("/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"):
        assert locked.get(path).status_code == 200, path
    # Readiness without disclosure: no key, no details (cache host, refused paths, devices).
    assert locked.get("/health/ready").json() == {"status": "ready"}
    assert locked.get("/health/ready", headers=bearer("wrong")).json() == {"status": "ready"}
    for key in (USER, ADMIN):
        detailed = locked.get("/health/ready", headers=bearer(key)).json()
        assert {"cache", "refused", "models"} <= set(detailed), detailed
    name = tiny_acoustic.name
    body = good_body(tiny_acoustic, 62)
    for method, path in [
        ("GET", "/v1/models"),
        ("GET", f"/v1/models/{name}"),
        ("POST", f"/v1/models/{name}/predict"),
        ("GET", "/metrics"),
        ("GET", "/v2"),
        ("GET", f"/v2/models/{name}"),
        ("POST", f"/v2/models/{name}.trunk/infer"),
        ("GET", "/docs"),
        ("GET", "/no/such/route"),  # 401 before 404: routes are not enumerable
    ]:
        expect_refusal(locked.request(method, path, json=body), 401, "needs an API key")
    r = locked.post(f"/v1/models/{name}/predict", json=body, headers=bearer(USER))
    assert r.status_code == 200 and r.json()["pressure"]
    assert (
        locked.post(
            f"/v1/models/{name}/predict", json=body, headers={"X-API-Key": USER}
        ).status_code
        == 200
    )
    assert locked.get("/metrics", headers={"X-API-Key": USER}).status_code == 200
    assert locked.get("/v1/models", headers=bearer(ADMIN)).status_code == 200  # admin keys too


def test_wrong_or_malformed_keys_are_refused_and_never_logged(
    locked: TestClient, json_log: io.StringIO
) -> None:
    expect_refusal(locked.get("/v1/models", headers=bearer("guess")), 401, "not valid")
    expect_refusal(locked.get("/v1/models", headers={"X-API-Key": "guess"}), 401, "not valid")
    expect_refusal(
        locked.get("/v1/models", headers={"Authorization": "Basic dXNlcg=="}), 401, "Bearer"
    )
    expect_refusal(locked.get("/v1/models", headers=bearer(USER + "x")), 401, "not valid")
    locked.get("/v1/models", headers=bearer(USER))
    locked.post("/v1/admin/reload", headers=bearer(ADMIN))
    text = json_log.getvalue()
    assert "refused" in text  # refusals are logged...
    for secret in ("guess", USER, ADMIN, "dXNlcg=="):
        assert secret not in text  # ...without the keys


def test_admin_routes_need_an_admin_key(locked: TestClient) -> None:
    expect_refusal(locked.post("/v1/admin/reload"), 401, "needs an API key")
    expect_refusal(locked.post("/v1/admin/reload", headers=bearer(USER)), 403, "admin key")
    expect_refusal(locked.post("/v1/admin/reload", headers=bearer("guess")), 401, "admin key")
    r = locked.post("/v1/admin/reload", headers={"X-API-Key": ADMIN})
    assert r.status_code == 200 and r.json()["models"]
    samples = scrape(locked, **bearer(USER))
    refused = {"route": "/v1/admin/reload", "status": "403"}
    assert metric(samples, "fieldserve_request_errors_total", **refused) == 1


def test_a_root_path_does_not_hide_admin_routes(tiny_acoustic: Any) -> None:
    """Behind a proxy that mounts the app under /api, /api/v1/admin/... is still admin."""
    settings = Settings(
        model_dir=tiny_acoustic.models, api_keys=frozenset({USER}), admin_keys=frozenset({ADMIN})
    )
    with TestClient(create_app(settings), root_path="/api") as c:
        expect_refusal(c.post("/api/v1/admin/reload", headers=bearer(USER)), 403, "admin key")
        assert c.post("/api/v1/admin/reload", headers=bearer(ADMIN)).status_code == 200
        assert c.get("/api/health/ready").status_code == 200
        expect_refusal(c.get("/api/v1/models"), 401, "needs an API key")


def test_key_settings_combinations(tiny_acoustic: Any) -> None:
    only_api = Settings(model_dir=tiny_acoustic.models, api_keys=frozenset({USER}))
    with TestClient(create_app(only_api)) as c:
        expect_refusal(
            c.post("/v1/admin/reload", headers=bearer(USER)), 403, "no FIELDSERVE_ADMIN_KEYS"
        )
    only_admin = Settings(model_dir=tiny_acoustic.models, admin_keys=frozenset({ADMIN}))
    with TestClient(create_app(only_admin)) as c:
        assert c.get("/v1/models").status_code == 200  # no API keys: the service is open
        expect_refusal(c.post("/v1/admin/reload"), 401, "needs an API key")
        assert c.post("/v1/admin/reload", headers=bearer(ADMIN)).status_code == 200
    with TestClient(create_app(Settings(model_dir=tiny_acoustic.models))) as c:
        assert c.post("/v1/admin/reload").status_code == 200  # no keys at all: open


def test_key_check_compares_every_key() -> None:
    """Constant time: the verdict never depends on which configured key matched first."""
    calls: list[int] = []
    import app.auth

    real = app.auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    auth = AuthMiddleware(lambda *_: None, frozenset({"k1", "k2", "k3"}), frozenset())  # type: ignore[arg-type, return-value]
    app.auth.hmac.compare_digest = counting  # type: ignore[assignment]
    try:
        for key in ("k1", "k3", "nope"):
            calls.clear()
            auth.check("/v1/models", {b"authorization": f"Bearer {key}".encode()})
            assert len(calls) == 3
    finally:
        app.auth.hmac.compare_digest = real


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSERVE_API_KEYS", "a, b")
    monkeypatch.setenv("FIELDSERVE_ADMIN_KEYS", "root")
    monkeypatch.setenv("FIELDSERVE_REDIS_URL", "redis://:hunter2@cache:6379/0")
    s = Settings()
    assert s.api_keys == {"a", "b"} and s.admin_keys == {"root"}
    assert "root" not in repr(s) and "hunter2" not in repr(s)


def test_log_formats_carry_the_request_id() -> None:
    from app.logs import TextFormatter, request_id

    record = logging.LogRecord(
        "fieldserve.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None
    )
    record.route = "/r"
    token = request_id.set("rid-7")
    try:
        doc = json.loads(JsonFormatter().format(record))
        text = TextFormatter().format(record)
    finally:
        request_id.reset(token)
    assert doc["request_id"] == "rid-7" and doc["msg"] == "hello you" and doc["route"] == "/r"
    assert doc["level"] == "warning" and doc["logger"] == "fieldserve.x"
    assert "[rid-7] hello you" in text and "route=/r" in text


def test_a_malformed_redis_url_is_refused_without_echoing_it() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        Settings(redis_url="cache:6379 password=hunter2")
    assert "redis://" in str(caught.value) and "hunter2" not in str(caught.value)
    assert Settings(redis_url="  ").redis_url is None
