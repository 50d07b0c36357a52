"""Requests within the body and point limits whose danger is their size: the memory they make
the service hold, and the bytes of their answer (issue 13, point 1).

The design: answered 4xx before any graph runs, or answered within FIELDSERVE_MAX_RESPONSE_BYTES
with the service's resident memory under 1.5 GB throughout and back within 10% afterwards.
A guard thread watches the service's VmRSS and kills it past the bound, so a service without
the limits costs this machine 1.5 GB and a few seconds, not 11 GB and a minute.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import orjson

from benchmarks.field_calls import FieldTraffic
from benchmarks.hostile import v2_binary
from benchmarks.server import rss_mb
from benchmarks.tally import CORRECT, REFUSED, Verdict
from benchmarks.traffic import Answer, Call, Connection, Judge, lost_or_none

RSS_BOUND_MB = 1500.0  # issue 13: no request within the limits above 1.5 GB resident
RETURN_FRACTION = 0.10  # ...and back within 10% of the size before it afterwards,
# or within this much: on a small process (one model, ~130 MB) 10% is less than what the
# allocator keeps of a 10 MB body's parse for reuse, which is no leak.
RETURN_FLOOR_MB = 50.0


def returned(before_mb: float, after_mb: float, cached_mb: float = 0.0) -> bool:
    """Back within the bound, not counting what the cache took on by design (an answer of up
    to CACHE_MAX_ITEM_BYTES may stay cached)."""
    kept = after_mb - before_mb - max(0.0, cached_mb)
    return kept <= max(RETURN_FRACTION * before_mb, RETURN_FLOOR_MB)


def max_response_bytes() -> int:
    """The service's default answer limit (64 MiB if the setting does not exist yet)."""
    from app.settings import Settings

    info = Settings.model_fields.get("max_response_bytes")
    default = info.default if info is not None else None
    return int(default) if isinstance(default, int) else 64 * 1024 * 1024


class RssGuard:
    """Samples a process's resident memory every 20 ms; kills it (SIGKILL) past `kill_mb`."""

    def __init__(self, pid: int, kill_mb: float = RSS_BOUND_MB) -> None:
        self.pid = pid
        self.kill_mb = kill_mb
        self.peak_mb = 0.0
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="rss-guard")

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                rss = rss_mb(self.pid)["VmRSS"]
            except (OSError, KeyError):
                return  # the process is gone
            self.peak_mb = max(self.peak_mb, rss)
            if rss > self.kill_mb:
                os.kill(self.pid, signal.SIGKILL)
                self.killed = True
                return
            self._stop.wait(0.02)

    def __enter__(self) -> RssGuard:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5)


def bounded(limit: int) -> Judge:
    """A judge for a request that may be refused (4xx) or answered within `limit` bytes."""

    def judge(answer: Answer) -> Verdict:
        early = lost_or_none(answer)
        if early is not None:
            return early
        if 400 <= answer.status < 500:
            return REFUSED
        if answer.truncated:
            return Verdict("wrong", f"{answer.status} with an answer over {limit / 1e6:.0f} MB")
        if answer.status != 200:
            return Verdict("wrong", f"{answer.status}: {answer.body[:120]!r}")
        return CORRECT

    return judge


@dataclass(frozen=True)
class Sized:
    """One oversized call, and what it is (for the report)."""

    call: Call
    request_mb: float

    @property
    def route(self) -> str:
        """ "v2" (the Open Inference Protocol) or "domain" (/v1/models/...)."""
        return "v2" if self.call.path.startswith("/v2/") else "domain"


# Below scale 1 the requests are the smaller ones, and the answer limit shrinks with
# them (the service is started with it), so that they still run into it.
SMALL_RESPONSE_LIMIT = 8 * 1024 * 1024


def response_limit(scale: float) -> int:
    return max_response_bytes() if scale >= 1.0 else SMALL_RESPONSE_LIMIT


def oversized_calls(
    traffic: FieldTraffic, scale: float, airfoil: str | None = None
) -> Iterator[Sized]:
    """The issue's requests; `scale` < 1 sends the smaller ones it also names. An answer may
    be no larger than `response_limit(scale)`."""
    limit = response_limit(scale)
    m = traffic.name
    s_in, p_in = traffic.inputs
    dim = traffic.domain.dim
    judge = bounded(limit)
    big = scale >= 1.0
    rng = np.random.default_rng(0)
    one_point = np.asarray([[*traffic.receiver_sets[0][0], 0.001]], np.float32)

    def sized(label: str, path: str, body: bytes, **headers: str) -> Sized:
        call = Call(label, "POST", path, judge, body, headers, max_answer_bytes=limit)
        return Sized(call, len(body) / 1e6)

    n = 2_000_000 if big else 500_000
    sources = traffic.domain.sources(n, rng).astype(np.float32)
    body, headers = v2_binary(
        [
            (s_in, "FP32", [n, dim], sources.tobytes()),
            (p_in, "FP32", [1, dim + 1], one_point.tobytes()),
        ]
    )
    yield sized(f"v2 {n:,} sources x 1 point (binary)", f"/v2/models/{m}/infer", body, **headers)

    n = 475_000
    body, headers = v2_binary([(s_in, "FP32", [n, dim], sources[:n].tobytes())])
    yield sized(
        f"v2 .branch {n:,} sources (JSON answer)", f"/v2/models/{m}.branch/infer", body, **headers
    )

    n = 1_300_000 if big else 300_000
    receivers = traffic.domain.receivers(min(n, 100_000), rng)
    points = np.empty((n, dim + 1), np.float32)
    points[:, :dim] = receivers[np.arange(n) % len(receivers)]
    points[:, dim] = rng.uniform(0, traffic.domain.t_end, n)
    body, headers = v2_binary([(p_in, "FP32", [n, dim + 1], points.tobytes())])
    yield sized(
        f"v2 .trunk {n:,} points (JSON answer)", f"/v2/models/{m}.trunk/infer", body, **headers
    )

    n = 1_000_000 if big else 500_000
    # Six decimals keep the body within the 16 MB limit (a float's full repr would not).
    times = np.round(np.linspace(0, traffic.domain.t_end, n), 6)
    body = orjson.dumps(
        {
            "source": traffic.pool[0],
            "receivers": traffic.receiver_sets[0][:1],
            "times": times,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    yield sized(f"predict 1 receiver x {n:,} times", f"/v1/models/{m}/predict", body)

    side = 1414 if big else 500
    body = orjson.dumps(
        {
            "source": traffic.pool[0],
            "receivers": {"grid": {"nx": side, "ny": side}},
            "times": {"start": 0.0, "stop": 0.0, "num": 1},
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    yield sized(f"predict grid {side} x {side} x 1 time", f"/v1/models/{m}/predict", body)

    if airfoil is not None:
        body = orjson.dumps(
            {
                "geometry": {"naca": "2412"},
                "conditions": {"aoa_deg": 4.0, "speed": 1.0},
                "query": {"grid": {"nx": side, "ny": side, "bounds": [[-0.5, 1.5], [-0.75, 0.75]]}},
            }
        )
        yield sized(f"airfoil grid {side} x {side}", f"/v1/models/{airfoil}/predict", body)


def cache_mb(conn: Connection) -> float | None:
    """MB the service's in-process cache holds by its own count (/health/ready: `bytes` of
    the memory cache, `local_bytes` of the tier in front of Redis); None if it does not say."""
    answer = conn.send(Call("cache size", "GET", "/health/ready", lambda a: CORRECT))
    if answer.status != 200:
        return None
    try:
        details = orjson.loads(answer.body)["cache"]["details"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    held = details.get("bytes", details.get("local_bytes"))
    return held / 1e6 if isinstance(held, int | float) else None


def settle(pid: int, seconds: float = 2.0) -> float | None:
    """The resident memory once the answer is sent and the service has had time to give back
    (None: the process is gone, or a zombie)."""
    time.sleep(seconds)
    try:
        return rss_mb(pid).get("VmRSS")
    except OSError:
        return None
