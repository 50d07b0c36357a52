"""What the cache needs from a store: get and set bytes with a TTL, and say how it is doing.

Backends never raise for a failed operation: a failed get is a miss, a failed set is dropped
(and counted). Redis down means slower answers, never failed ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

BackendName = Literal["memory", "redis"]


@dataclass(frozen=True)
class BackendStatus:
    backend: BackendName
    up: bool
    detail: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: BackendName

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: int) -> None: ...

    async def check(self) -> None:
        """Probe the store now (when a back-off allows it), to refresh `status`."""
        ...

    def status(self) -> BackendStatus: ...

    async def close(self) -> None: ...
