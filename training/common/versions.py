"""Model versions are folders named by positive integers; the highest promoted one is the
latest (training/promotion.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from training.promotion import after_first_export, before_export


def next_version(model_root: Path) -> str:
    existing = [int(p.name) for p in model_root.glob("*") if p.is_dir() and p.name.isdigit()]
    return str(max(existing, default=0) + 1)


@contextmanager
def staged_version(
    models_root: str | Path, name: str, version: str | None = None
) -> Iterator[tuple[Path, str]]:
    """Yield (hidden folder, version) to assemble a new version in.

    The folder is renamed to `<models_root>/<name>/<version>` only when the block succeeds, so a
    reader of the repository never sees half a version; versions are immutable. It arrives as a
    candidate, unless it is the model's first version, which is promoted.
    """
    root = Path(models_root) / name
    version = version or next_version(root)
    final = root / version
    if final.exists():
        raise FileExistsError(
            f"{final} exists: model versions are immutable, pick another --version"
        )
    tmp = root / f".{version}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp, version
        # The record is settled before the version appears: a reader that found a later
        # version in a folder without a record would count it as promoted.
        first = before_export(root, version)
        tmp.rename(final)
        if first:
            after_first_export(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
