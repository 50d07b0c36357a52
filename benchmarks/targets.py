"""The issue's targets, each a number from this run against its threshold: pass, fail, or
skipped (with the reason) when a case did not run or could not measure it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Results = dict[str, dict[str, Any]]


def _get(results: Results, case: str, *path: str) -> Any:
    node: Any = results.get(case)
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _target(
    tid: str,
    case: str,
    text: str,
    value: float | None,
    limit: float | None,
    ok: Callable[[float, float], bool],
    unit: str,
    detail: str = "",
    why_missing: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": tid,
        "case": case,
        "target": text,
        "value": None if value is None else round(value, 3),
        "limit": None if limit is None else round(limit, 3),
        "unit": unit,
        "detail": detail,
    }
    if value is None or limit is None:
        out["status"] = "skipped"
        out["detail"] = why_missing or detail or "not measured in this run"
    else:
        out["status"] = "pass" if ok(value, limit) else "fail"
    return out


def _le(v: float, lim: float) -> bool:
    return v <= lim


def _ge(v: float, lim: float) -> bool:
    return v >= lim


def _why(results: Results, case: str) -> str:
    node = results.get(case)
    if node is None:
        return f"case {case} not run"
    if "error" in node:
        return f"case {case} failed: {node['error']}"
    return str(node.get("skipped_http") or node.get("skipped") or f"case {case} incomplete")


def _why_elasticity(results: Results) -> str:
    for key in ("elasticity_error", "elasticity_skipped_http", "elasticity_skipped"):
        why = _get(results, "G", key)
        if why:
            return f"case G: {why}"
    return _why(results, "G")


def evaluate(results: Results) -> list[dict[str, Any]]:
    t: list[dict[str, Any]] = []
    a_http = _get(results, "A", "modes", "http_json_miss", "p50_ms")
    a_raw = _get(results, "A", "modes", "raw_ort", "p50_ms")
    t.append(
        _target("A.p50", "A", "HTTP p50 <= 3 ms (JSON, true miss)", a_http, 3.0, _le, "ms",
                why_missing=_why(results, "A"))
    )  # fmt: skip
    t.append(
        _target(
            "A.vs_raw", "A", "HTTP p50 <= raw onnxruntime p50 + 1.5 ms", a_http,
            None if a_raw is None else a_raw + 1.5, _le, "ms",
            detail=f"raw ORT p50 {a_raw} ms; with the service's session options "
                   f"{_get(results, 'A', 'modes', 'raw_ort_service_options', 'p50_ms')} ms",
            why_missing=_why(results, "A"),
        )
    )  # fmt: skip
    b_bin = _get(results, "B", "modes", "100000/http_binary_miss", "p50_ms")
    b_raw = _get(results, "B", "modes", "100000/raw_ort", "p50_ms")
    t.append(
        _target(
            "B.binary_vs_raw", "B", "binary HTTP p50 <= 1.25 x raw onnxruntime p50 at 100,000 "
            "points", None if b_bin is None or not b_raw else b_bin / b_raw, 1.25, _le, "x",
            detail=f"binary {b_bin} ms, raw {b_raw} ms", why_missing=_why(results, "B"),
        )
    )  # fmt: skip
    c_miss = _get(results, "C", "modes", "http_miss", "p50_ms")
    c_part = _get(results, "C", "modes", "http_partial", "p50_ms")
    t.append(
        _target(
            "C.partial_speedup", "C", "partial (cached trunk) >= 10 x faster than a full miss at "
            "10,000 points", None if c_miss is None or not c_part else c_miss / c_part, 10.0,
            _ge, "x", detail=f"miss {c_miss} ms, partial {c_part} ms",
            why_missing=_why(results, "C"),
        )
    )  # fmt: skip
    c_miss = _get(results, "C", "modes", "http_redis_miss", "p50_ms")
    c_part = _get(results, "C", "modes", "http_redis_partial", "p50_ms")
    t.append(
        _target(
            "C.partial_speedup_redis", "C", "with Redis, partial (cached trunk) >= 10 x faster "
            "than a full miss at 10,000 points", None if c_miss is None or not c_part
            else c_miss / c_part, 10.0, _ge, "x", detail=f"miss {c_miss} ms, partial {c_part} ms",
            why_missing=_why(results, "C"),
        )
    )  # fmt: skip
    d_hit = _get(results, "D", "modes", "http_redis_hit", "p50_ms")
    t.append(
        _target("D.p50", "D", "whole-response hit from Redis p50 <= 1.5 ms", d_hit, 1.5, _le,
                "ms", why_missing=_why(results, "D"))
    )  # fmt: skip
    e_new = _get(results, "E", "modes", "http_new_geometry", "p50_ms")
    e_cached = _get(results, "E", "modes", "http_cached_geometry", "p50_ms")
    t.append(
        _target(
            "E.cached_speedup", "E", "cached geometry >= 5 x faster than a new geometry (HTTP)",
            None if e_new is None or not e_cached else e_new / e_cached, 5.0, _ge, "x",
            detail=f"new {e_new} ms, cached {e_cached} ms; raw ORT ratio "
            f"{_get(results, 'E', 'speedup_raw')}", why_missing=_why(results, "E"),
        )
    )  # fmt: skip
    f_http = _get(results, "F", "modes", "http", "rps")
    f_raw = _get(results, "F", "modes", "raw_ort", "rps")
    f_err = _get(results, "F", "modes", "http", "errors")
    f_ratio = None if f_http is None or not f_raw else f_http / f_raw
    t.append(
        _target(
            "F.throughput", "F", ">= 0.8 x raw in-process throughput (16 threads, case A)",
            f_ratio, 0.8, _ge, "x",
            detail=f"HTTP {f_http} req/s, raw {f_raw} req/s; vs raw with the basis held: "
            f"{_get(results, 'F', 'http_vs_raw_cached_basis')}",
            why_missing=_why(results, "F"),
        )
    )  # fmt: skip
    t.append(
        _target("F.errors", "F", "zero errors under load", f_err, 0, _le, "errors",
                why_missing=_why(results, "F"))
    )  # fmt: skip
    g_ir = _get(results, "G", "modes", "fdtd_A", "speedup_vs_http")
    g_cached = _get(results, "G", "modes", "fdtd_B_100k", "speedup_trunk_cached_vs_http")
    g_miss = _get(results, "G", "modes", "fdtd_B_100k", "speedup_vs_http")
    g_panel = _get(results, "G", "modes", "panel_E", "speedup_vs_http")
    t.append(
        _target(
            "G.impulse_response", "G", ">= 1,000 x speed-up over the FDTD for an impulse-"
            "response query (1 source, 5 receivers x 100 times, HTTP)", g_ir, 1000.0, _ge, "x",
            why_missing=_why(results, "G"),
        )
    )  # fmt: skip
    t.append(
        _target(
            "G.field_trunk_cached", "G", ">= 100 x speed-up over the FDTD for a new source's "
            "100,000-point field, trunk cached (binary HTTP)", g_cached, 100.0, _ge, "x",
            detail=f"full miss: {g_miss} x (vs raw ORT "
            f"{_get(results, 'G', 'modes', 'fdtd_B_100k', 'speedup_vs_raw')} x); panel method "
            f"vs case E over HTTP: {g_panel} x",
            why_missing=_why(results, "G"),
        )
    )  # fmt: skip
    fem = _get(results, "G", "modes", "fem_elasticity") or {}
    t.append(
        _target(
            "G.elasticity_speedup_http", "G", ">= 20 x speed-up over the FEM for a new void's "
            "elasticity field (von Mises, ux, uy at the mesh's vertices, HTTP JSON)",
            fem.get("speedup_vs_http"), 20.0, _ge, "x",
            detail=f"FEM p50 {fem.get('p50_ms')} ms ({fem.get('vertices')} vertices), HTTP "
            f"{fem.get('surrogate_http_p50_ms')} ms; vs raw ORT {fem.get('speedup_vs_raw')} x; "
            f"rel L2 {fem.get('surrogate_rel_l2_vs_solver')}",
            why_missing=_why_elasticity(results),
        )
    )  # fmt: skip
    h_rss = _get(results, "H", "rss_after_warmup_mb")
    t.append(
        _target(
            "H.rss", "H", "resident memory <= 500 MB with all models loaded (after warm-up)",
            h_rss, 500.0, _le, "MB",
            detail=f"after the cases {_get(results, 'H', 'rss_after_cases_mb')} MB",
            why_missing=_why(results, "H"),
        )
    )  # fmt: skip
    return t
