"""Model versions are folders named by positive integers; the highest is the latest."""

from __future__ import annotations

from pathlib import Path


def next_version(model_root: Path) -> str:
    existing = [int(p.name) for p in model_root.glob("*") if p.is_dir() and p.name.isdigit()]
    return str(max(existing, default=0) + 1)
