"""Cache keys: `fieldserve:{model}:{version}:{kind}:{digest}`.

The digest is blake2b over a salt and then, for each input array, its dtype, shape and bytes.
The salt is what else the value depends on: the sha256 of the graph that computes a factor,
or the manifest fingerprint for a whole response. So a re-exported version, even one that
reuses a version number, never reads an entry written for other graphs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

PREFIX = "fieldserve"
_DIGEST_BYTES = 20


def digest(salt: str, arrays: Sequence[NDArray[Any]] = (), data: bytes = b"") -> str:
    h = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    h.update(salt.encode())
    for raw in arrays:
        array = np.ascontiguousarray(raw)
        # Length-prefixed description: (dtype, shape) can never run into the bytes.
        described = f"{array.dtype.str}{list(array.shape)}".encode()
        h.update(len(described).to_bytes(4, "little") + described)
        h.update(array.reshape(-1).view(np.uint8).data)
    if data:
        h.update(data)
    return h.hexdigest()


def hashed_bytes(arrays: Sequence[NDArray[Any]] = (), data: bytes = b"") -> int:
    """How much `digest` reads: large inputs are hashed off the event loop."""
    return len(data) + sum(int(a.nbytes) for a in arrays)


def cache_key(model: str, version: str, kind: str, hexdigest: str) -> str:
    return f"{PREFIX}:{model}:{version}:{kind}:{hexdigest}"
