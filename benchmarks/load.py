"""Case F's load generators: concurrent HTTP clients, and threads driving onnxruntime."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson

from benchmarks import client as http
from benchmarks.context import Context
from benchmarks.stats import summary

N_RECEIVERS = 5  # case A


async def http_load(
    ctx: Context, base_url: str, seconds: float, sources: np.ndarray
) -> dict[str, Any]:
    """`clients` concurrent keep-alive connections, each posting case A with a fresh source
    after every answer, for `seconds`."""
    w = ctx.work
    clients = ctx.opts.clients
    receivers = ctx.work.receivers(N_RECEIVERS).tolist()
    url = f"/v1/models/{w.name}/predict"
    latencies: list[float] = []
    states: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    async with http.async_client(base_url, clients) as c:
        deadline = loop.time() + seconds

        async def worker(i: int) -> None:
            k = i
            while loop.time() < deadline:
                body = orjson.dumps(
                    {
                        "source": sources[k % len(sources)].tolist(),
                        "receivers": receivers,
                        "times": w.times_spec,
                    }
                )
                k += clients
                t0 = time.perf_counter()
                try:
                    r = await c.post(url, content=body, headers=http.headers(False))
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors[f"HTTP {r.status_code}"] += 1
                else:
                    states[http.cache_state(r)] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - start
    done = sum(states.values())
    return {
        "requests": done,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "seconds": round(elapsed, 2),
        "rps": round(done / elapsed, 1),
        "cache": dict(states),
        "latency": summary(latencies),
    }


def lean_load(ctx: Context, port: int, seconds: float, sources: np.ndarray) -> dict[str, Any]:
    """Like http_load with `clients` threads, each on one keep-alive http.client connection:
    a lean client (a fraction of httpx's CPU per request), so that on a machine the clients
    share with the service, the service rather than the client is what gets measured."""
    import http.client as stdlib
    import socket

    w = ctx.work
    clients = ctx.opts.clients
    receivers = w.receivers(N_RECEIVERS).tolist()
    url = f"/v1/models/{w.name}/predict"
    hdrs = http.headers(False)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    states: list[Counter[str]] = [Counter() for _ in range(clients)]
    errors: list[Counter[str]] = [Counter() for _ in range(clients)]
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        conn = stdlib.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        k = i
        while time.perf_counter() < stop:
            body = orjson.dumps(
                {"source": sources[k % len(sources)].tolist(), "receivers": receivers,
                 "times": w.times_spec}
            )  # fmt: skip
            k += clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", url, body=body, headers=hdrs)
                r = conn.getresponse()
                data = r.read()
            except (OSError, stdlib.HTTPException) as exc:
                errors[i][type(exc).__name__] += 1
                conn.close()
                conn = stdlib.HTTPConnection("127.0.0.1", port, timeout=120)
                continue
            latencies[i].append(time.perf_counter() - t0)
            if r.status != 200:
                errors[i][f"HTTP {r.status}"] += 1
            else:
                tail = data[-600:]
                at = tail.rfind(b'"cache":"')
                states[i][tail[at + 9 :].split(b'"', 1)[0].decode() if at >= 0 else "?"] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    done = sum(sum(c.values()) for c in states)
    err: Counter[str] = sum(errors, Counter())
    return {
        "requests": done,
        "errors": sum(err.values()),
        "error_kinds": dict(err),
        "seconds": round(elapsed, 2),
        "rps": round(done / elapsed, 1),
        "cache": dict(sum(states, Counter())),
        "latency": summary([v for lat in latencies for v in lat]),
    }


def thread_load(
    fn: Callable[[np.ndarray], object], clients: int, seconds: float, sources: np.ndarray
) -> dict[str, Any]:
    counts = [0] * clients
    errors: list[str] = []
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        k = i
        try:
            while time.perf_counter() < stop:
                fn(sources[k % len(sources)])
                k += clients
                counts[i] += 1
        except Exception as exc:  # counted, as the HTTP side counts its errors
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "requests": sum(counts),
        "errors": len(errors),
        "cpu_s": round(time.process_time() - cpu, 2),
        "seconds": round(elapsed, 2),
        "rps": round(sum(counts) / elapsed, 1),
    }
