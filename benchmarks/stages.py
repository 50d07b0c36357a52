"""Where a request's time goes inside the service: `python -m benchmarks.stages`.

Starts the service with timers wrapped around the functions on the predict path (request
decoding, validation, domain checks, cache keys and stores, thread hops, session.run,
composition, rendering, the access log line), drives a few scenarios one request at a time
and prints each stage's mean wall (and, for blocking functions, thread CPU) time per request.
The wrapped names are looked up leniently: a function the service no longer has is skipped.

    python -m benchmarks.stages --scenarios A_miss,A_partial,C_partial,B100k_binary
    python -m benchmarks.stages --server-env FIELDSERVE_INTRA_OP_THREADS=1
    python -m benchmarks.stages --scenarios E_cached,E_new   # the geometry model
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib
import inspect
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

# (module, attribute path, label): the predict path of app/ as of this writing.
PROBES = [
    ("app.access", "AccessMiddleware.__call__", "middleware: access (whole request)"),
    ("app.access", "log.info", "access log line"),
    ("app.routers.models", "_predict", "route _predict"),
    ("app.routers.models", "decode_json", "decode JSON body"),
    ("app.routers.models", "cached_prediction", "response cache (lookup + compute + store)"),
    ("app.routers.models", "render", "render answer"),
    ("app.answers", "hash_off_loop", "hash request body"),
    ("app.families.deeponet", "validate_body", "pydantic validation"),
    ("app.families.deeponet", "AcousticDeepONet.predict", "deeponet predict"),
    ("app.families.deeponet", "AcousticDeepONet._field", "deeponet field"),
    ("app.families.deeponet", "AcousticDeepONet._coefficients", "branch factor (cached)"),
    ("app.families.deeponet", "AcousticDeepONet._basis", "trunk factor (cached)"),
    ("app.families.deeponet", "space_time_points", "space-time points"),
    ("app.families.deeponet", "compose", "compose (basis @ coefficients)"),
    ("app.families.acoustic_domain", "AcousticDomain.check_source", "check source"),
    ("app.families.acoustic_domain", "AcousticDomain.check_receivers", "check receivers"),
    ("app.families.acoustic_domain", "AcousticDomain.check_times", "check times"),
    ("app.cache.factors", "hash_off_loop", "hash factor inputs"),
    ("app.cache.factors", "run_blocking", "thread hop + graph run"),
    ("app.cache.store", "Cache._load", "cache load"),
    ("app.cache.store", "Cache._store", "cache store"),
    ("app.cache.store", "encode", "bundle encode (cache value)"),
    ("app.cache.store", "decode", "bundle decode (cache value)"),
    ("app.families.enf2enf", "validate_body", "pydantic validation (enf2enf)"),
    ("app.families.enf2enf", "Enf2Enf.predict", "enf2enf predict"),
    ("app.families.enf2enf", "Enf2Enf._geometry", "geometry (recalled by id)"),
    ("app.families.enf2enf", "Enf2Enf._latents", "latents (cached)"),
    ("app.families.enf2enf", "Enf2Enf.decode", "enf2enf decode (decoder graph)"),
    ("app.families.geometry_domain", "GeometryDomain.place", "place query points"),
    ("app.families.geometry_domain", "signed_distance", "query points' signed distance"),
    ("app.families.geometry_domain", "GeometryDomain.check_points", "near-wall / box checks"),
    ("app.runtime", "Graph.run", "session.run (worker thread)"),
    ("app.render", "encode", "bundle encode (binary answer)"),
    ("app.codecs", "OrjsonResponse.render", "orjson encode (JSON answer)"),
]


# -- inside the service ----------------------------------------------------------------------

_STATS: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
_LOCK = threading.Lock()


def _record(label: str, wall: float, cpu: float) -> None:
    with _LOCK:
        s = _STATS[label]
        s[0] += 1
        s[1] += wall
        s[2] += cpu


def _wrap(fn: Any, label: str) -> Any:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                _record(label, time.perf_counter() - t0, 0.0)

        return timed_async

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _record(label, time.perf_counter() - t0, time.thread_time() - c0)

    return timed


def _install() -> list[str]:
    found = []
    for module_name, path, label in PROBES:
        try:
            owner: Any = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for part in parents:
                owner = getattr(owner, part)
            setattr(owner, attr, _wrap(getattr(owner, attr), label))
            found.append(label)
        except (ImportError, AttributeError):
            continue
    return found


def _dump(path: str) -> None:
    with _LOCK:
        doc = {k: list(v) for k, v in _STATS.items()}
        _STATS.clear()
    Path(path).write_text(json.dumps(doc))


def serve() -> None:
    """The service with the probes installed; SIGUSR1 writes and resets the counters."""
    out = os.environ["BENCHMARKS_STAGES_OUT"]
    found = _install()
    Path(out + ".probes").write_text(json.dumps(found))
    signal.signal(signal.SIGUSR1, lambda *_: _dump(out))
    atexit.register(_dump, out)
    from app.__main__ import main as app_main

    app_main()


# -- the driver ------------------------------------------------------------------------------

SCENARIOS: dict[str, tuple[int, int, bool, bool]] = {
    # name: (receivers, requests, receivers fixed (trunk cached), binary answer)
    "A_miss": (5, 300, False, False),
    "A_partial": (5, 300, True, False),
    "A_miss_binary": (5, 300, False, True),
    "C_partial": (100, 60, True, False),
    "C_miss": (100, 20, False, False),
    "B10k_json": (100, 20, False, False),
    "B10k_binary": (100, 20, False, True),
    "B100k_json": (1000, 5, False, False),
    "B100k_binary": (1000, 5, False, True),
}
# The geometry model (--geo-model), 2,000 query points: name -> (requests, geometry cached).
GEO_SCENARIOS: dict[str, tuple[int, bool]] = {"E_cached": (60, True), "E_new": (30, False)}


def drive(args: argparse.Namespace) -> int:
    import numpy as np

    from benchmarks import client as http
    from benchmarks.server import ServerProcess
    from benchmarks.workloads import AcousticWorkload, latest_version, load_manifest

    version_dir = latest_version(args.model_dir, args.model)
    if version_dir is None:
        raise SystemExit(f"no model {args.model} under {args.model_dir}")
    w = AcousticWorkload(version_dir, load_manifest(version_dir), seed=args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="fieldserve-stages-"))
    out = str(workdir / "stages.json")
    env = {"BENCHMARKS_STAGES_OUT": out, "FIELDSERVE_LOG_LEVEL": "info"}
    for item in args.server_env:
        key, _, value = item.partition("=")
        env[key] = value
    server = ServerProcess(workdir, args.model_dir, env)
    server.start_argv = [sys.executable, "-m", "benchmarks.stages", "--serve"]
    server.start()
    report: dict[str, Any] = {"probes": json.loads(Path(out + ".probes").read_text())}
    try:
        with http.client(server.base_url) as c:
            for name in args.scenarios.split(","):
                binary = False
                if name in GEO_SCENARIOS:
                    reps, cached = GEO_SCENARIOS[name]
                    reps = min(reps, args.max_reps) if args.max_reps else reps
                    bodies, url = _geometry_bodies(c, args, reps + 3, cached)
                else:
                    n_rec, reps, fixed, binary = SCENARIOS[name]
                    reps = min(reps, args.max_reps) if args.max_reps else reps
                    receivers = w.receivers(n_rec)
                    bodies = [
                        http.body(w.request(s, receivers if fixed else w.receivers(n_rec)))
                        for s in w.sources(reps + 3)
                    ]
                    url = f"/v1/models/{w.name}/predict"
                for b in bodies[:3]:
                    c.post(url, content=b, headers=http.headers(binary)).raise_for_status()
                time.sleep(0.2)
                os.kill(server.pid, signal.SIGUSR1)  # reset after the warm-up
                latencies = []
                for b in bodies[3:]:
                    t0 = time.perf_counter()
                    r = c.post(url, content=b, headers=http.headers(binary))
                    latencies.append(time.perf_counter() - t0)
                    r.raise_for_status()
                time.sleep(0.2)
                before = Path(out).stat().st_mtime_ns if Path(out).exists() else 0
                os.kill(server.pid, signal.SIGUSR1)
                while not Path(out).exists() or Path(out).stat().st_mtime_ns == before:
                    time.sleep(0.05)
                time.sleep(0.1)
                stats = json.loads(Path(out).read_text())
                n = len(latencies)
                rows = {
                    label: {
                        "calls": round(v[0] / n, 2),
                        "wall_ms": round(v[1] / n * 1e3, 4),
                        "cpu_ms": round(v[2] / n * 1e3, 4),
                    }
                    for label, v in sorted(stats.items(), key=lambda kv: -kv[1][1])
                }
                report[name] = {
                    "requests": n,
                    "client_p50_ms": round(float(np.median(latencies)) * 1e3, 4),
                    "client_mean_ms": round(float(np.mean(latencies)) * 1e3, 4),
                    "cache": http.cache_state(r),
                    "stages": rows,
                }
                print(
                    f"== {name}: {n} requests, client p50 "
                    f"{report[name]['client_p50_ms']:.3f} ms, mean "
                    f"{report[name]['client_mean_ms']:.3f} ms, cache {report[name]['cache']}"
                )
                print(f"   {'stage (per request, means)':<44} {'calls':>6} {'wall ms':>9} "
                      f"{'cpu ms':>8}")  # fmt: skip
                for label, row in rows.items():
                    cpu = f"{row['cpu_ms']:8.3f}" if row["cpu_ms"] else f"{'-':>8}"
                    print(f"   {label:<44} {row['calls']:>6} {row['wall_ms']:9.3f} {cpu}")
    finally:
        server.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def _geometry_bodies(
    c: Any, args: argparse.Namespace, n: int, cached: bool
) -> tuple[list[bytes], str]:
    """n request bodies for the geometry model, each with its own 2,000 query points, on one
    geometry (asked for by its id) or on a new NACA section each; and the pinned URL."""
    from benchmarks import client as http
    from benchmarks.workloads import AirfoilWorkload, latest_version, load_manifest

    version_dir = latest_version(args.model_dir, args.geo_model)
    if version_dir is None:
        raise SystemExit(f"no model {args.geo_model} under {args.model_dir}")
    g = AirfoilWorkload(version_dir, load_manifest(version_dir), seed=args.seed)
    codes = g.codes()
    if not cached:
        new = [next(codes) for _ in range(n)]
        return [http.body(g.request({"naca": x}, g.query(x))) for x in new], g.predict_url
    code = next(codes)
    first = c.post(g.predict_url, content=http.body(g.request({"naca": code}, g.query(code))))
    first.raise_for_status()
    geometry = {"geometry_id": http.decoded(first)[0]["geometry_id"]}
    return [http.body(g.request(geometry, g.query(code))) for _ in range(n)], g.predict_url


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.stages", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scenarios", default="A_miss,A_partial,C_partial,B100k_binary")
    p.add_argument("--model-dir", type=Path, default=Path("models"))
    p.add_argument("--model", default="acoustics-room-3d")
    p.add_argument("--geo-model", default="airfoil-enf2enf", help="for E_cached and E_new")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--max-reps", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.serve:
        serve()
        return 0
    known = [*SCENARIOS, *GEO_SCENARIOS]
    bad = [s for s in args.scenarios.split(",") if s not in known]
    if bad:
        raise SystemExit(f"unknown scenarios {bad}; choose from {', '.join(known)}")
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
