"""The machine a run was measured on: cores, CPU model, load, memory, versions."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.server import ROOT

PACKAGES = (
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
    "torch",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "orjson",
    "redis",
    "hiredis",
    "uvloop",
    "httptools",
    "pydantic",
)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def cpu_model() -> str:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _git() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit or None, "dirty": bool(dirty)}


def _redis_version() -> str | None:
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out.strip() or None


def describe() -> dict[str, Any]:
    import onnxruntime as ort

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["redis-server"] = _redis_version()
    mem_kb = next(
        (
            int(line.split()[1])
            for line in (_read("/proc/meminfo") or "").splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_kb / 1e6, 1),
        "platform": platform.platform(),
        "vendor": _read("/sys/class/dmi/id/sys_vendor"),
        "product": _read("/sys/class/dmi/id/product_name"),
        "load_average_start": load_average(),
        "ort_available_providers": list(ort.get_available_providers()),
        "versions": versions,
        "git": _git(),
    }
