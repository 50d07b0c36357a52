"""Redis as the cache store, behind short timeouts and a back-off.

Every call has a short socket timeout and no client-side retries. A failure (refused, timed
out, reset, any error of the client library) marks Redis down: for `backoff_s` after that,
calls skip Redis at once (a miss, a dropped set), so a dead Redis does not add its timeout to
every request. When the back-off ends, one call probes; success marks Redis up again and the
connection pool reconnects by itself.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.cache.backend import BackendName, BackendStatus

log = logging.getLogger("fieldserve.cache")

T = TypeVar("T")
ErrorHook = Callable[[str], None]


def redacted(url: str) -> str:
    """scheme://host:port/db: no user name or password (the URL may carry them)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisBackend:
    name: BackendName = "redis"

    def __init__(
        self,
        url: str,
        timeout_s: float,
        backoff_s: float,
        on_error: ErrorHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = redacted(url)
        self.backoff_s = backoff_s
        self._on_error = on_error
        self._clock = clock
        pool = ConnectionPool.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = Redis(connection_pool=pool)
        self._up: bool | None = None  # None until the first call
        self._retry_at = 0.0
        self._probing = False
        self._last_error: str | None = None
        self.failures = 0

    def _usable(self) -> bool:
        if self._up is not False:
            return True
        if self._probing or self._clock() < self._retry_at:
            return False
        self._probing = True  # one probe at a time; the others keep skipping
        return True

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
        if not self._usable():
            return False, None
        try:
            result = await fn()
        except Exception as exc:  # any client failure is a miss, never the request's error
            self._failed(op, exc)
            await self._drop_idle_connections()
            return False, None
        finally:
            self._probing = False
        if self._up is not True:
            log.info("redis cache %s is up", self.where)
        self._up = True
        return True, result

    async def _drop_idle_connections(self) -> None:
        # What broke one connection (Redis restarted, went away) most likely broke every
        # pooled one: closed now, each reconnects on its next use. Otherwise each would fail
        # once more after Redis is back, and every such failure restarts the back-off.
        with contextlib.suppress(Exception):
            await self._client.connection_pool.disconnect(inuse_connections=False)

    def _failed(self, op: str, exc: Exception) -> None:
        self.failures += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._retry_at = self._clock() + self.backoff_s
        if self._up is not False:
            log.warning(
                "redis cache %s is down (%s failed: %s); computing without it, retrying in %gs",
                self.where,
                op,
                self._last_error,
                self.backoff_s,
            )
        self._up = False
        if self._on_error is not None:
            self._on_error(op)

    async def get(self, key: str) -> bytes | None:
        _, value = await self._call("get", lambda: self._client.get(key))
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        await self._call("set", lambda: self._client.set(key, value, ex=ttl_s))

    async def check(self) -> None:
        await self._call("ping", self._ping)

    async def _ping(self) -> Any:
        return await self._client.ping()

    def status(self) -> BackendStatus:
        detail: dict[str, Any] = {"url": self.where, "failures": self.failures}
        if self._up is False:
            detail["retry_in_s"] = round(max(0.0, self._retry_at - self._clock()), 3)
        if self._last_error is not None:
            detail["last_error"] = self._last_error
        return BackendStatus("redis", self._up is True, detail)

    async def close(self) -> None:
        await self._client.aclose()
