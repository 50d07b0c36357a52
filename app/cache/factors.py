"""The factors of one model version: a graph's outputs, keyed by the graph and its inputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from numpy.typing import NDArray

from app.bundle import Bundle
from app.cache.keys import cache_key, digest, hashed_bytes
from app.cache.store import Cache
from app.runtime import run_blocking

Arrays = Mapping[str, NDArray[Any]]
_OFF_LOOP_BYTES = 1 << 20


async def hash_off_loop(salt: str, arrays: Sequence[NDArray[Any]] = (), data: bytes = b"") -> str:
    """blake2b runs near 1 GB/s: big inputs are hashed in a worker thread."""
    if hashed_bytes(arrays, data) > _OFF_LOOP_BYTES:
        return await run_blocking(digest, salt, arrays, data)
    return digest(salt, arrays, data)


class FactorCache:
    """Bound to one model version for one request; the families see only this."""

    def __init__(self, cache: Cache, model: str, version: str) -> None:
        self.cache = cache
        self.model = model
        self.version = version

    def fits(self, nbytes: int) -> bool:
        """Whether a factor of this size would be stored (else compute it the cheap way)."""
        return nbytes <= self.cache.max_item_bytes

    def up(self) -> bool:
        return self.cache.status().up

    async def get(
        self,
        kind: str,
        graph_sha256: str,
        inputs: Sequence[NDArray[Any]],
        compute: Callable[[], Arrays],
    ) -> tuple[Arrays, bool]:
        """The factor `kind` for these graph inputs: from the cache, or `compute()` (blocking,
        run in a worker thread) and stored. Returns (arrays, reused)."""
        key = cache_key(self.model, self.version, kind, await hash_off_loop(graph_sha256, inputs))

        async def work() -> Bundle:
            return Bundle({}, dict(await run_blocking(compute)))

        bundle, reused = await self.cache.get_or_compute(key, self.model, kind, work)
        return bundle.arrays, reused

    async def recall(self, kind: str, ident: str) -> Bundle | None:
        """The entry stored under a known digest (a geometry id), or None: nothing computed."""
        key = cache_key(self.model, self.version, kind, ident)
        return await self.cache.load(key, self.model, kind)

    async def store(self, kind: str, ident: str, value: Bundle) -> None:
        """Store `value` under a known digest, restarting its TTL if it was there already."""
        key = cache_key(self.model, self.version, kind, ident)
        await self.cache.put(key, self.model, kind, value)
