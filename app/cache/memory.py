"""The in-process cache: least recently used entries go first, every entry expires."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.cache.backend import BackendName, BackendStatus
from app.cache.lru import LRU


class MemoryBackend:
    name: BackendName = "memory"

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self._entries: LRU[bytes] = LRU(max_bytes, len, clock)

    async def get(self, key: str) -> bytes | None:
        return self._entries.get(key)

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self._entries.put(key, value, ttl_s)

    def items(self) -> list[tuple[str, bytes, float]]:
        """(key, value, expiry on time.monotonic) of every entry, for inspection."""
        return self._entries.items()

    async def check(self) -> None:
        return None

    def status(self) -> BackendStatus:
        return BackendStatus(
            "memory",
            True,
            {
                "entries": len(self._entries),
                "bytes": self._entries.bytes,
                "max_bytes": self.max_bytes,
                "evictions": self._entries.evictions,
            },
        )

    async def close(self) -> None:
        self._entries.clear()
