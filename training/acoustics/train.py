"""Training loop for the acoustic DeepONet: resumable, validated, plotted.

A step draws `batch_sources` sources and `batch_points` space-time points shared by all of
them (the cartesian DeepONet batch): the trunk runs once per point, the branch once per
source, and every (source, point) pair is a target. That is the paper's 64 sources x 1,000
points at a fraction of the cost of evaluating the trunk per pair.

Under `torchrun --nproc_per_node N` the model is wrapped in DistributedDataParallel (gloo on
CPU, NCCL on GPU). Every rank draws the same global batch from the same generator and keeps
its share of the batch's sources (all ranks see the batch's points); the loss is the mean over
the global batch, so N processes follow the single-process trajectory and a run may resume
with another N. Only rank 0 validates and writes the checkpoint, history and plots.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training.acoustics.checkpoint import CHECKPOINT, TorchDeepONet, load_model
from training.acoustics.dataset import AcousticSplit, load_split
from training.acoustics.metrics import predict, rel_l2_per_source
from training.acoustics.model import DeepONet, DeepONetConfig
from training.common.config import from_dict, to_dict
from training.common.distributed import Distributed, Launch, distributed, resolve_device
from training.common.files import atomic_path
from training.common.launch import is_main_process

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 6000
    batch_sources: int = 64
    batch_points: int = 2000
    lr: float = 1e-3
    lr_decay: float = 0.9  # lr * lr_decay ** (step / lr_decay_steps), as the paper
    lr_decay_steps: int = 2000
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # global-norm clipping
    val_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0


@dataclass
class RunState:
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    best_val: float = math.inf
    seconds: float = 0.0


def pick_device(name: str) -> torch.device:
    return resolve_device(name, Launch())


def validate(
    model: DeepONet, split: AcousticSplit, device: torch.device
) -> tuple[float, np.ndarray]:
    model.eval()
    pred = predict(TorchDeepONet(model=model, device=device), split)
    model.train()
    return float(rel_l2_per_source(pred, split.pressure).mean()), pred


def model_config_for(base: dict[str, Any], split: AcousticSplit) -> DeepONetConfig:
    data_cfg = split.config
    physics = data_cfg["physics"]
    # The room as the generator built it (a Room or a scene spec; both carry `size`).
    room_size = tuple(float(v) for v in json.loads(split.attrs["room"])["size"])
    p_scale = float(np.sqrt(np.mean(split.pressure.astype(np.float64) ** 2)))
    merged = {
        **base,
        "dim": len(room_size),
        "room_size": room_size,
        "c": physics["c"],
        "fmax": physics["fmax"],
        "sigma": float(split.attrs["sigma"]),
        "p_scale": p_scale,
    }
    return from_dict(DeepONetConfig, merged, "model")


def save_checkpoint(
    path: Path,
    model: DeepONet,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    state: RunState,
    train_cfg: TrainConfig,
    data_cfg: dict[str, Any],
    data_command: str,
    best: dict[str, torch.Tensor] | None = None,
) -> None:
    payload = {
        "family": "deeponet",
        "model_config": to_dict(model.cfg),
        "train_config": to_dict(train_cfg),
        "dataset_config": data_cfg,
        "data_command": data_command,
        "model": model.state_dict(),
        # The weights of the best validation so far: what a run stopped by its time budget
        # exports, whatever its last steps did.
        "best_model": best if best is not None else model.state_dict(),
        "optimizer": opt.state_dict(),
        "state": to_dict(state),
        "rng": {"batches": gen.get_state()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def train(
    run_dir: str | Path,
    data_dir: str | Path,
    model_cfg: dict[str, Any],
    train_cfg: TrainConfig,
    device: str = "auto",
    max_minutes: float | None = None,
    fresh: bool = False,
    progress: bool = True,
    command: str = "",
) -> RunState:
    """Train (or resume) a DeepONet; under torchrun, one data-parallel rank of the run.

    `model_cfg` with `kind: pod` fits a POD-DeepONet instead (training/acoustics/pod.py): linear
    algebra on the training fields, minutes on a CPU, no steps to resume."""
    if model_cfg.get("kind") == "pod":
        return _fit_pod(Path(run_dir), data_dir, model_cfg, max_minutes, progress, command)
    with distributed(device) as ctx:
        return _train(
            ctx,
            Path(run_dir),
            data_dir,
            model_cfg,
            train_cfg,
            max_minutes,
            fresh,
            progress,
            command,
        )


def _fit_pod(
    run_dir: Path,
    data_dir: str | Path,
    model_cfg: dict[str, Any],
    max_minutes: float | None,
    progress: bool,
    command: str,
) -> RunState:
    from training.acoustics.pod import PodConfig, fit_pod, save_pod

    if not is_main_process():
        return RunState()  # nothing to share: rank 0 fits, the others have already generated
    cfg = from_dict(PodConfig, {k: v for k, v in model_cfg.items() if k != "kind"}, "model")
    if max_minutes is not None:
        cfg.max_seconds = min(cfg.max_seconds, 60.0 * max_minutes)
    train_split, val_split = load_split(data_dir, "train"), load_split(data_dir, "val")
    start = time.monotonic()
    fit = fit_pod(train_split, val_split, cfg, progress=progress)
    scan = fit.report.get("val_scan") or [{}]
    chosen = next((r for r in scan if r.get("modes") == fit.config.n_modes), scan[-1])
    state = RunState(
        step=0,
        history=scan,
        commands=[command] if command else [],
        best_val=float(chosen.get("val_rel_l2", math.nan)),
        seconds=time.monotonic() - start,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_pod(
        run_dir / CHECKPOINT,
        fit,
        {
            "dataset_config": train_split.config,
            "data_command": str(train_split.attrs.get("command", "")),
            "state": to_dict(state),
        },
    )
    log.info("POD-DeepONet: %d modes, val rel L2 %.4f", fit.config.n_modes, state.best_val)
    return state


def _train(
    ctx: Distributed,
    run_dir: Path,
    data_dir: str | Path,
    model_cfg: dict[str, Any],
    train_cfg: TrainConfig,
    max_minutes: float | None,
    fresh: bool,
    progress: bool,
    command: str,
) -> RunState:
    run_dir.mkdir(parents=True, exist_ok=True)
    dev = ctx.device
    train_split = load_split(data_dir, "train")
    val_split = load_split(data_dir, "val")
    ckpt_path = run_dir / CHECKPOINT

    torch.manual_seed(train_cfg.seed)  # initial weights
    state = RunState()
    if ckpt_path.exists() and not fresh:
        model, ckpt = load_model(run_dir, dev)
        model.train()
        saved_train = from_dict(TrainConfig, ckpt["train_config"], "train_config")
        # The step budget may grow on resume; everything else must match the saved run.
        if {**to_dict(saved_train), "steps": 0} != {**to_dict(train_cfg), "steps": 0}:
            raise SystemExit(f"{ckpt_path} was trained with a different train config; use --fresh")
        state = from_dict(RunState, ckpt["state"], "state")
        best = ckpt.get("best_model")
        log.info("resuming %s at step %d", ckpt_path, state.step)
    else:
        model = DeepONet(model_config_for(model_cfg, train_split)).to(dev)
        ckpt = None
        best = None
    opt = torch.optim.AdamW(
        model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
    )
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
    if command:
        state.commands.append(command)

    pressure = torch.as_tensor(train_split.pressure, device=dev)  # (S, T, P)
    sources = torch.as_tensor(train_split.sources, dtype=torch.float32, device=dev)
    receivers = torch.as_tensor(train_split.receivers, dtype=torch.float32, device=dev)
    times = torch.as_tensor(train_split.times, dtype=torch.float32, device=dev)
    n_src, n_t, n_rec = pressure.shape
    inv_scale = 1.0 / model.cfg.p_scale
    b = min(train_cfg.batch_sources, n_src)
    if b < ctx.world_size:
        raise SystemExit(
            f"a batch of {b} sources cannot be shared by {ctx.world_size} processes: "
            "raise train.batch_sources or lower --nproc_per_node"
        )
    mine = ctx.shard(b)  # this rank's share of every batch's sources
    n_global = b * train_cfg.batch_points  # (source, point) pairs in the global batch
    net = ctx.wrap(model)  # DDP under torchrun, the model itself otherwise
    # Batches come from one generator whose state is checkpointed: a resumed run draws exactly
    # the batches the uninterrupted run would have drawn.
    gen = torch.Generator(device=dev).manual_seed(train_cfg.seed)
    if ckpt is not None:
        gen.set_state(ckpt["rng"]["batches"].cpu())

    start_time = time.monotonic()
    deadline = None if max_minutes is None else start_time + 60.0 * max_minutes
    bar = tqdm(
        total=train_cfg.steps,
        initial=state.step,
        desc="train",
        unit="step",
        disable=not (progress and ctx.is_main),
    )
    running, running_n = 0.0, 0
    stopped_early = False
    while state.step < train_cfg.steps:
        lr = train_cfg.lr * train_cfg.lr_decay ** (state.step / train_cfg.lr_decay_steps)
        for g in opt.param_groups:
            g["lr"] = lr
        # Every rank draws the same global batch (one generator, one seed) and keeps its share.
        src_idx = torch.randperm(n_src, generator=gen, device=dev)[:b]
        t_idx = torch.randint(0, n_t, (train_cfg.batch_points,), generator=gen, device=dev)
        r_idx = torch.randint(0, n_rec, (train_cfg.batch_points,), generator=gen, device=dev)
        points = torch.cat([receivers[r_idx], times[t_idx, None]], dim=1)  # (M, dim+1)
        if ctx.enabled:
            src_idx = src_idx[mine]
        target = pressure[src_idx[:, None], t_idx[None, :], r_idx[None, :]]  # (B, M)
        pred = net(sources[src_idx], points)  # (B, M)
        squared = ((pred - target) * inv_scale) ** 2
        if ctx.enabled:
            # This rank's share of the global mean; DDP's gradient average makes the sum.
            local = squared.sum()
            loss = local * ctx.loss_scale(n_global)
            step_loss = float(ctx.sum(local)) / n_global
        else:
            loss = torch.mean(squared)
            step_loss = float(loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train_cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        opt.step()
        state.step += 1
        running += step_loss
        running_n += 1
        bar.update(1)

        last = state.step >= train_cfg.steps
        # One rank past the deadline stops them all (a collective only when there is one).
        out_of_time = deadline is not None and ctx.any(time.monotonic() > deadline)
        validating = state.step % train_cfg.val_every == 0 or last or out_of_time
        checkpointing = state.step % train_cfg.checkpoint_every == 0 or last or out_of_time
        if validating and ctx.is_main:
            val, _ = validate(model, val_split, dev)
            state.history.append(
                {"step": state.step, "loss": running / max(running_n, 1), "val_rel_l2": val}
            )
            if val < state.best_val:
                state.best_val = val
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
            bar.set_postfix(loss=f"{running / max(running_n, 1):.3g}", val_rel_l2=f"{val:.4f}")
        if validating:
            running, running_n = 0.0, 0
        if checkpointing:
            state.seconds += time.monotonic() - start_time
            start_time = time.monotonic()
        if checkpointing and ctx.is_main:
            save_checkpoint(
                ckpt_path,
                model,
                opt,
                gen,
                state,
                train_cfg,
                train_split.config,
                str(train_split.attrs.get("command", "")),
                best,
            )
        if validating or checkpointing:
            ctx.barrier()  # the other ranks wait for rank 0's validation and checkpoint
        if out_of_time and not last:
            log.warning(
                "stopping at step %d: --max-minutes reached (resume to continue)", state.step
            )
            stopped_early = True
            break
    bar.close()
    if ctx.is_main:
        _write_outputs(run_dir, model, state, val_split, dev)
    if stopped_early:
        log.info("checkpoint at step %d of %d", state.step, train_cfg.steps)
    return state


def _write_outputs(
    run_dir: Path, model: DeepONet, state: RunState, val: AcousticSplit, dev: torch.device
) -> None:
    from training.acoustics.plots import plot_field, plot_history

    (run_dir / "history.json").write_text(json.dumps(state.history, indent=1))
    if state.history:
        plot_history(state.history, run_dir / "loss.png")
    _, pred = validate(model, val, dev)
    plot_field(val, pred, 0, run_dir / "field.png")
