"""`python -m training pipeline`: generate, train, evaluate and export in one command.

The command a user with a GPU runs for their own scene, and the one prepared for a lent GPU
machine: it makes the data (resuming whatever is already there), trains until the step
budget or the time budget runs out, then evaluates the exported graphs against the solver
and writes a new version into the model repository. A time budget is shared by the stages:
training gets what generation left, minus a reserve for evaluation and export, so the
command ends with a model even when the budget is tight.

Under torchrun every rank generates its share of the data and trains data-parallel; rank 0
alone exports.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.common.config import ConfigError, from_dict
from training.common.launch import is_main_process
from training.promotion import state_of


@dataclass
class Budget:
    """Minutes for the whole command; `None` means no limit."""

    minutes: float | None
    reserve_minutes: float  # kept back from training for evaluation and export
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float | None:
        if self.minutes is None:
            return None
        return self.minutes - (time.monotonic() - self.start) / 60.0

    def for_training(self) -> float | None:
        left = self.left()
        if left is None:
            return None
        # At least a few seconds of training, so the export has a checkpoint to read.
        return max(0.05, left - self.reserve_minutes)


def _stage(name: str, seconds: float, **extra: Any) -> dict[str, Any]:
    line = {"stage": name, "seconds": round(seconds, 1), **extra}
    if is_main_process():
        print(json.dumps(line), flush=True)
    return line


def run_pipeline(
    cfg: dict[str, Any],
    *,
    dataset_module: Any,
    trainer: Any,
    exporter: Any,
    data_dir: Path,
    run_dir: Path,
    models_root: Path,
    name: str | None,
    version: str | None,
    device: str,
    budget: Budget,
    fresh: bool,
    commands: dict[str, str],
) -> dict[str, Any]:
    """Run the stages; returns the summary that is also printed as the last JSON line."""
    stages: list[dict[str, Any]] = []
    data_cfg = from_dict(dataset_module.DatasetConfig, cfg["dataset"], "dataset")

    t0 = time.monotonic()
    gen_device = _solver_device(device)
    for split in (*dataset_module.SPLITS, *getattr(dataset_module, "EVAL_SPLITS", ())):
        dataset_module.generate_split(
            data_cfg, data_dir, split, device=gen_device, command=commands["generate"]
        )
    stages.append(_stage("generate", time.monotonic() - t0, data=str(data_dir)))

    t0 = time.monotonic()
    train_cfg = from_dict(trainer.TrainConfig, cfg.get("train", {}), "train")
    minutes = budget.for_training()
    state = trainer.train(
        run_dir=run_dir,
        data_dir=data_dir,
        model_cfg=cfg.get("model", {}),
        train_cfg=train_cfg,
        device=device,
        max_minutes=minutes,
        fresh=fresh,
        command=commands["train"],
    )
    stages.append(_stage("train", time.monotonic() - t0, step=state.step, max_minutes=minutes))
    summary: dict[str, Any] = {"stages": stages}
    if not is_main_process():
        return summary

    t0 = time.monotonic()
    version_dir = exporter.export(
        run_dir,
        models_root,
        name=name,
        version=version,
        data_dir=data_dir,
        command=commands["export"],
    )
    manifest = json.loads((Path(version_dir) / "manifest.json").read_text())
    stages.append(_stage("evaluate+export", time.monotonic() - t0, version=str(version_dir)))
    summary.update(
        version_dir=str(version_dir),
        promotion=state_of(Path(version_dir)),
        metrics=manifest.get("metrics", {}),
        total_seconds=round(sum(s["seconds"] for s in stages), 1),
        budget_minutes=budget.minutes,
    )
    print(json.dumps(summary), flush=True)
    return summary


def _solver_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_budget(minutes: float | None, reserve: float) -> Budget:
    if minutes is not None and minutes <= 0:
        raise ConfigError(f"--budget-minutes must be positive, got {minutes}")
    if reserve < 0:
        raise ConfigError(f"--reserve-minutes must be >= 0, got {reserve}")
    return Budget(minutes, reserve)
