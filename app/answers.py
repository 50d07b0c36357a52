"""Whole answers, keyed by what the request means rather than how it is spelt.

The key's digest covers the model version's fingerprint (the sha256 of its manifest, which
holds every graph's sha256), the request limits and the request: for the domain routes the
JSON body in a canonical form (keys sorted, no spacing: the same request with other spacing
or key order is a hit), for V2 the bound tensors (the same tensors sent as JSON or binary are
a hit). Only successful answers are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import Any, TypeVar

import orjson
from numpy.typing import NDArray

from app.bundle import Bundle, join, split
from app.cache.factors import hash_off_loop
from app.cache.keys import cache_key
from app.cache.store import Cache
from app.codecs import decode_json
from app.families import Inference, Notice, Prediction
from app.runtime import run_blocking

log = logging.getLogger("fieldserve.cache")

_OFF_LOOP_BYTES = 1 << 20
KIND = "response"


T = TypeVar("T")


def _to_bundle(prediction: Prediction) -> Bundle:
    rest, arrays = split(prediction.fields)
    meta = {"fields": rest, "warnings": [asdict(n) for n in prediction.warnings]}
    return Bundle({**meta, "cache": prediction.cache}, arrays)


def _from_bundle(bundle: Bundle) -> Prediction:
    meta = bundle.meta
    warnings = tuple(Notice(**w) for w in meta.get("warnings", ()))
    return Prediction(join(meta.get("fields", {}), bundle.arrays), warnings, "hit")


def _inference_bundle(inference: Inference) -> Bundle:
    return Bundle({"warnings": [asdict(n) for n in inference.warnings]}, inference.outputs)


def _inference(bundle: Bundle) -> Inference:
    warnings = tuple(Notice(**w) for w in bundle.meta.get("warnings", ()))
    return Inference(dict(bundle.arrays), "hit", warnings)


async def _whole(
    cache: Cache,
    model: str,
    version: str,
    ident: str,
    compute: Callable[[], Awaitable[T]],
    store: Callable[[T], Bundle],
    load: Callable[[Bundle], T],
) -> T:
    """The answer under `ident`: from the cache (marked "hit" by `load`), or computed and
    stored. The call that computed it gets the original, with its own cache state."""
    key = cache_key(model, version, KIND, ident)
    computed: list[T] = []

    async def work() -> Bundle:
        value = await compute()
        computed.append(value)
        return store(value)

    bundle, _ = await cache.get_or_compute(key, model, KIND, work)
    if computed:
        return computed[0]
    try:
        return load(bundle)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # Readable as a bundle but not one of ours (a shared Redis): answer by computing.
        log.warning("cached response under %s is unusable (%r); recomputing", key, exc)
        return await compute()


def parse(body: bytes) -> tuple[Any, bytes]:
    """The JSON body, parsed once, and its canonical form (sorted keys, no spacing) for the
    whole-answer key. A body only the stdlib reads (NaN, Infinity: orjson refuses them and
    would write them back as null) keeps its own bytes as its form. Raises JsonDecodeError."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return decode_json(body), body
    return payload, orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


async def parse_off_loop(body: bytes) -> tuple[Any, bytes]:
    # orjson parses near 1 GB/s: a body of megabytes is parsed in a worker thread.
    return await run_blocking(parse, body) if len(body) > _OFF_LOOP_BYTES else parse(body)


async def cached_prediction(
    cache: Cache,
    model: str,
    version: str,
    salt: str,
    canonical: bytes,
    compute: Callable[[], Awaitable[Prediction]],
) -> Prediction:
    """A domain route's answer for this body (its canonical form, see `parse`), whole from the
    cache or computed and stored."""
    ident = await hash_off_loop(salt, data=canonical)
    return await _whole(cache, model, version, ident, compute, _to_bundle, _from_bundle)


async def cached_inference(
    cache: Cache,
    model: str,
    version: str,
    salt: str,
    tensors: Mapping[str, NDArray[Any]],
    compute: Callable[[], Awaitable[Inference]],
) -> Inference:
    """A V2 answer for these bound input tensors (names, dtypes, shapes, bytes: the same
    tensors sent as JSON or binary are the same request), whole from the cache or computed."""
    names = sorted(tensors)
    ident = await hash_off_loop(f"{salt}:{','.join(names)}", [tensors[n] for n in names])
    return await _whole(cache, model, version, ident, compute, _inference_bundle, _inference)
