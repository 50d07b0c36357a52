"""A least-recently-used map bounded in bytes, whose entries also expire."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")

# Rough per-entry bookkeeping (dict slot, tuple, key string) charged against the budget.
OVERHEAD = 128


class LRU(Generic[V]):
    """Lives on the event loop (no locks: every call runs there between awaits)."""

    def __init__(
        self,
        max_bytes: int,
        size: Callable[[V], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[V, float, int]] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: str) -> None:
        _, _, cost = self._entries.pop(key)
        self.bytes -= cost

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires, _ = entry
        if expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: V, ttl_s: float) -> None:
        cost = len(key) + self._size(value) + OVERHEAD
        if key in self._entries:
            self._drop(key)
        if cost > self.max_bytes:
            return
        now = self._clock()
        while self.bytes + cost > self.max_bytes:
            # Expired entries are free to drop; otherwise the least recently used goes.
            oldest = next(iter(self._entries))
            if self._entries[oldest][1] > now:
                self.evictions += 1
            self._drop(oldest)
        self._entries[key] = (value, now + ttl_s, cost)
        self.bytes += cost

    def items(self) -> list[tuple[str, V, float]]:
        """(key, value, expiry on the clock) of every entry, least recently used first."""
        return [(k, v, expires) for k, (v, expires, _) in self._entries.items()]

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
