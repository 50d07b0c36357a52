"""Whole answers of the domain routes, keyed by the request body itself.

The key's digest covers the model version's fingerprint (the sha256 of its manifest, which
holds every graph's sha256), the request limits and the raw body: identical bytes are an
identical request. A differently spelt but equal request misses here and still reuses the
factors (the answer then says "partial"). Only successful answers are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace

from app.bundle import Bundle, join, split
from app.cache.factors import hash_off_loop
from app.cache.keys import cache_key
from app.cache.store import Cache
from app.families import Notice, Prediction

log = logging.getLogger("fieldserve.cache")

KIND = "response"


def _to_bundle(prediction: Prediction) -> Bundle:
    rest, arrays = split(prediction.fields)
    meta = {"fields": rest, "warnings": [asdict(n) for n in prediction.warnings]}
    return Bundle({**meta, "cache": prediction.cache}, arrays)


def _from_bundle(bundle: Bundle) -> Prediction:
    meta = bundle.meta
    warnings = tuple(Notice(**w) for w in meta.get("warnings", ()))
    return Prediction(
        join(meta.get("fields", {}), bundle.arrays), warnings, meta.get("cache", "miss")
    )


async def cached_prediction(
    cache: Cache,
    model: str,
    version: str,
    salt: str,
    body: bytes,
    compute: Callable[[], Awaitable[Prediction]],
) -> Prediction:
    """The answer for this body: whole from the cache ("hit"), or computed and stored."""
    key = cache_key(model, version, KIND, await hash_off_loop(salt, data=body))
    computed: list[Prediction] = []

    async def work() -> Bundle:
        prediction = await compute()
        computed.append(prediction)
        return _to_bundle(prediction)

    bundle, _ = await cache.get_or_compute(key, model, KIND, work)
    if computed:
        return computed[0]  # this call computed it: the original, with its own cache state
    try:
        return replace(_from_bundle(bundle), cache="hit")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # Readable as a bundle but not one of ours (a shared Redis): answer by computing.
        log.warning("cached response under %s is unusable (%r); recomputing", key, exc)
        return await compute()
