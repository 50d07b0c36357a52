"""The in-process cache: least recently used entries go first, every entry expires."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from app.cache.backend import BackendName, BackendStatus

# Rough per-entry bookkeeping (dict slot, tuple, key string) charged against the budget.
_OVERHEAD = 128


class MemoryBackend:
    """Lives on the event loop (no locks: every call runs there between awaits)."""

    name: BackendName = "memory"

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self.evictions = 0

    @staticmethod
    def _cost(key: str, value: bytes) -> int:
        return len(key) + len(value) + _OVERHEAD

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self._bytes -= self._cost(key, value)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        cost = self._cost(key, value)
        if key in self._entries:
            self._drop(key)
        if cost > self.max_bytes:
            return
        now = self._clock()
        while self._bytes + cost > self.max_bytes:
            # Expired entries are free to drop; otherwise the least recently used goes.
            oldest = next(iter(self._entries))
            if self._entries[oldest][1] > now:
                self.evictions += 1
            self._drop(oldest)
        self._entries[key] = (value, now + ttl_s)
        self._bytes += cost

    async def check(self) -> None:
        return None

    def status(self) -> BackendStatus:
        return BackendStatus(
            "memory",
            True,
            {
                "entries": len(self._entries),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "evictions": self.evictions,
            },
        )

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0
