"""The cache: a backend (memory or Redis) plus TTL, size cap, codec, single flight, metrics,
and with Redis an in-process tier in front of it.

The in-process tier holds decoded values: a factor found there neither crosses the network
nor is decoded (a 4 MB trunk factor from Redis cost 6 ms a request). Keys are content
addressed (model, version, graph hash, input digest), so an entry there is never stale; its
arrays are read-only, shared by every request that finds them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from app.bundle import Bundle, BundleError, decode, encode
from app.cache.backend import Backend, BackendStatus
from app.cache.lru import LRU
from app.cache.single_flight import SingleFlight
from app.metrics import Metrics
from app.runtime import run_blocking

log = logging.getLogger("fieldserve.cache")

# Encoding copies every array once; above this it happens off the event loop.
_OFF_LOOP_BYTES = 1 << 20

Compute = Callable[[], Awaitable[Bundle]]


class Cache:
    def __init__(
        self,
        backend: Backend,
        ttl_s: int,
        max_item_bytes: int,
        metrics: Metrics | None = None,
        local_max_bytes: int = 0,
    ) -> None:
        self.backend = backend
        self.ttl_s = ttl_s
        self.max_item_bytes = max_item_bytes
        self.metrics = metrics or Metrics()
        self._flights: SingleFlight[tuple[Bundle, bool]] = SingleFlight()
        self.local: LRU[Bundle] | None = (
            LRU(local_max_bytes, _footprint) if local_max_bytes > 0 else None
        )

    def status(self) -> BackendStatus:
        status = self.backend.status()
        if self.local is None:
            return status
        local = {
            "local_entries": len(self.local),
            "local_bytes": self.local.bytes,
            "local_max_bytes": self.local.max_bytes,
        }
        return BackendStatus(status.backend, status.up, {**status.detail, **local})

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
        if self.local is not None:
            found = self.local.get(key)
            if found is not None:
                self.metrics.cache_local_hits.inc()
                return found
        raw = await self.backend.get(key)
        if raw is None:
            return None
        try:
            value = decode(raw)
            _check_schema(value)
        except BundleError as exc:  # a foreign or corrupt value: recompute and overwrite
            log.warning("cache value under %s is unreadable (%s); recomputing", key, exc)
            self.metrics.cache_errors.labels(self.backend.name, "decode").inc()
            return None
        self._keep(key, value)
        return value

    def _keep(self, key: str, value: Bundle) -> None:
        if self.local is None:
            return
        for array in value.arrays.values():
            array.setflags(write=False)  # shared by every later request that finds it
        self.local.put(key, value, self.ttl_s)

    async def _store(self, key: str, model: str, kind: str, value: Bundle) -> None:
        if value.nbytes > self.max_item_bytes:
            self.metrics.cache_too_large.labels(model, kind).inc()
            return
        stamped = Bundle({**value.meta, SCHEMA: _schema(value)}, value.arrays)
        data = (
            await run_blocking(encode, stamped)
            if value.nbytes > _OFF_LOOP_BYTES
            else encode(stamped)
        )
        if len(data) > self.max_item_bytes:
            self.metrics.cache_too_large.labels(model, kind).inc()
            return
        self._keep(key, value)
        await self.backend.set(key, data, self.ttl_s)

    async def close(self) -> None:
        if self.local is not None:
            self.local.clear()
        await self.backend.close()


# Each stored value carries its arrays' names, dtypes and shapes in its meta, checked on
# load: a well-formed bundle someone else wrote under our key (another program on a shared
# Redis, a value of another kind, arrays of another dtype or shape) is a miss, never an answer.
# (Flipped bits inside the array data would pass: the format carries no checksum.)
SCHEMA = "schema"


def _schema(value: Bundle) -> dict[str, list[object]]:
    return {n: [a.dtype.str, list(a.shape)] for n, a in value.arrays.items()}


def _check_schema(value: Bundle) -> None:
    if value.meta.get(SCHEMA) != _schema(value):
        raise BundleError("its arrays are not the ones its writer recorded")


def _footprint(value: Bundle) -> int:
    # The arrays (decoded ones are views into the bytes read, which they keep alive) plus a
    # rough allowance for the meta.
    return value.nbytes + 1024
