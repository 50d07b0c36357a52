"""Garbage written straight into Redis under the keys the service uses (app/cache/keys.py).

Each kind of damage is one a shared or failing Redis can really hand back: bytes of someone
else's, a value cut short, a header that lies, a well-formed bundle of the wrong shape or
kind, a pickle (which the service must never load: unpickling it would create a marker
file). The service must take each for a miss and answer right.

Not covered, on purpose: flipped bits inside a value's array data. The bundle format has no
checksum, so such a value is indistinguishable from a real one.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import redis

from app.bundle import Bundle, BundleError, decode, encode

PREFIX = "fieldserve:"


class _Marker:
    """Unpickling this opens (creates) a file: proof that a cache value was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _bundle_or_none(real: bytes) -> Bundle | None:
    try:
        return decode(real)
    except BundleError:
        return None


def _reshaped(real: bytes) -> bytes:
    """The same names and meta, every array one column short (or one element, if 1-D)."""
    bundle = _bundle_or_none(real)
    if bundle is None or not bundle.arrays:
        return os.urandom(64)
    arrays = {
        name: (a[..., :-1] if a.ndim and a.shape[-1] > 1 else np.zeros((3, 7), np.float32))
        for name, a in bundle.arrays.items()
    }
    return encode(Bundle(bundle.meta, arrays))


def _renamed(real: bytes) -> bytes:
    """A well-formed bundle of another kind: other array names, no meta."""
    return encode(Bundle({}, {"not_ours": np.arange(12, dtype=np.float32).reshape(3, 4)}))


def _retyped(real: bytes) -> bytes:
    """The same names and shapes in another dtype (int8)."""
    bundle = _bundle_or_none(real)
    if bundle is None:
        return os.urandom(64)
    arrays = {n: np.zeros(a.shape, np.int8) for n, a in bundle.arrays.items()}
    return encode(Bundle(bundle.meta, arrays))


def _meta_junk(real: bytes) -> bytes:
    """The real arrays with a meta of the wrong types (a list where fields and warnings go)."""
    bundle = _bundle_or_none(real)
    arrays = dict(bundle.arrays) if bundle is not None else {}
    return encode(Bundle({"fields": [1, 2], "warnings": "x", "cache": 7}, arrays))


def damage(marker: Path) -> dict[str, Callable[[bytes], bytes]]:
    """Every kind of damage; MALFORMED and FOREIGN split them in two."""
    return {
        "random bytes": lambda real: os.urandom(max(len(real), 16)),
        "empty": lambda real: b"",
        "cut in half": lambda real: real[: len(real) // 2],
        "cut by 1 byte": lambda real: real[:-1],
        "bad magic": lambda real: b"XXXX" + real[4:],
        "header length 2^31": lambda real: real[:4] + struct.pack("<I", 2**31) + real[8:],
        "header not JSON": lambda real: real[:8] + b"\xff" * 16 + real[24:],
        "one column short": _reshaped,
        "another kind": _renamed,
        "int8 arrays": _retyped,
        "meta of wrong types": _meta_junk,
        "pickle": lambda real: pickle.dumps(_Marker(marker)),
        "JSON": lambda real: b'{"pressure": [[1.0]]}',
    }


# Bytes that are no bundle at all: the decoder must refuse them.
MALFORMED = (
    "random bytes",
    "empty",
    "cut in half",
    "cut by 1 byte",
    "bad magic",
    "header length 2^31",
    "header not JSON",
    "pickle",
    "JSON",
)
# Well-formed bundles that are not what the key promises (another writer's, another format
# version's): only a check of names, dtypes and shapes against the request can refuse them.
FOREIGN = ("one column short", "another kind", "int8 arrays", "meta of wrong types")


def corrupt_all(client: redis.Redis, marker: Path, names: Sequence[str]) -> Counter[str]:
    """Overwrite every fieldserve entry, the entries of each kind (response, branch, trunk,
    ...) taking the kinds of damage `names` in turn. The TTL is kept: the service's own expiry
    applies."""
    kinds = damage(marker)
    done: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for key in sorted(client.scan_iter(match=PREFIX + "*", count=1000)):
        real = client.get(key)
        if not isinstance(real, bytes):
            continue
        parts = key.decode(errors="replace").split(":")
        kind = parts[3] if len(parts) >= 5 else "?"
        name = names[seen[kind] % len(names)]
        seen[kind] += 1
        client.set(key, kinds[name](real), keepttl=True)
        done[name] += 1
    return done
