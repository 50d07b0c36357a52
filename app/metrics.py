"""Prometheus metrics, one registry per app (so two apps in one process never mix counts).

    fieldserve_requests_total{route, model, method, status}
    fieldserve_request_errors_total{route, model, status}          4xx and 5xx answers
    fieldserve_request_duration_seconds{route, model}              histogram
    fieldserve_cache_hits_total{model, kind}                       kind: branch, trunk, ...,
    fieldserve_cache_misses_total{model, kind}                     or response
    fieldserve_cache_local_hits_total                              of those hits, answered by
                                                                   the in-process tier (Redis)
    fieldserve_cache_shared_total{model, kind}                     waited on an identical
                                                                   computation (single flight)
    fieldserve_cache_too_large_total{model, kind}                  over the size cap, not stored
    fieldserve_cache_errors_total{backend, op}                     failed store calls (answered
                                                                   by computing)
    fieldserve_cache_up{backend}                                   1 up, 0 down
    fieldserve_cache_entries, fieldserve_cache_bytes               in-process cache only
    fieldserve_graph_compute_seconds{model, version, graph}        each session.run
    fieldserve_execution_provider_info{provider}                   what the sessions run on
    fieldserve_model_info{model, version, family, task, provider}  one per served version
    fieldserve_models_refused                                      versions refused on load

`route` is the route template ("/v1/models/{name}/predict"), never the raw path, and `model`
is a served model name or "-": label values stay few whatever clients send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
Observer = Callable[[float], None]


@dataclass(frozen=True)
class ServingState:
    """What the gauges show, in plain values: metrics stands on its own floor and knows
    neither the repository nor the cache (the lifespan translates, see app.main)."""

    provider: str
    models: Iterable[Mapping[str, str]]  # model, version, family, task, provider
    refused: int
    cache_backend: str
    cache_up: bool
    cache_detail: Mapping[str, Any]


class _State(Collector):
    """Read at scrape time from what the lifespan built: never stale after a reload."""

    def __init__(self, state: Callable[[], ServingState]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        provider = InfoMetricFamily(
            "fieldserve_execution_provider", "Execution provider the sessions actually run on."
        )
        provider.add_metric([], {"provider": state.provider or "none"})
        yield provider
        models = InfoMetricFamily("fieldserve_model", "Served model versions.")
        for labels in state.models:
            models.add_metric([], dict(labels))
        yield models
        yield GaugeMetricFamily(
            "fieldserve_models_refused",
            "Model versions refused on the last scan.",
            value=state.refused,
        )
        up = GaugeMetricFamily("fieldserve_cache_up", "Cache store reachable.", labels=["backend"])
        up.add_metric([state.cache_backend], 1.0 if state.cache_up else 0.0)
        yield up
        for name in ("entries", "bytes"):
            if name in state.cache_detail:
                yield GaugeMetricFamily(
                    f"fieldserve_cache_{name}",
                    f"In-process cache {name}.",
                    value=float(state.cache_detail[name]),
                )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._state: _State | None = None
        r = self.registry
        self.requests = Counter(
            "fieldserve_requests",
            "HTTP requests answered.",
            ["route", "model", "method", "status"],
            registry=r,
        )
        self.errors = Counter(
            "fieldserve_request_errors",
            "HTTP requests answered with a 4xx or 5xx.",
            ["route", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "fieldserve_request_duration_seconds",
            "Time from the request's arrival to its answer.",
            ["route", "model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.cache_hits = Counter(
            "fieldserve_cache_hits", "Cache lookups answered.", ["model", "kind"], registry=r
        )
        self.cache_misses = Counter(
            "fieldserve_cache_misses", "Cache lookups that computed.", ["model", "kind"], registry=r
        )
        self.cache_local_hits = Counter(
            "fieldserve_cache_local_hits",
            "Hits answered by the in-process tier in front of Redis (also counted as hits).",
            registry=r,
        )
        self.cache_shared = Counter(
            "fieldserve_cache_shared",
            "Lookups that awaited an identical computation already in flight.",
            ["model", "kind"],
            registry=r,
        )
        self.cache_too_large = Counter(
            "fieldserve_cache_too_large",
            "Values over FIELDSERVE_CACHE_MAX_ITEM_BYTES, not stored.",
            ["model", "kind"],
            registry=r,
        )
        self.cache_errors = Counter(
            "fieldserve_cache_errors",
            "Cache store calls that failed and were answered by computing.",
            ["backend", "op"],
            registry=r,
        )
        self.graph_seconds = Histogram(
            "fieldserve_graph_compute_seconds",
            "onnxruntime session.run time per graph.",
            ["model", "version", "graph"],
            buckets=_LATENCY,
            registry=r,
        )

    def watch(self, state: Callable[[], ServingState]) -> None:
        """Report what this lifespan built (replacing a previous lifespan's view)."""
        if self._state is not None:
            self.registry.unregister(self._state)
        self._state = _State(state)
        self.registry.register(self._state)

    def graph_observer(self, model: str, version: str, graph: str) -> Observer:
        return self.graph_seconds.labels(model, version, graph).observe

    def request(self, route: str, model: str, method: str, status: int, seconds: float) -> None:
        code = str(status)
        self.requests.labels(route, model, method, code).inc()
        if status >= 400:
            self.errors.labels(route, model, code).inc()
        self.latency.labels(route, model).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
