"""The training history of an exported version: found, checked and drawn.

The manifest does not carry the loss curves, only the commands that made the version. The run
folder is read from those commands (`export --run R`, `train --out R`, `pipeline --run R`, or
the default runs/<dataset name>), and a folder found there must be the same run: runs are
resumed and retrained in place, so its step count and best validation error are checked
against the manifest's before its curves are shown as this version's. Where the run is not
here (a fresh clone has no runs/), the page says so and shows what the version itself holds:
the loss figure the export copied from the run, the POD mode scan, or the final validation.
"""

from __future__ import annotations

import json
import math
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.reports.page import compact_png, png_bytes

Rows = list[dict[str, Any]]


@dataclass
class History:
    png: bytes | None  # the figure, or None when nothing can be drawn
    note: str  # where the curves come from, or why there are none
    final: dict[str, Any] | None = None  # the manifest's last validation, shown without curves


def _flag(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def run_candidates(manifest: dict[str, Any], version_dir: Path) -> list[Path]:
    """Where the version's run folder may be, most specific first (existing or not)."""
    commands = manifest.get("commands", {})
    train = commands.get("train") or []
    texts = [commands.get("export", ""), *([train] if isinstance(train, str) else train)]
    default = f"runs/{manifest.get('training', {}).get('dataset', {}).get('name', '')}"
    names: list[str] = []
    for text in texts:
        try:
            argv = shlex.split(str(text))
        except ValueError:
            continue
        if "training" not in argv:
            continue  # a wrapper's record (e.g. a GPU job spec), not a training command
        sub = argv[argv.index("training") + 1 :]
        if "export" in sub:
            names.append(_flag(sub, "--run") or "")
        elif "train" in sub:
            names.append(_flag(sub, "--out") or default)
        elif "pipeline" in sub:
            names.append(_flag(sub, "--run") or default)
    names.append(default)
    # Relative paths were relative to where the command ran: here, or the repository root
    # that holds models/<name>/<version>.
    roots = [Path.cwd(), version_dir.resolve().parents[2]]
    out: list[Path] = []
    for name in filter(None, names):
        for path in [Path(name)] if Path(name).is_absolute() else [r / name for r in roots]:
            if path not in out:
                out.append(path)
    return out


def shown(path: Path) -> str:
    """A path as the page shows it: relative to here when it is under here, so a committed
    page does not name the machine it was made on."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_rows(run_dir: Path) -> Rows | None:
    """The history a run wrote (history.json), else the one in its checkpoint."""
    if (run_dir / "history.json").exists():
        rows = json.loads((run_dir / "history.json").read_text())
        return list(rows) if isinstance(rows, list) else None
    if (run_dir / "checkpoint.pt").exists():
        import torch

        ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
        rows = ckpt.get("state", {}).get("history")
        return list(rows) if isinstance(rows, list) else None
    return None


def same_run(rows: Rows, training: dict[str, Any]) -> str | None:
    """None when the rows are the exported run's; otherwise how they differ."""
    steps = [int(r["step"]) for r in rows if "step" in r]
    if steps and "steps" in training and max(steps) != int(training["steps"]):
        return f"it reached step {max(steps)}, the version was exported at {training['steps']}"
    vals = [float(r["val_rel_l2"]) for r in rows if r.get("val_rel_l2") is not None]
    best = training.get("best_val_rel_l2")
    if vals and best is not None and not math.isclose(min(vals), float(best), rel_tol=1e-6):
        return f"its best validation error is {min(vals):.6g}, the version's {float(best):.6g}"
    return None


def _figure(plot: Callable[[Rows, Path], None], rows: Rows) -> bytes:
    """Draw with the training's own plotter (the same picture the run wrote), compacted."""
    with tempfile.TemporaryDirectory() as tmp:
        plot(rows, Path(tmp) / "loss.png")
        return compact_png((Path(tmp) / "loss.png").read_bytes())


def _plotter(family: str) -> Callable[[Rows, Path], None]:
    if family == "enf2enf":
        from training.enf2enf.train import plot_history as plot_enf2enf

        return plot_enf2enf
    from training.acoustics.plots import plot_history as plot_acoustic

    return plot_acoustic


def _pod_scan(scan: Rows, kept: int | None) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    modes = [r["modes"] for r in scan]
    ax.semilogy(modes, [r["val_rel_l2"] for r in scan], "o-", label="validation rel L2 (served)")
    if all("float_val_rel_l2" in r for r in scan):
        floats = [r["float_val_rel_l2"] for r in scan]
        ax.semilogy(modes, floats, "x--", label="the same with an unquantized table")
    if kept is not None:
        ax.axvline(kept, color="0.5", lw=0.8, ls=":", label=f"kept: {kept} modes")
    ax.set_xlabel("POD modes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return png_bytes(fig)


def history_of(manifest: dict[str, Any], version_dir: Path) -> History:
    training = manifest.get("training", {})
    if training.get("kind") == "pod":
        scan = training.get("report", {}).get("val_scan") or []
        if scan:
            kept = training.get("model", {}).get("n_modes")
            return History(
                _pod_scan(scan, int(kept) if kept is not None else None),
                "A POD-DeepONet is fitted, not trained: it has no loss curve. Shown is the "
                "validation error against the number of modes, as the fit scanned it "
                "(recorded in the manifest, training.report.val_scan); "
                f"{training.get('model', {}).get('n_modes', '?')} modes were kept.",
            )
    differing: list[str] = []
    candidates = run_candidates(manifest, version_dir)
    for run_dir in candidates:
        if not run_dir.is_dir():
            continue
        rows = read_rows(run_dir)
        if not rows:
            continue
        why = same_run(rows, training)
        if why is not None:
            differing.append(f"{shown(run_dir)} holds another run ({why})")
            continue
        source = "history.json" if (run_dir / "history.json").exists() else "checkpoint.pt"
        return History(
            _figure(_plotter(manifest["family"]), rows),
            f"From the training run: {shown(run_dir / source)} ({len(rows)} validation points).",
        )
    looked = ", ".join(dict.fromkeys(shown(p) for p in candidates)) or "(no run recorded)"
    missing = f"The run folder is not present locally (looked in {looked})"
    if differing:
        missing += "; " + "; ".join(differing)
    copied = version_dir / "loss.png"
    if copied.exists():
        return History(
            compact_png(copied.read_bytes()),
            f"{missing}. Shown is loss.png of the version folder: the figure the export "
            "copied from the run when it was made.",
        )
    final = training.get("final_val") or None
    return History(
        None,
        f"{missing}, and the version holds no loss figure: no curves to show. The manifest "
        "records the last validation of the run (below).",
        final=final if isinstance(final, dict) else None,
    )
