"""The cases of the performance issue, A to H. Each returns {"title", "modes": {key: row},
"notes": [...], ...}; a row is a latency summary (or a rate) with a label for the table."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from benchmarks import client as http
from benchmarks.context import Context, Inputs, cpu_count, redis_pair
from benchmarks.load import http_load, lean_load, thread_load
from benchmarks.modes import Mode
from benchmarks.raw import RawEnf2Enf
from benchmarks.stats import ratio
from benchmarks.workloads import ELASTICITY_TASK, ElasticityWorkload, PinnedVersion
from geometry import encoder_points, signed_distance, surface_features

Case = dict[str, Any]
F64 = np.ndarray
N_A_RECEIVERS = 5
ELASTIC_FIELDS = ("von_mises", "ux", "uy")


def _torch_mode(ctx: Context, case: Case, key: str, inputs: Inputs) -> list[Mode]:
    """torch eager on the same kind of inputs, when a training run was given."""
    model = ctx.torch_model()
    if model is None:
        note = (
            "torch eager skipped: no checkpoint given (--torch-run runs/<run>); the shipped "
            "models are ONNX only"
        )
        if note not in case["notes"]:
            case["notes"].append(note)
        return []
    pts = [ctx.work.space_time(r) for _, r in inputs]

    def parity() -> dict[str, Any]:
        want = ctx.raw.field(inputs[0][0], pts[0])
        got = model.field(inputs[0][0], pts[0])
        return {"max_rel_err_vs_raw": float(np.abs(got - want).max() / np.abs(want).max())}

    return [
        Mode(
            key,
            f"torch eager ({model.threads} threads)",
            lambda k: model.field(inputs[k][0], pts[k]),
            extra=parity,
        )
    ]


def _raw_modes(ctx: Context, prefix: str, inputs: Inputs, fixed: F64 | None) -> list[Mode]:
    """Raw onnxruntime on fresh inputs per call; with `fixed` receivers also the cached-trunk
    equivalent (the basis held, branch + dot only)."""
    w = ctx.work
    pts = [w.space_time(r) for _, r in inputs]
    modes = [
        Mode(
            f"{prefix}raw_ort",
            "raw ORT: branch + trunk + dot",
            lambda k: ctx.raw.field(inputs[k][0], pts[k]),
        )
    ]
    if fixed is not None:
        basis = ctx.raw.basis(w.space_time(fixed))
        modes.append(
            Mode(
                f"{prefix}raw_ort_cached_basis",
                "raw ORT: branch + dot (basis held)",
                lambda k: basis @ ctx.raw.coefficients(inputs[k][0])[0],
            )
        )
    return modes


def _raw_service_options_mode(ctx: Context, inputs: Inputs) -> Mode:
    """Raw onnxruntime with the service's options (idle workers sleep instead of spinning):
    separates what the service's own code costs from what that choice costs."""
    pts = [ctx.work.space_time(r) for _, r in inputs]
    raw = ctx.raw_service_options
    return Mode(
        "raw_ort_service_options",
        "raw ORT, the service's session options (no spinning)",
        lambda k: raw.field(inputs[k][0], pts[k]),
    )


def _fresh(ctx: Context, n: int, n_rec: int) -> list[tuple[F64, F64]]:
    """n (source, receivers) pairs, every source and every receiver set new."""
    w = ctx.work
    return [(s, w.receivers(n_rec)) for s in w.sources(n)]


def case_a(ctx: Context) -> Case:
    """The paper's timing case: one source, 5 receivers x 100 times."""
    w = ctx.work
    reps, warm = ctx.reps(400, 30), ctx.reps(20, 3)
    total = reps + warm
    fixed = w.receivers(N_A_RECEIVERS)
    partial = [(s, fixed) for s in w.sources(total)]
    case: Case = {
        "title": f"A: {w.name}, 1 source, {N_A_RECEIVERS} receivers x 100 times",
        "points": N_A_RECEIVERS * 100,
        "modes": {},
        "notes": [],
    }
    server = ctx.server()
    with http.LeanClient(server.port) as c, http.client(server.base_url) as ref:
        modes = [
            ctx.http_mode(
                c, "http_json_miss", "HTTP JSON, miss (new source + receivers)",
                _fresh(ctx, total, N_A_RECEIVERS), binary=False, expect="miss", warmup=warm,
            ),
            ctx.http_mode(
                c, "http_json_partial", "HTTP JSON, new source, trunk cached", partial,
                binary=False, expect="partial", warmup=warm,
            ),
            ctx.http_mode(
                c, "http_binary_miss", "HTTP binary, miss", _fresh(ctx, total, N_A_RECEIVERS),
                binary=True, expect="miss", warmup=warm,
            ),
            ctx.floor_mode(c),
            ctx.http_mode(
                ref, "httpx_json_miss", "httpx: HTTP JSON, miss (client-cost reference)",
                _fresh(ctx, total, N_A_RECEIVERS), binary=False, expect="miss", warmup=warm,
            ),
            ctx.floor_mode(ref, "httpx_floor", "httpx"),
            *_raw_modes(ctx, "", _fresh(ctx, total, N_A_RECEIVERS), fixed),
            _raw_service_options_mode(ctx, _fresh(ctx, total, N_A_RECEIVERS)),
            *_torch_mode(ctx, case, "torch", _fresh(ctx, total, N_A_RECEIVERS)),
        ]  # fmt: skip
        case["modes"] = ctx.run_modes(modes, reps, warm, block=10)
    return case


def case_b(ctx: Context) -> Case:
    """10,000 and 100,000 space-time points, JSON and binary answers, every call a true miss."""
    w = ctx.work
    case: Case = {"title": f"B: {w.name}, large fields (true misses)", "modes": {}, "notes": []}
    for n in (10_000, 100_000):
        n_rec = n // 100
        reps = ctx.reps(30, 3) if n == 10_000 else ctx.reps(10, 2)
        warm = ctx.reps(2, 1)
        total = reps + warm
        with http.LeanClient(ctx.server().port) as c:
            modes = [
                ctx.http_mode(
                    c, f"{n}/http_{fmt}_miss", f"{n:,} points: HTTP {fmt}, miss",
                    _fresh(ctx, total, n_rec), binary=fmt == "binary", expect="miss",
                    warmup=warm, n_points=n,
                )
                for fmt in ("json", "binary")
            ]  # fmt: skip
            responses = ("json", "binary")
            modes += _raw_modes(ctx, f"{n}/", _fresh(ctx, total, n_rec), None)
            modes += _torch_mode(ctx, case, f"{n}/torch", _fresh(ctx, total, n_rec))
            rows = ctx.run_modes(modes, reps, warm, block=1)
            # What the client pays to get numbers out of each answer (not in the HTTP times).
            for fmt in responses:
                body = _last_body(c, w, n_rec, fmt == "binary")
                dm = Mode(
                    f"{n}/client_decode_{fmt}",
                    f"{n:,} points: client decode, {fmt}",
                    _decoder(body, fmt),
                    extra=_size(body),
                )
                rows.update(ctx.run_modes([dm], 5, 1, block=5))
        for key, row in rows.items():
            row.setdefault("points", n)
            case["modes"][key] = row
    return case


def _size(body: bytes) -> Callable[[], dict[str, Any]]:
    return lambda: {"response_bytes": len(body)}


def _decoder(body: bytes, fmt: str) -> Callable[[int], object]:
    """Getting the pressure array out of an answer, as a client does."""
    if fmt == "json":
        return lambda _k: np.asarray(orjson.loads(body)["pressure"], np.float32)
    return lambda _k: http.read_arrays(body)


def _last_body(c: http.Client, w: Any, n_rec: int, binary: bool) -> bytes:
    """An answer of the same size as the mode's (one more request, untimed)."""
    body = http.body(w.request(w.sources(1)[0], w.receivers(n_rec)))
    r = c.post(f"/v1/models/{w.name}/predict", content=body, headers=http.headers(binary))
    r.raise_for_status()
    return r.content


def case_c(ctx: Context) -> Case:
    """10,000 points: a new source with the trunk cached ("partial") against a true miss, with
    the in-process cache and with Redis (and the in-process tier in front of it)."""
    w = ctx.work
    n_rec = 100
    reps, warm = ctx.reps(60, 6), 3
    total = reps + warm
    fixed = w.receivers(n_rec)
    case: Case = {
        "title": f"C: {w.name}, 10,000 points, new source with cached trunk vs full miss",
        "points": n_rec * 100,
        "modes": {},
        "notes": [],
    }

    def modes(c: http.Client, prefix: str, label: str) -> list[Mode]:
        # The first warm-up call computes the trunk for `fixed`; every later one reuses it.
        partial = [(s, fixed) for s in w.sources(total)]
        return [
            ctx.http_mode(c, f"{prefix}partial", f"HTTP JSON, new source, trunk cached{label}",
                          partial, binary=False, expect="partial", warmup=warm),
            ctx.http_mode(c, f"{prefix}miss", f"HTTP JSON, miss (new source + receivers){label}",
                          _fresh(ctx, total, n_rec), binary=False, expect="miss", warmup=warm),
        ]  # fmt: skip

    with http.LeanClient(ctx.server().port) as c:
        found = modes(c, "http_", "")
        found += _raw_modes(ctx, "", _fresh(ctx, total, n_rec), fixed)
        case["modes"] = ctx.run_modes(found, reps, warm, block=5)
    redis, server = redis_pair(ctx)
    try:
        with http.LeanClient(server.port) as c:
            case["modes"] |= ctx.run_modes(modes(c, "http_redis_", ", Redis"), reps, warm, block=5)
    finally:
        server.stop()
        redis.stop()
    m = case["modes"]
    case["speedup_partial_vs_miss"] = ratio(m["http_miss"]["p50_ms"], m["http_partial"]["p50_ms"])
    case["speedup_partial_vs_miss_redis"] = ratio(
        m["http_redis_miss"]["p50_ms"], m["http_redis_partial"]["p50_ms"]
    )
    return case


def case_d(ctx: Context) -> Case:
    """Case A's request answered whole from the cache: Redis, and the in-process LRU."""
    w = ctx.work
    reps, warm = ctx.reps(500, 50), 5
    source, receivers = w.sources(1)[0], w.receivers(N_A_RECEIVERS)
    same = [(source, receivers)] * (reps + warm)  # the first warm-up call computes it
    case: Case = {
        "title": f"D: {w.name}, case A answered whole from the cache",
        "modes": {},
        "notes": [],
    }
    main = ctx.server()
    redis, server = redis_pair(ctx)
    try:
        with (
            http.LeanClient(server.port) as c,
            http.LeanClient(main.port) as m,
            http.client(server.base_url) as ref,
        ):
            cache = c.get("/health/ready").json().get("cache", {})
            case["cache_backend"] = cache
            if cache.get("backend") != "redis" or cache.get("status") != "up":
                case["notes"].append(f"the Redis-backed service reports its cache as {cache}")
            modes = [
                ctx.http_mode(c, "http_redis_hit", "HTTP JSON, whole answer from Redis", same,
                              binary=False, expect="hit", warmup=warm),
                ctx.http_mode(m, "http_memory_hit", "HTTP JSON, whole answer in-process cache",
                              same, binary=False, expect="hit", warmup=warm),
                ctx.http_mode(c, "http_redis_miss", "HTTP JSON, miss with Redis (reference)",
                              _fresh(ctx, reps + warm, N_A_RECEIVERS), binary=False,
                              expect="miss", warmup=warm),
                ctx.floor_mode(c, "http_floor_redis"),
                ctx.http_mode(ref, "httpx_redis_hit", "httpx: whole answer from Redis "
                              "(client-cost reference)", same, binary=False, expect="hit",
                              warmup=warm),
            ]  # fmt: skip
            case["modes"] = ctx.run_modes(modes, reps, warm, block=10)
    finally:
        server.stop()
        redis.stop()
    return case


def _geo_available(ctx: Context, c: http.Client) -> str | None:
    """None when the service answers geometry requests, else why not."""
    assert ctx.geo is not None
    probe = ctx.geo.request({"naca": "0012"}, ctx.geo.query("0012")[:16])
    return _model_available(c, ctx.geo, probe)


def _model_available(c: http.Client, model: PinnedVersion, probe: dict[str, Any]) -> str | None:
    """None when the service serves the model and its version answers `probe` with 200, else
    why not."""
    name = model.name
    served = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
    if name not in served:
        refused = [
            r for r in c.get("/health/ready").json().get("refused", []) if r.get("name") == name
        ]
        why = f": refused ({refused[0].get('reason')})" if refused else ""
        return f"the service does not serve {name}{why}"
    r = c.post(model.predict_url, content=http.body(probe))
    if r.status_code != 200:
        return f"POST {model.predict_url} answers {r.status_code}: {r.text[:300]}"
    return None


def _geo_http_mode(
    c: http.Client,
    key: str,
    label: str,
    url: str,
    bodies: list[bytes],
    warmup: int,
    expect: str | None = None,
    server_time: bool = False,
) -> Mode:
    """POST bodies[k] on the k-th call; with `expect` the row says whether every answer had
    that cache state, with `server_time` the time the service itself spent (its histogram)."""
    states: Counter[str] = Counter()
    server = [0.0, 0.0]  # requests, seconds inside the service
    mark = [0.0, 0.0]

    def call(k: int) -> None:
        r = c.post(url, content=bodies[k])
        if r.status_code != 200:
            raise RuntimeError(f"{label}: HTTP {r.status_code}: {r.text[:300]}")
        if k >= warmup:
            states[http.cache_state(r)] += 1

    def before() -> None:
        if server_time:
            mark[:] = http.server_seconds(c)

    def after() -> None:
        if server_time:
            n, s = http.server_seconds(c)
            server[0] += n - mark[0]
            server[1] += s - mark[1]

    def extra() -> dict[str, Any]:
        row: dict[str, Any] = {"cache": dict(states)}
        if expect is not None:
            row.update(expected_cache=expect, cache_ok=set(states) == {expect})
        if server_time:
            row["server_mean_ms"] = round(server[1] / server[0] * 1e3, 4) if server[0] else None
        return row

    return Mode(key, label, call, before, after, extra)


def case_e(ctx: Context) -> Case:
    """Geometry: 2,000 query points on a new geometry (encoder + decoder) and on a cached one
    (decoder only)."""
    case: Case = {"title": "E: geometry, 2,000 query points", "modes": {}, "notes": []}
    if ctx.geo is None:
        case["skipped"] = (
            f"no geometry model {ctx.opts.geo_model!r} in {ctx.opts.model_dir} or "
            f"{ctx.opts.geo_dir}"
        )
        return case
    g = ctx.geo
    case["title"] = f"E: {g.name}, {g.n_query:,} query points, new vs cached geometry"
    reps, warm = ctx.reps(40, 5), 2
    total = reps + warm
    codes = g.codes()
    new = [next(codes) for _ in range(2 * total)]  # the raw side and the HTTP side each
    new_q = [g.query(code) for code in new]
    cached_code = next(codes)
    cached_q = [g.query(cached_code) for _ in range(total)]
    case["cached_geometry"] = cached_code
    raw = ctx.raw_geo
    cond = g.conditions
    polys = g.polylines(cached_code)
    latents = raw.encode(polys)
    feeds = _encoder_feeds(ctx, polys)
    dfeeds = [raw.decoder_feeds(latents, cond, q, polys) for q in cached_q[:4]]

    def raw_new(k: int) -> None:
        p = g.polylines(new[k])
        raw.decode(raw.encode(p), cond, new_q[k], p)

    modes = [
        Mode("raw_new_geometry",
             "raw ORT, new geometry: section + encoder points + encoder + SDF + decoder", raw_new),
        Mode("raw_cached_geometry", "raw ORT, cached latents: SDF + decoder",
             lambda k: raw.decode(latents, cond, cached_q[k], polys)),
        Mode("raw_encoder_graph", "raw ORT, encoder graph alone",
             lambda _k: raw.encoder.run(None, feeds)),
        Mode("raw_decoder_graph", f"raw ORT, decoder graph alone ({g.n_query:,} points)",
             lambda k: raw.decoder.run(None, dfeeds[k % len(dfeeds)])),
        Mode("query_sdf", f"signed distance of {g.n_query:,} query points (numpy)",
             lambda k: signed_distance(cached_q[k], polys)),
    ]  # fmt: skip
    with http.LeanClient(ctx.server().port) as c:
        why = _geo_available(ctx, c)
        if why is not None:
            case["skipped_http"] = why
            case["notes"].append(f"HTTP skipped: {why}")
        else:
            url = g.predict_url
            first = c.post(url, content=http.body(g.request({"naca": cached_code}, cached_q[0])))
            first.raise_for_status()
            gid = http.decoded(first)[0].get("geometry_id")
            geometry = {"geometry_id": gid} if gid else {"naca": cached_code}
            case["cached_by"] = "geometry_id" if gid else "repeated NACA code, new query set"
            new_bodies = [
                http.body(g.request({"naca": code}, q))
                for code, q in zip(new[total:], new_q[total:], strict=True)
            ]
            modes += [
                _geo_http_mode(c, "http_new_geometry", "HTTP JSON, new geometry (new NACA + "
                               "query)", url, new_bodies, warm),
                _geo_http_mode(c, "http_cached_geometry",
                               f"HTTP JSON, cached geometry ({case['cached_by']})", url,
                               [http.body(g.request(geometry, q)) for q in cached_q], warm),
            ]  # fmt: skip
        case["modes"] = ctx.run_modes(modes, reps, warm, block=2)
    m = case["modes"]
    case["speedup_raw"] = ratio(m["raw_new_geometry"]["p50_ms"], m["raw_cached_geometry"]["p50_ms"])
    if "http_new_geometry" in m:
        case["speedup_http"] = ratio(
            m["http_new_geometry"]["p50_ms"], m["http_cached_geometry"]["p50_ms"]
        )
    return case


def _encoder_feeds(ctx: Context, polys: list[Any]) -> dict[str, np.ndarray]:
    raw = ctx.raw_geo
    pts, sdf = encoder_points(polys, raw.n_encoder, raw.box, seed=raw.seed)
    return {"points": pts.astype(np.float32), "sdf": sdf.astype(np.float32)}


def case_f(ctx: Context) -> Case:
    """Throughput: 16 clients for 20 s on case A with random sources, against onnxruntime
    driven by 16 threads in-process."""
    w = ctx.work
    seconds = ctx.opts.duration
    clients = ctx.opts.clients
    sources = w.sources(200_000 if not ctx.opts.quick else 20_000)
    case: Case = {
        "title": f"F: {w.name}, throughput, {clients} clients x {seconds:g} s, case A, "
        "random sources",
        "clients": clients,
        "seconds": seconds,
        "modes": {},
        "notes": [],
    }
    modes = case["modes"]
    server = ctx.server()
    warm = min(2.0, seconds / 4)
    loads: list[tuple[str, str, Callable[[np.ndarray], dict[str, Any]]]] = [
        ("http", f"HTTP JSON, {clients} threads x http.client (receivers fixed: trunk cached)",
         lambda src: lean_load(ctx, server.port, seconds, src)),
        ("http_httpx", f"HTTP JSON, {clients} httpx.AsyncClient tasks (same requests)",
         lambda src: asyncio.run(http_load(ctx, server.base_url, seconds, src))),
    ]  # fmt: skip
    lean_load(ctx, server.port, warm, w.sources(5000))  # warm-up, its own sources
    for key, label, load in loads:
        cpu_client, cpu_server = time.process_time(), server.cpu()
        row = load(sources[len(modes) :: 2])
        # Where the cores went: the clients share the machine with the service.
        row["cpu_s"] = {
            "service": round(server.cpu() - cpu_server, 2),
            "clients": round(time.process_time() - cpu_client, 2),
            "available": round(cpu_count() * row["seconds"], 2),
        }
        modes[key] = {"label": label, **row}
        if row["requests"] > len(sources) // 2:
            case["notes"].append(f"{key}: sources were reused, some answers whole-response hits")
    http_row = modes["http"]
    fixed = w.receivers(N_A_RECEIVERS)
    pts = w.space_time(fixed)
    basis = ctx.raw.basis(pts)
    thread_load(lambda s: ctx.raw.field(s, pts), clients, warm, sources)
    modes["raw_ort"] = {
        "label": f"raw ORT, {clients} threads: branch + trunk + dot",
        **thread_load(lambda s: ctx.raw.field(s, pts), clients, seconds, sources),
    }
    modes["raw_ort_cached_basis"] = {
        "label": f"raw ORT, {clients} threads: branch + dot (basis held)",
        **thread_load(lambda s: basis @ ctx.raw.coefficients(s)[0], clients, seconds, sources),
    }
    case["http_vs_raw"] = ratio(http_row["rps"], modes["raw_ort"]["rps"])
    case["http_vs_raw_cached_basis"] = ratio(http_row["rps"], modes["raw_ort_cached_basis"]["rps"])
    case["notes"].append(
        f"the HTTP clients run in the benchmark process on the same {cpu_count()} cores as "
        "the service"
    )
    return case


def _speedups(solver: dict[str, Any], http_row: dict[str, Any] | None, raw_row: dict[str, Any]
              ) -> dict[str, Any]:  # fmt: skip
    http_p50 = http_row["p50_ms"] if http_row else None
    return {
        "surrogate_http_p50_ms": http_p50,
        "surrogate_raw_p50_ms": raw_row["p50_ms"],
        "speedup_vs_http": ratio(solver["p50_ms"], http_p50),
        "speedup_vs_raw": ratio(solver["p50_ms"], raw_row["p50_ms"]),
    }


def case_g(ctx: Context) -> Case:
    """The solvers producing the surrogates' fields, timed interleaved with the surrogates
    (HTTP, true misses of the same size, and raw onnxruntime), and the speed-up factors."""
    from benchmarks.solvers import fdtd_field, rel_l2

    w = ctx.work
    case: Case = {"title": "G: solvers vs surrogates (same sizes, interleaved)", "modes": {},
                  "notes": []}  # fmt: skip
    reps, warm = ctx.reps(5, 2), 1
    total = reps + warm
    server = ctx.server()
    with http.LeanClient(server.port) as c:
        for tag, n_rec, binary in (("B_100k", 1000, True), ("A", N_A_RECEIVERS, False)):
            source, receivers = w.sources(1)[0], w.receivers(n_rec)
            last: dict[str, Any] = {}

            def solve(
                _k: int, s: F64 = source, r: F64 = receivers, out: dict[str, Any] = last
            ) -> None:
                out["field"], out["info"] = fdtd_field(w, s, r)

            fmt = "binary" if binary else "json"
            modes = [
                Mode(f"fdtd_{tag}", f"FDTD, {n_rec * 100:,} points ({n_rec} receivers x 100 "
                     "times), grid + pulse + march to t_max", solve),
                ctx.http_mode(c, f"{tag}/http_{fmt}_miss", f"{n_rec * 100:,} points: HTTP "
                              f"{fmt}, miss", _fresh(ctx, total, n_rec), binary=binary,
                              expect="miss", warmup=warm, check=False, n_points=n_rec * 100),
                # A new source at receivers asked before: the trunk's basis comes from the
                # cache, so only the branch and one product run (the moving-source case).
                ctx.http_mode(c, f"{tag}/http_{fmt}_trunk_cached", f"{n_rec * 100:,} points: "
                              f"HTTP {fmt}, new source, trunk cached",
                              [(s, receivers) for s in w.sources(total)], binary=binary,
                              expect="partial", warmup=warm, check=False,
                              n_points=n_rec * 100),
                *_raw_modes(ctx, f"{tag}/", _fresh(ctx, total, n_rec), None),
            ]  # fmt: skip
            rows = ctx.run_modes(modes, reps, warm, block=1)
            solver = rows[f"fdtd_{tag}"]
            pred = ctx.raw.field(source, w.space_time(receivers)).reshape(last["field"].shape)
            solver.update(
                {k: v for k, v in last["info"].items() if k != "seconds"},
                **_speedups(solver, rows[f"{tag}/http_{fmt}_miss"], rows[f"{tag}/raw_ort"]),
                speedup_trunk_cached_vs_http=ratio(
                    solver["p50_ms"], rows[f"{tag}/http_{fmt}_trunk_cached"]["p50_ms"]
                ),
                surrogate_rel_l2_vs_solver=round(rel_l2(pred, last["field"]), 4),
            )
            case["modes"].update(rows)
        _g_panel(ctx, c, case, reps, warm)
        if ctx.elastic is None:
            case["notes"].append(
                f"FEM elasticity skipped: no {ELASTICITY_TASK} elasticity model in "
                f"{ctx.opts.model_dir}"
            )
            case["elasticity_skipped"] = case["notes"][-1]
            return case
        try:  # its own failure must not lose the rows above
            _g_elasticity(ctx, c, case, ctx.reps(10, 3), warm)
        except Exception as exc:
            traceback.print_exc()
            case["elasticity_error"] = f"{type(exc).__name__}: {exc}"
            case["notes"].append(f"FEM elasticity failed: {case['elasticity_error']}")
    return case


def _g_panel(ctx: Context, c: http.LeanClient, case: Case, reps: int, warm: int) -> None:
    """The panel method against the airfoil enf2enf on new sections (HTTP and raw)."""
    from benchmarks.solvers import panel_field, rel_l2

    total = reps + warm
    if ctx.geo is None:
        case["notes"].append("panel method skipped: no geometry model")
        return
    g = ctx.geo
    codes = g.codes()
    code = next(codes)
    query = g.query(code)
    new = [next(codes) for _ in range(2 * total)]
    new_q = [g.query(x) for x in new]
    raw = ctx.raw_geo
    panel: dict[str, Any] = {}

    def solve_panel(_k: int) -> None:
        panel["fields"], panel["info"] = panel_field(g, code, query)

    def surrogate(k: int) -> Any:
        p = g.polylines(new[k])
        return raw.decode(raw.encode(p), g.conditions, new_q[k], p)

    modes = [
        Mode("panel_E", f"panel method ({g.panels} panels), solve + {len(query):,} points",
             solve_panel),
        Mode("E/raw_new_geometry", "raw ORT, new geometry (as case E)", surrogate),
    ]  # fmt: skip
    url = g.predict_url
    if _geo_available(ctx, c) is None:
        bodies = [
            http.body(g.request({"naca": x}, q))
            for x, q in zip(new[total:], new_q[total:], strict=True)
        ]
        modes.append(_geo_http_mode(c, "E/http_new_geometry", "HTTP JSON, new geometry (as "
                                    "case E)", url, bodies, warm))  # fmt: skip
    rows = ctx.run_modes(modes, reps, warm, block=1)
    polys = g.polylines(code)
    pred_e = np.asarray(raw.decode(raw.encode(polys), g.conditions, query, polys))
    fields = panel["fields"]
    solver = rows["panel_E"]
    solver.update(
        {k: v for k, v in panel["info"].items() if k != "seconds"},
        code=code,
        **_speedups(solver, rows.get("E/http_new_geometry"), rows["E/raw_new_geometry"]),
        surrogate_rel_l2_vs_solver={
            name: round(rel_l2(pred_e[:, i], fields[:, i]), 4)
            for i, name in enumerate(("u", "v", "cp"))
        },
    )
    case["modes"].update(rows)


def _raw_elastic_field(raw: RawEnf2Enf, e: ElasticityWorkload, void: F64, query: F64) -> Any:
    """[von_mises, ux, uy] (N, 3) from the graphs in-process, composed as the manifest says:
    encoder points + encoder, then the decoder on the query points, their SDF and (where the
    decoder takes it) the surface's shape at their nearest surface points."""
    polys = e.polylines(void)
    local = surface_features(query, polys).astype(np.float32)  # (N, 4): sdf, shape
    feeds = {
        "latents": raw.encode(polys),
        "conditions": np.asarray([e.load], dtype=np.float32),
        "points": query.astype(np.float32),
        "sdf": local[:, 0],
        "shape": local[:, 1:],
    }
    names = {i.name for i in raw.decoder.get_inputs()}
    return raw.decoder.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def _g_elasticity(ctx: Context, c: http.LeanClient, case: Case, reps: int, warm: int) -> None:
    """The elasticity FEM (gmsh mesh + Newton + nodal von Mises and displacement) against the
    elasticity enf2enf asked for the same fields at the same points (the mesh's vertices),
    each call on a void never seen (not a training sample, a cache miss)."""
    from benchmarks.solvers import fem_field, rel_l2

    e = ctx.elastic
    assert e is not None
    case["elasticity_model"] = {"name": e.name, "path": str(e.version_dir.resolve())}
    total = reps + warm
    fem_voids, raw_voids, http_voids = e.voids(total), e.voids(total), e.voids(total)
    raw_q = [e.query(v) for v in raw_voids]  # meshed here, before any timing
    http_q = [e.query(v) for v in http_voids]
    raw = ctx.raw_elastic
    fem: dict[str, Any] = {}

    def solve(k: int) -> None:
        fem["void"] = fem_voids[k]
        fem["points"], fem["fields"], fem["info"] = fem_field(e, fem_voids[k])

    n_pts = round(float(np.mean([len(q) for q in raw_q + http_q])))
    h = f"h {e.mesh_params.h_min:g}-{e.mesh_params.h_max:g}"
    modes = [
        Mode("fem_elasticity", f"FEM elasticity ({h}): mesh + Newton + nodal fields", solve),
        Mode("elasticity/raw_new_geometry", f"raw ORT, new void, ~{n_pts:,} mesh vertices",
             lambda k: _raw_elastic_field(raw, e, raw_voids[k], raw_q[k])),
    ]  # fmt: skip
    probe = e.voids(1)[0]
    why = _model_available(c, e, e.request(probe, e.query(probe)[:16]))
    url = e.predict_url
    if why is None:
        bodies = [http.body(e.request(v, q)) for v, q in zip(http_voids, http_q, strict=True)]
        modes.append(_geo_http_mode(c, "elasticity/http_new_geometry", f"HTTP JSON, new void, "
                                    f"~{n_pts:,} mesh vertices", url, bodies, warm,
                                    expect="miss", server_time=True))  # fmt: skip
    else:
        case["notes"].append(f"elasticity HTTP skipped: {why}")
        case["elasticity_skipped_http"] = why
    rows = ctx.run_modes(modes, reps, warm, block=1)
    rows["elasticity/raw_new_geometry"]["points"] = round(float(np.mean([len(q) for q in raw_q])))
    # One void: the last one the FEM solved, its vertices the service answers.
    void, points, fields = fem["void"], fem["points"], fem["fields"]
    keep = e.kept(void, points)
    pred = np.asarray(_raw_elastic_field(raw, e, void, points[keep]), dtype=np.float64)
    solver = rows["fem_elasticity"]
    solver.update(
        {k: v for k, v in fem["info"].items() if k != "seconds"},
        points_compared=int(keep.sum()),
        **_speedups(solver, rows.get("elasticity/http_new_geometry"),
                    rows["elasticity/raw_new_geometry"]),
        surrogate_rel_l2_vs_solver={
            name: round(rel_l2(pred[:, i], fields[keep, i]), 4)
            for i, name in enumerate(ELASTIC_FIELDS)
        },
    )  # fmt: skip
    if "elasticity/http_new_geometry" in rows:
        row = rows["elasticity/http_new_geometry"]
        row["points"] = round(float(np.mean([len(q) for q in http_q])))
        got, _ = http.decoded(c.post(url, content=http.body(e.request(void, points[keep]))))
        answer = np.column_stack([np.asarray(got["fields"][n], np.float64) for n in ELASTIC_FIELDS])
        scale = np.maximum(np.abs(pred).max(axis=0), 1e-300)
        row["max_rel_err_vs_raw"] = float((np.abs(answer - pred).max(axis=0) / scale).max())
    left_out = len(points) - int(keep.sum())
    case["notes"].append(
        f"FEM elasticity: {e.name}, load {e.load:g} Pa, voids from the dataset's generator on a "
        "stream of their own (never a training sample); the surrogates are asked at the FEM "
        f"mesh's vertices ({left_out} of {len(points)} boundary vertices lie a rounding error "
        "inside the void, which the service refuses, and are left out of the comparison)"
    )
    case["modes"].update(rows)


def case_h(ctx: Context) -> Case:
    """Resident memory of the service with every shipped model loaded."""
    server = ctx.server()
    with http.client(server.base_url) as c:
        cache_bytes = http.metric_value(c, "fieldserve_cache_bytes")
    now = server.rss()
    return {
        "title": "H: service resident memory (every model in the folder loaded)",
        "models": [f"{m['name']}/{m['version']}" for m in ctx.served],
        "refused": [f"{r.get('name')}/{r.get('version')}" for r in ctx.health.get("refused", [])],
        "rss_after_warmup_mb": ctx.rss_warm.get("VmRSS"),
        "rss_after_cases_mb": now.get("VmRSS"),
        "peak_rss_mb": now.get("VmHWM"),
        "cache_bytes_after_cases_mb": round(cache_bytes / 1e6, 1) if cache_bytes else cache_bytes,
        "modes": {},
        "notes": [
            "after the cases the in-process cache holds the factors and answers they computed "
            "(FIELDSERVE_CACHE_MAX_BYTES bounds it, 512 MiB by default)"
        ],
    }


CASES = "ABCDEFGH"
