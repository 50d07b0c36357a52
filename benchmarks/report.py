"""The printed table and the JSON document of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.context import dumps


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _note(row: dict[str, Any]) -> str:
    bits = []
    if row.get("server_mean_ms") is not None:
        bits.append(f"in service {row['server_mean_ms']:.3f} ms")
    if row.get("cache"):
        states = ",".join(f"{k}:{v}" for k, v in row["cache"].items())
        ok = "" if row.get("cache_ok", True) else " UNEXPECTED"
        bits.append(f"cache {states}{ok}")
    if "max_rel_err_vs_raw" in row:
        bits.append(f"err {row['max_rel_err_vs_raw']:.1e}")
    if "response_bytes" in row:
        bits.append(f"{row['response_bytes'] / 1e3:,.1f} kB")
    if "rps" in row:
        lat = row.get("latency", {})
        bits.append(f"{row['rps']:,.1f} req/s, {row['requests']} req, {row['errors']} errors")
        if isinstance(row.get("cpu_s"), dict):
            cpu = row["cpu_s"]
            bits.append(f"CPU s: service {cpu['service']}, clients {cpu['clients']}, of "
                        f"{cpu['available']}")  # fmt: skip
        if lat.get("p50_ms") is not None:
            bits.append(f"latency p50 {lat['p50_ms']:.2f} p99 {lat['p99_ms']:.2f} ms")
    if "speedup_vs_http" in row or "speedup_vs_raw" in row:
        bits.append(
            f"surrogate HTTP {_fmt(row.get('surrogate_http_p50_ms'))} ms "
            f"(x{_fmt(row.get('speedup_vs_http'), 1)}), raw "
            f"{_fmt(row.get('surrogate_raw_p50_ms'))} ms (x{_fmt(row.get('speedup_vs_raw'), 1)}),"
            f" rel L2 {row.get('surrogate_rel_l2_vs_solver')}"
        )
    return "; ".join(bits)


def table(doc: dict[str, Any]) -> str:
    lines = []
    m = doc["machine"]
    lines.append(
        f"machine: {m['cpu_model']}, {m['cores_usable']} cores, load {m['load_average_start']}"
        f" -> {m.get('load_average_end')}, provider {doc.get('service', {}).get('provider')}"
    )
    head = f"{'case':<4} {'mode':<58} {'n':>5} {'p50 ms':>10} {'p99 ms':>10}  note"
    lines += [head, "-" * len(head)]
    for name, case in doc["cases"].items():
        if "error" in case:
            lines.append(f"{name:<4} ERROR: {case['error']}")
            continue
        if case.get("skipped"):
            lines.append(f"{name:<4} skipped: {case['skipped']}")
        for row in case.get("modes", {}).values():
            lines.append(
                f"{name:<4} {row.get('label', '')[:58]:<58} {_fmt(row.get('n')):>5} "
                f"{_fmt(row.get('p50_ms')):>10} {_fmt(row.get('p99_ms')):>10}  {_note(row)}"
            )
        if name == "H":
            lines.append(
                f"{name:<4} RSS after warm-up {case['rss_after_warmup_mb']} MB, after the cases "
                f"{case['rss_after_cases_mb']} MB (peak {case['peak_rss_mb']} MB, cache "
                f"{case['cache_bytes_after_cases_mb']} MB); models {', '.join(case['models'])}"
            )
        for note in case.get("notes", []):
            lines.append(f"{'':<4} note: {note}")
    lines.append("")
    width = max([18, *(len(t["id"]) for t in doc["targets"])])
    head = f"{'target':<{width}} {'status':<8} {'value':>10} {'limit':>10}  what"
    lines += [head, "-" * len(head)]
    for t in doc["targets"]:
        lines.append(
            f"{t['id']:<{width}} {t['status']:<8} {_fmt(t['value']):>10} {_fmt(t['limit']):>10}  "
            f"{t['target']} [{t['unit']}]" + (f" ({t['detail']})" if t["detail"] else "")
        )
    for note in doc.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def write(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")
    tmp.write_bytes(dumps(doc))
    tmp.replace(path)
