"""The cache: a backend (memory or Redis) plus TTL, size cap, codec, single flight, metrics."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from app.bundle import Bundle, BundleError, decode, encode
from app.cache.backend import Backend, BackendStatus
from app.cache.single_flight import SingleFlight
from app.metrics import Metrics
from app.runtime import run_blocking

log = logging.getLogger("fieldserve.cache")

# Encoding copies every array once; above this it happens off the event loop.
_OFF_LOOP_BYTES = 1 << 20

Compute = Callable[[], Awaitable[Bundle]]


class Cache:
    def __init__(
        self, backend: Backend, ttl_s: int, max_item_bytes: int, metrics: Metrics | None = None
    ) -> None:
        self.backend = backend
        self.ttl_s = ttl_s
        self.max_item_bytes = max_item_bytes
        self.metrics = metrics or Metrics()
        self._flights: SingleFlight[tuple[Bundle, bool]] = SingleFlight()

    def status(self) -> BackendStatus:
        return self.backend.status()

    async def get_or_compute(
        self, key: str, model: str, kind: str, compute: Compute
    ) -> tuple[Bundle, bool]:
        """(value, reused): reused when it came from the store or from an identical
        computation already in flight (single flight), False when this call computed it."""

        async def lead() -> tuple[Bundle, bool]:
            found = await self._load(key)
            if found is not None:
                self.metrics.cache_hits.labels(model, kind).inc()
                return found, True
            self.metrics.cache_misses.labels(model, kind).inc()
            value = await compute()
            await self._store(key, model, kind, value)
            return value, False

        (value, reused), shared = await self._flights.run(key, lead)
        if shared:
            self.metrics.cache_shared.labels(model, kind).inc()
        return value, reused or shared

    async def load(self, key: str, model: str, kind: str) -> Bundle | None:
        """The entry under key, or None (absent, expired, unreadable); counted as hit or miss."""
        found = await self._load(key)
        (self.metrics.cache_hits if found is not None else self.metrics.cache_misses).labels(
            model, kind
        ).inc()
        return found

    async def put(self, key: str, model: str, kind: str, value: Bundle) -> None:
        """Store (or overwrite, which restarts the TTL) a value that needed no computing."""
        await self._store(key, model, kind, value)

    async def _load(self, key: str) -> Bundle | None:
        raw = await self.backend.get(key)
        if raw is None:
            return None
        try:
            return decode(raw)
        except BundleError as exc:  # a foreign or corrupt value: recompute and overwrite
            log.warning("cache value under %s is unreadable (%s); recomputing", key, exc)
            self.metrics.cache_errors.labels(self.backend.name, "decode").inc()
            return None

    async def _store(self, key: str, model: str, kind: str, value: Bundle) -> None:
        if value.nbytes > self.max_item_bytes:
            self.metrics.cache_too_large.labels(model, kind).inc()
            return
        data = (
            await run_blocking(encode, value) if value.nbytes > _OFF_LOOP_BYTES else encode(value)
        )
        if len(data) > self.max_item_bytes:
            self.metrics.cache_too_large.labels(model, kind).inc()
            return
        await self.backend.set(key, data, self.ttl_s)

    async def close(self) -> None:
        await self.backend.close()
