"""Killing the training CLI: a run killed mid-way and resumed ends with the weights of a run
never killed, and an export killed at any moment leaves the model repository holding only
complete versions.

Everything goes through `python -m training` in child processes, killed with SIGKILL (no
handler runs, as when a machine is preempted). Weights are compared exactly: resuming replays
the same batches from the checkpointed generator, on one torch thread in both runs.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.server import ROOT
from benchmarks.tally import CORRECT, Tally, Verdict
from training.tiny import tiny_acoustic_config

_PROGRESS = re.compile(rb"(\d+)/(\d+) \[")


def tiny_config(steps: int) -> dict[str, Any]:
    """The tests' tiny 2-D acoustic run (seconds to generate, train and export), checkpointed
    often so that a kill lands between checkpoints."""
    config = tiny_acoustic_config(2, "chaos-acoustics-2d", steps)
    config["train"] |= {"val_every": max(1, steps // 8), "checkpoint_every": max(1, steps // 10)}
    return config


def _training(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "training", "--threads", "1", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _finish(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        return -9


def _tail(log: Path) -> str:
    return log.read_bytes()[-600:].decode(errors="replace") if log.exists() else ""


@dataclass
class TinyRun:
    """A config, its generated data and the folders the scenarios write."""

    root: Path
    steps: int

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "training.log"

    def prepare(self) -> None:
        import yaml  # the train extra, as for everything this module drives

        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(tiny_config(self.steps)))
        if not (self.data / "DONE").exists():
            args = ["generate", "acoustics", "--config", str(self.config), "--out", str(self.data)]
            code = _finish(_training(args, self.log), 600)
            if code != 0:
                raise RuntimeError(f"generating the tiny data failed ({code}): {_tail(self.log)}")
            (self.data / "DONE").write_text("")

    def train_args(self, run: Path) -> list[str]:
        return [
            "train",
            "--config",
            str(self.config),
            "--data",
            str(self.data),
            "--out",
            str(run),
            "--device",
            "cpu",
        ]


def _step(log: Path, offset: int) -> int:
    """The last training step the progress bar printed after byte `offset` of the log."""
    found = _PROGRESS.findall(log.read_bytes()[offset:])
    return int(found[-1][0]) if found else 0


def _weights(run: Path) -> dict[str, Any]:
    import torch  # the train extra: only this scenario reads checkpoints

    ckpt: dict[str, Any] = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    return ckpt


def _same_weights(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Names of the tensors (model, best model) that differ; empty when identical."""
    import torch

    differ = []
    for part in ("model", "best_model"):
        for name, tensor in a[part].items():
            if not torch.equal(tensor, b[part][name]):
                differ.append(f"{part}.{name}")
    if a["state"]["step"] != b["state"]["step"]:
        differ.append(f"step {a['state']['step']} != {b['state']['step']}")
    return differ


def killed_training(tiny: TinyRun, kills: int, tally: Tally, rng: random.Random) -> None:
    """One run straight through; another killed `kills` times at random steps, resumed each
    time; their final weights compared exactly."""
    straight, resumed = tiny.root / "run-straight", tiny.root / "run-killed"
    code = _finish(_training(tiny.train_args(straight), tiny.log), 900)
    if code != 0:
        tally.add("train straight", Verdict("lost", f"exit {code}: {_tail(tiny.log)}"))
        return
    tally.add("train straight", CORRECT)
    killed_at: list[int] = []
    for i in range(kills):
        start = _step_before(resumed)
        if start >= tiny.steps:
            break
        # The i-th kill lands in the i-th slice of the run, so kills spread from early to late
        # (each resumed run starts again from its last checkpoint, before the kill).
        lo = max(start + 1, i * tiny.steps // kills + 1)
        hi = max(lo, min(tiny.steps - 1, (i + 1) * tiny.steps // kills))
        target = rng.randint(lo, hi)
        offset = tiny.log.stat().st_size
        process = _training(tiny.train_args(resumed), tiny.log)
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline:
            if _step(tiny.log, offset) >= target:
                break
            time.sleep(0.005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            killed_at.append(_step(tiny.log, offset))
        # A kill may land mid-write: whatever is on disk must be a whole checkpoint (or none).
        if (resumed / "checkpoint.pt").exists():
            try:
                _weights(resumed)
            except Exception as exc:  # any failure to read it back is the finding
                tally.add("train killed", Verdict("wrong", f"unreadable checkpoint: {exc!r}"))
                continue
        tally.add("train killed", CORRECT)
    code = _finish(_training(tiny.train_args(resumed), tiny.log), 900)
    if code != 0:
        tally.add("train resumed", Verdict("lost", f"exit {code}: {_tail(tiny.log)}"))
        return
    differ = _same_weights(_weights(straight), _weights(resumed))
    if differ:
        tally.add("train resumed", Verdict("wrong", f"weights differ: {differ[:5]}"))
    else:
        tally.add("train resumed", CORRECT)
    tally.note(f"training: {tiny.steps} steps, killed at steps {killed_at}, resumed to the end")


def _step_before(run: Path) -> int:
    if not (run / "checkpoint.pt").exists():
        return 0
    return int(_weights(run)["state"]["step"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def half_written(models: Path) -> list[str]:
    """Every visible version folder that is not a complete export: a manifest with metrics,
    and every file it names present with its sha256. Hidden folders are exports in progress,
    which the service skips."""
    problems = []
    for folder in sorted(models.glob("*/*")):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            doc = json.loads((folder / "manifest.json").read_text())
            if not doc.get("metrics"):
                problems.append(f"{folder.name}: manifest without metrics")
            for graph in doc["graphs"].values():
                files = {graph["file"]: graph["sha256"], **graph.get("data", {})}
                for name, sha in files.items():
                    if _sha256(folder / name) != sha:
                        problems.append(f"{folder.name}/{name}: sha256 mismatch")
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{folder.name}: {type(exc).__name__}: {exc}")
    return problems


def _versions(models: Path) -> set[Path]:
    return {p for p in models.glob("*/*") if p.is_dir() and not p.name.startswith(".")}


def killed_exports(
    tiny: TinyRun, run: Path, models: Path, kills: int, tally: Tally, rng: random.Random
) -> None:
    """One export straight through, timed from its staging folder appearing to its version
    appearing; then `kills` exports each killed at a random moment of that window (SIGKILL,
    mid-write most of the time); after each, the repository must hold only whole versions."""
    args = ["export", "--run", str(run), "--out", str(models), "--data", str(tiny.data)]
    t0 = time.monotonic()
    before = _versions(models)
    process = _training(args, tiny.log)
    staged_at = _wait_staged(process, models)
    published_at = None
    while process.poll() is None and published_at is None:
        if _versions(models) - before:
            published_at = time.monotonic() - t0
        time.sleep(0.005)
    code = _finish(process, 900)
    full_s = time.monotonic() - t0
    writing_s = max(0.05, (published_at or full_s) - (staged_at or 0.0))
    problems = half_written(models)
    if code != 0:
        tally.add("export whole", Verdict("lost", f"exit {code}: {_tail(tiny.log)}"))
    elif problems:
        tally.add("export whole", Verdict("wrong", f"half-written: {problems}"))
    else:
        tally.add("export whole", CORRECT)
    moments = []
    for _ in range(kills):
        before = _versions(models)
        process = _training(args, tiny.log)
        if _wait_staged(process, models) is None:
            tally.add("export killed", Verdict("lost", f"ended early: {_tail(tiny.log)}"))
            continue
        wait = rng.uniform(0.0, writing_s)
        time.sleep(wait)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        published = bool(_versions(models) - before)
        moments.append(f"{wait:.2f}s{' (after it published)' if published else ''}")
        problems = half_written(models)
        tally.add(
            "export killed",
            Verdict("wrong", f"half-written after a kill: {problems}") if problems else CORRECT,
        )
    leftovers = sorted(p.name for p in models.glob("*/.*"))
    tally.note(
        f"export: {full_s:.1f}s whole, {writing_s:.2f}s from staging to publishing; killed at "
        f"{moments} into that window; left hidden (skipped by the service, cleared by the next "
        f"export of that version): {leftovers}"
    )


def _wait_staged(process: subprocess.Popen[bytes], models: Path) -> float | None:
    """Seconds until the export's hidden staging folder appears (None: it ended first). A
    folder left by a killed export is recreated by the next one, so only a folder made since
    this process started counts."""
    t0, since = time.monotonic(), time.time_ns()
    while process.poll() is None:
        for folder in models.glob("*/.*partial"):
            try:
                if folder.stat().st_mtime_ns >= since:
                    return time.monotonic() - t0
            except FileNotFoundError:
                continue
        time.sleep(0.005)
    return None
