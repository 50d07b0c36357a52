"""Two-stage enf2enf training on any geometry dataset (training.geometry_data): resumable,
validated, plotted; then the geometry DeepONet baseline.

Stage 1 (steps [0, encoder_steps)): meta-learn the geometry encoder. Each step takes a batch of
geometries, runs the K-step inner loop on all their encoder points from the shared initial code
(the same computation the exported encoder does), and backpropagates through it (second order)
the SDF error at those points plus a random subset of the field points (the domain side), so
the codes describe the geometry beyond the points they were fitted to.

Stage 2 (steps [encoder_steps, steps)): freeze the encoder, compute every sample's latents
once, fix the latent z-score from them, and train the field decoder on random subsets of the
field points (`batch_points` per sample, `batch_samples` samples per step).

One generator draws every batch of both stages; its state, the stage, the step and the
optimiser of the current stage are in the checkpoint, so a resumed run equals an uninterrupted
one. After the last step the geometry DeepONet baseline (training.enf2enf.baselines) is
trained on the same splits and saved beside the checkpoint.

Samples may have different point counts (each its own mesh): points are drawn per sample among
its own `n_points`, and validation measures each sample over its own points.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from geometry.polylines import surface_features
from training.common.config import ConfigError, from_dict, to_dict
from training.common.files import atomic_path
from training.enf2enf.metrics import rel_l2_fields, valid_mask
from training.enf2enf.mirror import Mirror
from training.enf2enf.model import N_SHAPE, Enf2Enf, Enf2EnfConfig
from training.geometry_data.format import Split, load_split

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
BASELINE = "baseline_deeponet.pt"
ENCODER, DECODER = "encoder", "decoder"


@dataclass
class TrainConfig:
    # Defaults: the schedule verified on a GPU (12k steps in about 3 minutes on an H200).
    steps: int = 12000  # total over both stages: encoder_steps, then steps - encoder_steps
    # Stage 1: meta-learned geometry encoder.
    encoder_steps: int = 1000
    encoder_batch: int = 32  # geometries per step
    encoder_lr: float = 1e-3
    encoder_field_points: int = 256  # extra outer-loss points per geometry (from the field set)
    # Stage 2: field decoder on frozen latents.
    batch_samples: int = 16
    batch_points: int = 2048
    lr: float = 2e-3
    lr_final: float = 1e-5  # cosine decay from lr to lr_final over each stage
    warmup_steps: int = 200
    grad_clip: float = 1.0  # global-norm clipping
    val_every: int = 1000
    checkpoint_every: int = 1000
    # Start from another run's trained encoder (same encoder settings), skipping stage 1 here.
    encoder_from: str = ""
    # Mirror augmentation: every training sample also enters reflected about the line
    # x[mirror_axis] = mirror_about, with the fields and conditions named in mirror_negate
    # changing sign. Only for a symmetry the problem has: the elasticity cell is symmetric under
    # x -> 1 - x with ux -> -ux (its void distribution is too). -1 = off.
    mirror_axis: int = -1
    mirror_about: float = 0.0
    mirror_negate: list[str] = field(default_factory=list)
    # Geometry DeepONet baseline (training.enf2enf.baselines), trained after stage 2.
    baseline_steps: int = 4000  # 0 = no baseline
    baseline: dict[str, Any] = field(default_factory=dict)  # GeometryDeepONetConfig fields
    seed: int = 0

    def __post_init__(self) -> None:
        # encoder_steps > steps is allowed: a run stopped (or asked to stop) inside stage 1.
        if self.encoder_steps < 0 or self.steps < 0:
            raise ValueError("steps and encoder_steps must be >= 0")
        for name in ("encoder_batch", "batch_samples", "batch_points", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.mirror_axis not in (-1, 0, 1):
            raise ValueError(f"mirror_axis must be -1 (off), 0 (x) or 1 (y): {self.mirror_axis}")


@dataclass
class RunState:
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    best_val: float = math.inf  # mean rel_l2 over the fields on val (stage 2)
    seconds: float = 0.0
    encoder_seconds: float = 0.0
    baseline_seconds: float = 0.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def model_config(model_cfg: dict[str, Any], split: Split) -> Enf2EnfConfig:
    """The model config with the dataset's field and condition counts filled in."""
    counts = {
        "n_fields": len(split.schema.field_names),
        "n_conditions": len(split.schema.condition_names),
    }
    for key, value in counts.items():
        if key in model_cfg and int(model_cfg[key]) != value:
            raise ConfigError(f"model.{key} = {model_cfg[key]}, but the dataset has {value}")
    return from_dict(Enf2EnfConfig, {**model_cfg, **counts}, "model")


# --------------------------------------------------------------------------- normalisation


def fit_normalisation(model: Enf2Enf, train: Split) -> None:
    """Coordinate, SDF, condition and target statistics from the training split into the
    model's buffers (the latent z-score is fitted when stage 2 starts)."""
    box = train.box
    real = valid_mask(train.sdf.shape, train.n_points)  # (S, N)
    sdf = np.concatenate([np.ravel(train.encoder_sdf), train.sdf[real]])
    cond = np.asarray(train.conditions, dtype=np.float64)  # (S, K)
    lo, hi = cond.min(axis=0), cond.max(axis=0)
    hi = np.where(hi - lo > 1e-6, hi, lo + 1.0)  # one value only (tiny test data)
    with torch.no_grad():
        model.box_lo.copy_(torch.as_tensor(box[:, 0]))
        model.box_hi.copy_(torch.as_tensor(box[:, 1]))
        model.sdf_lo.fill_(float(sdf.min()))
        model.sdf_hi.fill_(float(sdf.max()))
        model.cond_lo.copy_(torch.as_tensor(lo))
        model.cond_hi.copy_(torch.as_tensor(hi))
        cond_t = torch.as_tensor(cond, dtype=torch.float32)
        fields = torch.as_tensor(np.asarray(train.fields), dtype=torch.float32)  # (S, N, F)
        scaled = (fields / model.condition_scale(cond_t))[torch.from_numpy(real)]  # (R, F)
        model.field_mean.copy_(scaled.mean(0))
        model.field_std.copy_(scaled.std(0).clamp_min(1e-6))


def fit_curvature_scale(model: Enf2Enf, data: Tensors) -> None:
    """1 / the 99th percentile of |curvature| at the training points: most fall in [-1, 1]."""
    assert data.shape is not None
    real = torch.arange(data.sdf.shape[1], device=data.sdf.device) < data.counts[:, None]
    kappa = data.shape[..., 0][real].abs().cpu().numpy()  # numpy: torch.quantile caps the size
    with torch.no_grad():
        model.curvature_scale.fill_(1.0 / max(float(np.quantile(kappa, 0.99)), 1e-12))


def fit_latent_stats(model: Enf2Enf, latents: torch.Tensor, conditions: torch.Tensor) -> None:
    """z-score per (latent, feature) of [contexts, scaled conditions] over the training set."""
    nl = latents.shape[1]
    cond = model.scaled_conditions(conditions)[:, None, :].expand(-1, nl, -1)  # (S, L, K)
    z = torch.cat([latents, cond], dim=-1)  # (S, L, C+K)
    std = z.std(0)
    # A context dimension the encoder barely uses would otherwise be blown up into noise.
    floor = 1e-2 * float(std.mean()) + 1e-8
    with torch.no_grad():
        model.latent_mean.copy_(z.mean(0))
        model.latent_std.copy_(std.clamp_min(floor))


# --------------------------------------------------------------------------- prediction


def encode_all(
    model: Enf2Enf, points: torch.Tensor, sdf: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """(S, M, 2), (S, M) -> (S, L, C) latents, detached, in sample chunks."""
    out = []
    for a in range(0, len(points), chunk):
        out.append(model.encode(points[a : a + chunk], sdf[a : a + chunk]).detach())
    return torch.cat(out)


@torch.no_grad()
def decode_all(
    model: Enf2Enf,
    latents: torch.Tensor,
    conditions: torch.Tensor,
    points: torch.Tensor,
    sdf: torch.Tensor,
    shape: torch.Tensor | None = None,
    max_pairs: int = 1 << 20,
) -> torch.Tensor:
    """Physical fields (S, N, F) in chunks of samples and points that bound the memory of the
    (N, L) pair tensors."""
    s, n = sdf.shape
    per = max(1, max_pairs // latents.shape[1])  # query points per chunk
    out = torch.empty(s, n, model.cfg.n_fields, device=sdf.device)
    for a in range(s):
        for b in range(0, n, per):
            out[a, b : b + per] = model.decode(
                latents[a : a + 1],
                conditions[a : a + 1],
                points[a : a + 1, b : b + per],
                sdf[a : a + 1, b : b + per],
                None if shape is None else shape[a : a + 1, b : b + per],
            )[0]
    return out


class TorchEnf2Enf:
    """A checkpointed model behind the same numpy interface as the exported graphs."""

    def __init__(
        self,
        run_dir: str | Path | None = None,
        model: Enf2Enf | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.dataset_config: dict[str, Any] = {}
        self.checkpoint: dict[str, Any] = {}
        if model is None:
            model, ckpt = load_model(run_dir or ".", device)
            self.dataset_config = ckpt["dataset_config"]
            self.checkpoint = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
        self.model, self.device = model, torch.device(device)
        self.surface_shape = model.cfg.surface_shape

    def _t(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)

    def encode(self, points: np.ndarray, sdf: np.ndarray) -> np.ndarray:
        """(M, 2), (M,) -> (L, C)."""
        lat = self.model.encode(self._t(points)[None], self._t(sdf)[None])
        return lat[0].detach().cpu().numpy()

    def decode(
        self,
        latents: np.ndarray,
        conditions: np.ndarray,
        points: np.ndarray,
        sdf: np.ndarray,
        shape: np.ndarray | None = None,
    ) -> np.ndarray:
        """(L, C), (K,), (N, 2), (N,), (N, 3) -> (N, F)."""
        out = decode_all(
            self.model,
            self._t(latents)[None],
            self._t(conditions)[None],
            self._t(points)[None],
            self._t(sdf)[None],
            None if shape is None else self._t(shape)[None],
        )
        return out[0].cpu().numpy()


# --------------------------------------------------------------------------- checkpoints


def load_model(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[Enf2Enf, dict[str, Any]]:
    ckpt_path = Path(run_dir) / CHECKPOINT
    if not ckpt_path.exists():
        raise FileNotFoundError(f"no {CHECKPOINT} in {run_dir}: train first")
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
    if ckpt.get("family") != "enf2enf":
        raise ValueError(f"{ckpt_path} is not an enf2enf checkpoint")
    model = Enf2Enf(from_dict(Enf2EnfConfig, ckpt["model_config"], "model_config"))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def save_checkpoint(
    path: Path,
    model: Enf2Enf,
    opt: torch.optim.Optimizer,
    stage: str,
    gen: torch.Generator,
    state: RunState,
    train_cfg: TrainConfig,
    train_split: Split,
) -> None:
    payload = {
        "family": "enf2enf",
        "model_config": to_dict(model.cfg),
        "train_config": to_dict(train_cfg),
        "dataset_config": train_split.config,
        # The dataset's own description (names, units, box): what export and evaluate need.
        "dataset_attrs": {
            **train_split.schema.attrs(),
            "name": train_split.config.get("name", Path(train_split.path).parent.name),
        },
        "data_command": str(train_split.attrs.get("command", "")),
        "model": model.state_dict(),
        "stage": stage,
        "optimizer": opt.state_dict(),
        "state": to_dict(state),
        "rng": {"batches": gen.get_state()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


# --------------------------------------------------------------------------- training


def lr_at(base: float, final: float, warmup: int, step: int, total: int) -> float:
    """Linear warm-up, then cosine from base to final over the stage's remaining steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * frac))


@dataclass
class Tensors:
    """A split's arrays on the training device."""

    enc_points: torch.Tensor  # (S, M, 2)
    enc_sdf: torch.Tensor  # (S, M)
    points: torch.Tensor  # (S, N, 2), padded past each count
    sdf: torch.Tensor  # (S, N)
    fields: torch.Tensor  # (S, N, F)
    conditions: torch.Tensor  # (S, K)
    counts: torch.Tensor  # (S,) real points of each sample
    shape: torch.Tensor | None = None  # (S, N, 3) curvature and normal (model.surface_shape)

    def draw(self, rows: torch.Tensor, m: int, gen: torch.Generator) -> torch.Tensor:
        """(b,) sample indices -> (b, m) random point indices, each among its sample's own."""
        u = torch.rand((len(rows), m), generator=gen, device=gen.device)
        return (u * self.counts[rows, None]).long().clamp_max(self.points.shape[1] - 1)

    def with_mirror(self, mirror: Mirror) -> Tensors:
        """These samples followed by their reflections (the SDF does not change)."""
        dev = self.fields.device
        field_sign = torch.tensor(mirror.field_sign, device=dev)  # (F,)
        cond_sign = torch.tensor(mirror.condition_sign, device=dev)  # (K,)
        shape = None
        if self.shape is not None:  # the curvature stays, the normal reflects
            shape_sign = torch.ones(N_SHAPE, device=dev)
            shape_sign[1 + mirror.axis] = -1.0
            shape = torch.cat([self.shape, self.shape * shape_sign])  # (2S, N, 3)
        return Tensors(
            torch.cat([self.enc_points, mirror.reflect(self.enc_points)]),  # (2S, M, 2)
            torch.cat([self.enc_sdf, self.enc_sdf]),
            torch.cat([self.points, mirror.reflect(self.points)]),  # (2S, N, 2)
            torch.cat([self.sdf, self.sdf]),
            torch.cat([self.fields, self.fields * field_sign]),  # (2S, N, F)
            torch.cat([self.conditions, self.conditions * cond_sign]),  # (2S, K)
            torch.cat([self.counts, self.counts]),
            shape,
        )

    @classmethod
    def of(cls, split: Split, dev: torch.device, with_shape: bool = False) -> Tensors:
        def t(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x, dtype=np.float32), device=dev)

        return cls(
            t(split.encoder_points),
            t(split.encoder_sdf),
            t(split.points),
            t(split.sdf),
            t(split.fields),
            t(split.conditions),
            torch.as_tensor(split.n_points, dtype=torch.long, device=dev),
            t(surface_shape(split)) if with_shape else None,
        )


def surface_shape(split: Split) -> np.ndarray:
    """(S, N, 3) curvature and outward normal at each field point's nearest surface point,
    from the polylines (zero past each sample's count)."""
    out = np.zeros((*split.sdf.shape, N_SHAPE), dtype=np.float32)
    for i, n in enumerate(split.n_points):
        pts = split.points[i, :n]
        out[i, :n] = surface_features(pts, split.polylines(i))[:, 1:]
    return out


def encoder_loss(
    model: Enf2Enf, data: Tensors, gen: torch.Generator, cfg: TrainConfig
) -> torch.Tensor:
    """Meta-learning step loss: inner loop on the encoder points (second order), outer loss
    on those points and on a random subset of field points."""
    n_s, n_f = data.sdf.shape
    idx = torch.randperm(n_s, generator=gen, device=gen.device)[: cfg.encoder_batch]  # (B,)
    c = model.encode(data.enc_points[idx], data.enc_sdf[idx], create_graph=True)  # (B, L, C)
    target = model.norm_sdf(data.enc_sdf[idx])  # (B, M)
    loss = ((model.reconstruct_sdf(c, data.enc_points[idx]) - target) ** 2).mean()
    if cfg.encoder_field_points > 0:
        m = min(cfg.encoder_field_points, n_f)
        pts = data.draw(idx, m, gen)  # (B, m)
        rows = idx[:, None]  # (B, 1) broadcasts against (B, m)
        pred = model.reconstruct_sdf(c, data.points[rows, pts])  # (B, m)
        loss = 0.5 * (loss + ((pred - model.norm_sdf(data.sdf[rows, pts])) ** 2).mean())
    return loss


def decoder_loss(
    model: Enf2Enf,
    data: Tensors,
    latents: torch.Tensor,
    gen: torch.Generator,
    cfg: TrainConfig,
) -> torch.Tensor:
    n_s, n_f = data.sdf.shape
    b, m = min(cfg.batch_samples, n_s), min(cfg.batch_points, n_f)
    idx = torch.randperm(n_s, generator=gen, device=gen.device)[:b]  # (b,)
    pts = data.draw(idx, m, gen)  # (b, m)
    rows = idx[:, None]  # (b, 1)
    cond = data.conditions[idx]
    shape = None if data.shape is None else data.shape[rows, pts]  # (b, m, 3)
    pred = model.decode_normalised(
        latents[idx], cond, data.points[rows, pts], data.sdf[rows, pts], shape
    )
    # MSE on z-scored targets, so every field weighs the same.
    target = model.normalised_fields(data.fields[rows, pts], cond)  # (b, m, F)
    return ((pred - target) ** 2).mean()


def validate_encoder(model: Enf2Enf, data: Tensors) -> dict[str, float]:
    """Normalised SDF MSE at the val encoder points at the shared initial code and after the
    inner loop (the loop must reduce it), and at the val field points after the loop."""
    lat = encode_all(model, data.enc_points, data.enc_sdf)
    with torch.no_grad():
        target = model.norm_sdf(data.enc_sdf)
        init = model.c0.expand(len(lat), -1, -1)
        after = ((model.reconstruct_sdf(lat, data.enc_points) - target) ** 2).mean()
        before = ((model.reconstruct_sdf(init, data.enc_points) - target) ** 2).mean()
        field_err = (model.reconstruct_sdf(lat, data.points) - model.norm_sdf(data.sdf)) ** 2
        real = torch.arange(data.sdf.shape[1], device=data.sdf.device) < data.counts[:, None]
    return {
        "val_sdf_mse": float(after),
        "val_sdf_mse_init": float(before),
        "val_sdf_mse_field": float(field_err[real].mean()),
    }


def validate_decoder(
    model: Enf2Enf, data: Tensors, latents: torch.Tensor, names: tuple[str, ...]
) -> tuple[dict[str, float], np.ndarray]:
    pred = (
        decode_all(model, latents, data.conditions, data.points, data.sdf, data.shape).cpu().numpy()
    )
    errors = rel_l2_fields(pred, data.fields.cpu().numpy(), names, data.counts.cpu().numpy())
    return {f"val_{k}": v for k, v in errors.items()}, pred


def _check_resume(ckpt: dict[str, Any], train_cfg: TrainConfig, path: Path) -> None:
    saved = from_dict(TrainConfig, ckpt["train_config"], "train_config")
    # The total step budget may grow on resume, and the baseline's settings may change until it
    # is trained (after the last step); everything else must match the saved run.
    free = {"steps": 0, "baseline": {}, "baseline_steps": 0}
    if {**to_dict(saved), **free} != {**to_dict(train_cfg), **free}:
        raise SystemExit(f"{path} was trained with a different train config; use --fresh")


def _stage_optimizer(model: Enf2Enf, stage: str, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = model.encoder_parameters() if stage == ENCODER else list(model.decoder.parameters())
    return torch.optim.Adam(params, lr=cfg.encoder_lr if stage == ENCODER else cfg.lr)


def _set_requires_grad(model: Enf2Enf, stage: str) -> None:
    enc = {id(p) for p in model.encoder_parameters()}
    for p in model.parameters():
        p.requires_grad_((id(p) in enc) == (stage == ENCODER))


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
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    train_split = load_split(data_dir, "train")
    if (Path(data_dir) / "val.h5").exists():
        val_split = load_split(data_dir, "val")
    else:  # an imported dataset may come as train and test only
        log.warning("%s has no val split: validating on the training samples", data_dir)
        val_split = train_split
    names = train_split.schema.field_names
    ckpt_path = run_dir / CHECKPOINT
    if fresh:
        (run_dir / BASELINE).unlink(missing_ok=True)

    torch.manual_seed(train_cfg.seed)  # initial weights
    state = RunState()
    ckpt: dict[str, Any] | None = None
    if ckpt_path.exists() and not fresh:
        model, ckpt = load_model(run_dir, dev)
        _check_resume(ckpt, train_cfg, ckpt_path)
        state = from_dict(RunState, ckpt["state"], "state")
        log.info("resuming %s at step %d (%s stage)", ckpt_path, state.step, ckpt["stage"])
    else:
        model = Enf2Enf(model_config(model_cfg, train_split))
        fit_normalisation(model, train_split)
        if train_cfg.encoder_from:
            # The encoder's own commands first: together they are what made this model.
            state.commands = take_encoder(model, train_cfg.encoder_from)
            state.step = min(train_cfg.encoder_steps, train_cfg.steps)
        model = model.to(dev)
    model.train()
    if command:
        state.commands.append(command)

    with_shape = model.cfg.surface_shape
    tr, va = Tensors.of(train_split, dev, with_shape), Tensors.of(val_split, dev, with_shape)
    if with_shape and ckpt is None:
        fit_curvature_scale(model, tr)
    mirror = Mirror.of(
        train_cfg.mirror_axis,
        train_cfg.mirror_about,
        train_cfg.mirror_negate,
        train_split.schema,
    )
    if mirror is not None:
        tr = tr.with_mirror(mirror)
    # Batches come from one generator whose state is checkpointed: a resumed run draws exactly
    # the batches the uninterrupted run would have drawn.
    gen = torch.Generator(device=dev).manual_seed(train_cfg.seed)
    if ckpt is not None:
        gen.set_state(ckpt["rng"]["batches"].cpu())

    start_time = time.monotonic()
    deadline = None if max_minutes is None else start_time + 60.0 * max_minutes
    bar = tqdm(
        total=train_cfg.steps, initial=state.step, desc="train", unit="step", disable=not progress
    )
    stage, opt = "", None
    latents = val_latents = torch.empty(0)
    running, running_n = 0.0, 0
    stopped_early = False
    while state.step < train_cfg.steps:
        want = ENCODER if state.step < train_cfg.encoder_steps else DECODER
        if want != stage:
            stage = want
            _set_requires_grad(model, stage)
            opt = _stage_optimizer(model, stage, train_cfg)
            if ckpt is not None and ckpt["stage"] == stage:
                opt.load_state_dict(ckpt["optimizer"])
            if stage == DECODER:
                latents, val_latents = _enter_decoder_stage(model, tr, va, ckpt)
            bar.set_description(f"train ({stage})")
        assert opt is not None
        if stage == ENCODER:
            lr = lr_at(
                train_cfg.encoder_lr,
                train_cfg.lr_final,
                train_cfg.warmup_steps,
                state.step,
                train_cfg.encoder_steps,
            )
            loss = encoder_loss(model, tr, gen, train_cfg)
        else:
            lr = lr_at(
                train_cfg.lr,
                train_cfg.lr_final,
                train_cfg.warmup_steps,
                state.step - train_cfg.encoder_steps,
                train_cfg.steps - train_cfg.encoder_steps,
            )
            loss = decoder_loss(model, tr, latents, gen, train_cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train_cfg.grad_clip > 0:
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, train_cfg.grad_clip)
        opt.step()
        state.step += 1
        running += float(loss.detach())
        running_n += 1
        bar.update(1)

        stage_end = state.step in (train_cfg.encoder_steps, train_cfg.steps)
        out_of_time = deadline is not None and time.monotonic() > deadline
        if state.step % train_cfg.val_every == 0 or stage_end or out_of_time:
            entry: dict[str, Any] = {"step": state.step, "stage": stage, "lr": lr}
            entry["seconds"] = state.seconds + time.monotonic() - start_time
            entry["loss"] = running / max(running_n, 1)
            model.eval()
            if stage == ENCODER:
                entry.update(validate_encoder(model, va))
                bar.set_postfix(loss=f"{entry['loss']:.3g}", sdf=f"{entry['val_sdf_mse']:.3g}")
            else:
                errors, _ = validate_decoder(model, va, val_latents, names)
                entry.update(errors)
                entry["val_rel_l2"] = float(np.mean(list(errors.values())))
                state.best_val = min(state.best_val, entry["val_rel_l2"])
                bar.set_postfix(loss=f"{entry['loss']:.3g}", val=f"{entry['val_rel_l2']:.4f}")
            model.train()
            state.history.append(entry)
            running, running_n = 0.0, 0
        if state.step % train_cfg.checkpoint_every == 0 or stage_end or out_of_time:
            elapsed = time.monotonic() - start_time
            state.seconds += elapsed
            if stage == ENCODER:
                state.encoder_seconds += elapsed
            start_time = time.monotonic()
            save_checkpoint(ckpt_path, model, opt, stage, gen, state, train_cfg, train_split)
        if out_of_time and state.step < train_cfg.steps:
            log.warning(
                "stopping at step %d: --max-minutes reached (resume to continue)", state.step
            )
            stopped_early = True
            break
    bar.close()
    model.eval()
    if train_cfg.baseline_steps > 0 and not stopped_early and not (run_dir / BASELINE).exists():
        if deadline is not None and time.monotonic() > deadline:
            log.warning("no time left for the geometry DeepONet baseline: resume to train it")
        elif ckpt_path.exists():
            baseline_start = time.monotonic()
            _train_baseline(run_dir, train_split, val_split, train_cfg, dev, progress, mirror)
            # Record its time in the checkpoint without touching anything else there.
            saved = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            state.baseline_seconds = saved["state"]["baseline_seconds"] = (
                time.monotonic() - baseline_start
            )
            with atomic_path(ckpt_path) as tmp:
                torch.save(saved, tmp)
    _write_outputs(run_dir, model, state, val_split, va)
    return state


# What the encoder computes with: its parameters, its fixed Fourier features and latent
# positions, and the box and SDF scaling of its inputs.
_ENCODER_STATE = ("c0", "alpha", "sdf_field.", "positions", "box_lo", "box_hi", "sdf_lo", "sdf_hi")
_ENCODER_CONFIG = (
    "latent_grid", "latent_dim", "latent_bbox", "window_sigma", "rff_seed", "enc_hidden",
    "enc_heads", "enc_rff_scale", "inner_steps",
)  # fmt: skip


def take_encoder(model: Enf2Enf, run_dir: str | Path) -> list[str]:
    """Copy another run's trained encoder into `model` (train.encoder_from); returns the
    commands that trained it."""
    source, ckpt = load_model(run_dir)
    done = ckpt["state"]["step"] >= ckpt["train_config"]["encoder_steps"]
    if ckpt["stage"] == ENCODER and not done:
        raise ConfigError(f"train.encoder_from: {run_dir} has not finished its encoder stage")
    theirs, ours = to_dict(source.cfg), to_dict(model.cfg)
    differ = [k for k in _ENCODER_CONFIG if theirs[k] != ours[k]]
    if differ:
        raise ConfigError(
            f"train.encoder_from: {run_dir} has another encoder ("
            + ", ".join(f"model.{k} {theirs[k]} there, {ours[k]} here" for k in differ)
            + ")"
        )
    state = {k: v for k, v in source.state_dict().items() if k.startswith(_ENCODER_STATE)}
    model.load_state_dict(state, strict=False)
    return list(ckpt["state"]["commands"])


def _enter_decoder_stage(
    model: Enf2Enf, tr: Tensors, va: Tensors, ckpt: dict[str, Any] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents of every training and validation sample from the frozen encoder; the latent
    z-score is fitted on the first entry (a resumed run has it in its buffers already)."""
    model.eval()
    latents = encode_all(model, tr.enc_points, tr.enc_sdf)  # (S, L, C)
    if ckpt is None or ckpt["stage"] != DECODER:
        fit_latent_stats(model, latents, tr.conditions)
    val_latents = encode_all(model, va.enc_points, va.enc_sdf)
    model.train()
    return latents, val_latents


def _train_baseline(
    run_dir: Path,
    train_split: Split,
    val_split: Split,
    cfg: TrainConfig,
    dev: torch.device,
    progress: bool,
    mirror: Mirror | None,
) -> None:
    from training.enf2enf.baselines import (
        GeometryDeepONetConfig,
        save_geometry_deeponet,
        train_geometry_deeponet,
    )

    base_cfg = from_dict(GeometryDeepONetConfig, {"seed": cfg.seed, **cfg.baseline}, "baseline")
    module = train_geometry_deeponet(
        train_split, val_split, base_cfg, cfg.baseline_steps, dev, progress, mirror
    )
    save_geometry_deeponet(module, run_dir / BASELINE)


# --------------------------------------------------------------------------- outputs


def _write_outputs(run_dir: Path, model: Enf2Enf, state: RunState, val: Split, va: Tensors) -> None:
    (run_dir / "history.json").write_text(json.dumps(state.history, indent=1))
    if state.history:
        plot_history(state.history, run_dir / "loss.png")
    if not any(h["stage"] == DECODER for h in state.history):
        return
    # The first validation sample, and the first with more than one body (a flap).
    n_el = np.asarray(val.n_polylines)
    picks = {"field.png": 0}
    if (n_el > 1).any():
        picks["field_multi.png"] = int(np.argmax(n_el > 1))
    for name, i in picks.items():
        lat = encode_all(model, va.enc_points[i : i + 1], va.enc_sdf[i : i + 1])
        pred = decode_all(
            model,
            lat,
            va.conditions[i : i + 1],
            va.points[i : i + 1],
            va.sdf[i : i + 1],
            None if va.shape is None else va.shape[i : i + 1],
        )
        plot_fields(val, pred[0].cpu().numpy(), i, run_dir / name)


def _stage_rows(history: list[dict[str, Any]], stage: str) -> Iterator[dict[str, Any]]:
    return (h for h in history if h["stage"] == stage)


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    enc = list(_stage_rows(history, ENCODER))
    dec = list(_stage_rows(history, DECODER))
    if enc:
        steps = [h["step"] for h in enc]
        # Markers: a short stage 1 may have a single validation point.
        ax1.semilogy(steps, [h["loss"] for h in enc], "o-", label="train outer loss")
        ax1.semilogy(steps, [h["val_sdf_mse"] for h in enc], "o-", label="val, after inner loop")
        ax1.semilogy(steps, [h["val_sdf_mse_init"] for h in enc], "o--", label="val, initial code")
    ax1.set_title("stage 1: geometry encoder (normalised SDF MSE)")
    if dec:
        steps = [h["step"] for h in dec]
        ax2.semilogy(steps, [h["loss"] for h in dec], ".-", label="train loss (z-scored MSE)")
        for name in [k[4:] for k in dec[-1] if k.startswith("val_") and k != "val_rel_l2"]:
            vals = [h[f"val_{name}"] for h in dec]
            ax2.semilogy(steps, vals, ".-", label=f"val rel L2 {name}")
    ax2.set_title("stage 2: field decoder")
    for ax in (ax1, ax2):
        ax.set_xlabel("step")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_fields(split: Split, pred: np.ndarray, index: int, path: Path) -> None:
    """Reference, prediction and error of every field at one sample's points (scatter: points
    may cluster at a wall, and a triangulation would fill the bodies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = int(split.n_points[index])
    pts, ref, pred = split.points[index, :n], split.fields[index, :n], pred[:n]
    names = split.schema.field_names
    fig, axs = plt.subplots(3, len(names), figsize=(4.4 * len(names), 9), squeeze=False)
    for col, name in enumerate(names):
        lo, hi = np.percentile(ref[:, col], [1, 99])
        err_max = float(np.abs(pred[:, col] - ref[:, col]).max()) or 1.0
        rows = [
            ("solver", ref[:, col], "viridis", lo, hi),
            ("enf2enf", pred[:, col], "viridis", lo, hi),
            ("error", pred[:, col] - ref[:, col], "RdBu_r", -err_max, err_max),
        ]
        for row, (label, vals, cmap, vmin, vmax) in enumerate(rows):
            ax = axs[row, col]
            sc = ax.scatter(pts[:, 0], pts[:, 1], c=vals, s=3, cmap=cmap, vmin=vmin, vmax=vmax)
            for poly in split.polylines(index):
                ax.plot(poly[:, 0], poly[:, 1], "k-", lw=0.8)
            ax.set_aspect("equal")
            ax.set_title(f"{label}: {name}", fontsize=9)
            fig.colorbar(sc, ax=ax, shrink=0.7)
    conditions = ", ".join(
        f"{k} {float(v):.3g}"
        for k, v in zip(split.schema.condition_names, split.conditions[index], strict=True)
    )
    fig.suptitle(f"validation sample {index}: {conditions}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
