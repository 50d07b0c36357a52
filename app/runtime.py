"""onnxruntime: choosing the execution provider, creating sessions, running them off the loop.

onnxruntime-gpu quietly falls back to the CPU when CUDA cannot start (missing libraries, no
device), so the provider a session asked for is not evidence of the one it got: every
session's `get_providers()` is read back and that is what the service reports.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from app.errors import ManifestError
from app.providers import CPU, CUDA, preload_cuda, provider_entries
from app.settings import Device

log = logging.getLogger("fieldserve.runtime")


T = TypeVar("T")

# A run with this many rows (the largest leading dimension of its inputs) hands its arena
# memory back when it ends: onnxruntime's arena otherwise keeps the largest run's activations
# for the life of the session (measured: +180 MB after one 160,000-row branch request, in
# 8,192-row runs). Smaller runs keep their arena, which is what makes them fast.
SHRINK_ROWS = 2_048
_SHRINK = ort.RunOptions()
_SHRINK.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
_M_MMAP_THRESHOLD = -3


def return_big_frees() -> None:
    """Make glibc give every freed block of 1 MiB or more back to the system. Its default
    threshold rises with each large free, after which big arrays (answers, arena chunks) come
    from a heap that never shrinks: the process stayed 170 MB above its start after a few
    large requests, and 25 MB above with this. Harmless where the libc is not glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        log.debug("not glibc: large frees stay with the allocator")


def select_providers(device: Device, available: Sequence[str]) -> tuple[str, ...]:
    """The providers to ask a session for, best first.

    Raises ManifestError for device="cuda" without CUDA: an explicit request for the GPU that
    cannot be met is refused rather than silently served from the CPU.
    """
    if device == "cpu":
        return (CPU,)
    if CUDA in available:
        return (CUDA, CPU)
    if device == "cuda":
        raise ManifestError(
            f"FIELDSERVE_DEVICE=cuda but onnxruntime offers no {CUDA} "
            f"(available: {', '.join(available) or 'none'}; is onnxruntime-gpu installed?)"
        )
    return (CPU,)


@dataclass(frozen=True)
class GraphIdent:
    """Which graph of which model version; sha256 is the verified hash of its file."""

    model: str
    version: str
    graph: str
    sha256: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.model, self.version, self.graph) if p)


Observer = Callable[[float], None]
# Given (model, version, graph), what to call with each session.run's duration in seconds.
ObserverFactory = Callable[[str, str, str], Observer]


@dataclass(frozen=True)
class Graph:
    """One verified ONNX graph and its session. Its methods block: call them from a worker
    thread (see `run_blocking`), never on the event loop."""

    name: str
    session: ort.InferenceSession
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    provider: str
    ident: GraphIdent
    observe: Observer | None = None

    def run(
        self, feeds: Mapping[str, NDArray[Any]], release: bool | None = None
    ) -> list[NDArray[Any]]:
        """`release`: hand the arena back after this run; None = when it has SHRINK_ROWS rows
        or more. A caller running chunks passes False but for the last one, so the arena is
        reused within the request and released at its end."""
        start = time.perf_counter()
        if release is None:
            rows = max((a.shape[0] for a in feeds.values() if a.ndim), default=0)
            release = rows >= SHRINK_ROWS
        options = _SHRINK if release else None
        out = [np.asarray(a) for a in self.session.run(list(self.outputs), dict(feeds), options)]
        if self.observe is not None:
            self.observe(time.perf_counter() - start)
        return out

    def run_one(self, x: NDArray[Any], release: bool | None = None) -> NDArray[Any]:
        """The common case of the factored graphs: one input tensor, one output tensor."""
        return self.run({self.inputs[0]: x}, release)[0]


class Runtime:
    """Creates sessions for one device setting; shared by every model version it loads."""

    def __init__(
        self,
        device: Device = "auto",
        intra_op_threads: int = 0,
        observers: ObserverFactory | None = None,
    ) -> None:
        self.device = device
        self.intra_op_threads = intra_op_threads
        self.observers = observers
        self.available = tuple(ort.get_available_providers())
        return_big_frees()
        try:
            self.providers: tuple[str, ...] = select_providers(device, self.available)
            self.unavailable: str | None = None
        except ManifestError as exc:
            self.providers, self.unavailable = (), str(exc)
        if CUDA in self.providers:
            said = preload_cuda()
            if said:
                log.info("loading CUDA libraries: %s", said)
        log.info(
            "device=%s available providers=%s requested=%s",
            device,
            ",".join(self.available),
            ",".join(self.providers) or "none",
        )

    def _options(self) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        # Refusals are logged by the repository with context; onnxruntime's own warnings
        # (e.g. about CUDA fallback) would only duplicate them without the model name.
        opts.log_severity_level = 3
        # Spinning workers keep cores busy between runs; on a small machine shared with the
        # event loop and the other requests that costs more (p99 13 ms vs 5 ms measured) than
        # the wake-up latency it saves.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    def load(
        self,
        ident: GraphIdent | str,
        model: bytes,
        inputs: Sequence[str],
        outputs: Sequence[str],
        external: Mapping[str, bytes] | None = None,
    ) -> Graph:
        """Session from verified graph bytes and the verified bytes of its external data files
        (by the names the graph refers to); raises ManifestError with a readable reason."""
        if isinstance(ident, str):
            ident = GraphIdent("", "", ident)
        name = str(ident)
        if self.unavailable:
            raise ManifestError(self.unavailable)
        opts = self._options()
        if external:
            # From memory, not from disk: the bytes are the ones whose sha256 was checked.
            names = list(external)
            blobs = [external[n] for n in names]
            opts.add_external_initializers_from_files_in_memory(
                names, blobs, [len(b) for b in blobs]
            )
        try:
            session = ort.InferenceSession(model, opts, providers=provider_entries(self.providers))
        except Exception as exc:  # onnxruntime raises several unrelated types for bad graphs
            raise ManifestError(f"graph {name!r}: onnxruntime cannot load it: {exc}") from exc
        got_in = tuple(i.name for i in session.get_inputs())
        got_out = tuple(o.name for o in session.get_outputs())
        if got_in != tuple(inputs) or got_out != tuple(outputs):
            raise ManifestError(
                f"graph {name!r}: the manifest says inputs {list(inputs)} -> outputs "
                f"{list(outputs)}, the graph has {list(got_in)} -> {list(got_out)}"
            )
        actual = session.get_providers()[0]
        if actual != self.providers[0]:
            if self.device == "cuda":
                raise ManifestError(
                    f"graph {name!r}: FIELDSERVE_DEVICE=cuda but onnxruntime fell back to "
                    f"{actual} (CUDA libraries or device missing?)"
                )
            log.warning("graph %r asked for %s and got %s", name, self.providers[0], actual)
        observe = (
            self.observers(ident.model, ident.version, ident.graph) if self.observers else None
        )
        return Graph(name, session, got_in, got_out, actual, ident, observe)


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run inference in the loop's worker threads: session.run releases the GIL but blocks.
    The loop's own executor: a hop costs 60 us under uvloop, anyio's 88 us (measured)."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
