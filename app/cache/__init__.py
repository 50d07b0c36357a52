"""The factor cache: Redis when FIELDSERVE_REDIS_URL is set, an in-process LRU otherwise."""

from __future__ import annotations

from app.cache.backend import Backend, BackendStatus
from app.cache.factors import FactorCache
from app.cache.memory import MemoryBackend
from app.cache.redis_backend import RedisBackend
from app.cache.store import Cache
from app.metrics import Metrics
from app.settings import Settings


def build_cache(settings: Settings, metrics: Metrics) -> Cache:
    backend: Backend
    if settings.redis_url:
        backend = RedisBackend(
            settings.redis_url,
            settings.redis_timeout_s,
            settings.redis_backoff_s,
            on_error=lambda op: metrics.cache_errors.labels("redis", op).inc(),
        )
        local = settings.cache_local_max_bytes
    else:
        backend = MemoryBackend(settings.cache_max_bytes)
        local = 0  # the backend is in process already
    return Cache(backend, settings.cache_ttl_s, settings.cache_max_item_bytes, metrics, local)


__all__ = ["BackendStatus", "Cache", "FactorCache", "build_cache"]
