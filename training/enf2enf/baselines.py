"""The baselines enf2enf has to beat on any geometry dataset, on the same splits and metric.

1. Mean field: the training fields averaged over cells of a grid over the box, looked up at
   each query point. What a model that has learnt nothing about geometry or conditions
   predicts. (Problems add their own physical floor: the free stream for airfoils,
   training.airfoils.freestream.)
2. Geometry DeepONet: branch = the signed distance sampled on a fixed sensor grid over the box
   (plus the min-max-scaled conditions), trunk = the query point (x, y, sdf). It sees the
   geometry only through that coarse grid, which is what enf2enf's latent point cloud is meant
   to improve on.

Output layout ("split both", as DeepXDE calls it): the trunk returns F groups of p basis
functions and the branch F groups of p coefficients, one group per field, so each field gets
its own basis rather than sharing one; a fixed 0/1 matrix sums each group, which keeps the
exported graph free of reshapes over the dynamic batch and point axes.

Every normalisation lives inside the module (sensor z-scores, condition and coordinate min-max
scaling, target z-scores), so the graph takes and returns physical units; the statistics are
fitted on the training split and kept in the config saved with the weights.

Sensors: 16 x 12 over the box by default (about 0.13 chords apart around an airfoil), so a
shape reaches the branch only through smooth distance values, not through its outline; the
ONNX graph records the grid in its metadata.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from tqdm import tqdm

from geometry.polylines import signed_distance
from training.common.config import from_dict, to_dict
from training.common.files import atomic_path
from training.enf2enf.metrics import rel_l2_fields, valid_mask
from training.enf2enf.mirror import Mirror
from training.geometry_data.format import Split

OPSET = 17
FAMILY = "geometry-deeponet"
SENSOR_SHAPE = (16, 12)  # (nx, ny): about 0.13 chord spacing over the default box


# --------------------------------------------------------------------------- sensors


def sensor_grid(shape: tuple[int, int], box: Any) -> np.ndarray:
    """(nx * ny, 2) sensor positions on a regular grid over `box` [[x0, x1], [y0, y1]], edges
    included, x-major (sensor i * ny + j sits at (x_i, y_j))."""
    nx, ny = shape
    (x0, x1), (y0, y1) = np.asarray(box, dtype=np.float64).reshape(2, 2)
    gx, gy = np.meshgrid(np.linspace(x0, x1, nx), np.linspace(y0, y1, ny), indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=1)  # (nx*ny, 2)


def sensor_sdf(split: Split, sensors: np.ndarray) -> np.ndarray:
    """(S, P) float32 signed distance of every sample's geometry at every sensor."""
    out = np.empty((len(split), len(sensors)), dtype=np.float32)
    for i in range(len(split)):
        out[i] = signed_distance(sensors, split.polylines(i))
    return out


# --------------------------------------------------------------------------- mean field


class MeanField:
    """The training fields averaged per cell of a `shape` grid over the box; a query point gets
    its cell's mean (the overall mean where no training point fell)."""

    def __init__(self, train: Split, shape: tuple[int, int] = (32, 32)) -> None:
        self.shape, self.box = shape, train.box
        real = valid_mask(train.sdf.shape, train.n_points)  # (S, N)
        cells = self._cells(train.points[real])  # (R,)
        values = train.fields[real].astype(np.float64)  # (R, F)
        n_cells = shape[0] * shape[1]
        count = np.bincount(cells, minlength=n_cells)[:, None]  # (C, 1)
        sums = np.stack(
            [np.bincount(cells, values[:, f], minlength=n_cells) for f in range(values.shape[1])],
            axis=1,
        )  # (C, F)
        self.table = np.where(count > 0, sums / np.maximum(count, 1), values.mean(axis=0))

    def _cells(self, points: np.ndarray) -> np.ndarray:
        (x0, x1), (y0, y1) = self.box
        nx, ny = self.shape
        ix = np.clip(((points[:, 0] - x0) / (x1 - x0) * nx).astype(int), 0, nx - 1)
        iy = np.clip(((points[:, 1] - y0) / (y1 - y0) * ny).astype(int), 0, ny - 1)
        return ix * ny + iy

    def predict(self, split: Split, dense: bool = False) -> np.ndarray:
        """(S, N, F) at the split's points (padded like them)."""
        points = split.dense_points if dense else split.points
        assert points is not None
        flat = self.table[self._cells(points.reshape(-1, 2))]  # (S*N, F)
        return flat.reshape(*points.shape[:2], -1).astype(np.float32)


# --------------------------------------------------------------------------- model


@dataclass
class GeometryDeepONetConfig:
    """Architecture and training hyperparameters; the normalisation fields at the bottom are
    filled from the training split by `train_geometry_deeponet` and saved with the weights."""

    sensor_nx: int = SENSOR_SHAPE[0]
    sensor_ny: int = SENSOR_SHAPE[1]
    branch_width: int = 128
    branch_depth: int = 4
    trunk_width: int = 128
    trunk_depth: int = 4
    n_basis: int = 64  # p per field (F p in all)
    activation: str = "tanh"  # "tanh" | "gelu" | "sin"
    # Gaussian random Fourier features of the scaled (x, y, sdf) for the trunk; 0 = off.
    n_fourier: int = 32
    fourier_scale: float = 1.0
    sensor_std_floor: float = 1e-3  # far sensors barely move with the geometry: cap the z-gain
    # The trunk sees sign(sdf) |sdf|^sdf_power: below 1 it spreads a near-wall band (around
    # airfoils half the points lie within 0.005-0.25 chords of a wall) over more of [-1, 1].
    sdf_power: float = 1.0
    # Training.
    lr: float = 2e-3
    lr_final: float = 2e-5  # cosine decay from lr to lr_final over the step budget
    warmup_steps: int = 50
    batch_samples: int = 16
    batch_points: int = 512
    grad_clip: float = 1.0
    val_every: int = 100
    seed: int = 0
    # Normalisation, from the training split.
    box: tuple[float, ...] = ()  # (x0, x1, y0, y1)
    sdf_range: tuple[float, ...] = ()  # (lo, hi) of the field points' signed distance
    condition_lo: tuple[float, ...] = ()  # (K,)
    condition_hi: tuple[float, ...] = ()
    sensor_mean: tuple[float, ...] = ()  # (P,)
    sensor_std: tuple[float, ...] = ()
    field_mean: tuple[float, ...] = ()  # (F,)
    field_std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "sensor_nx",
            "sensor_ny",
            "branch_width",
            "branch_depth",
            "trunk_width",
            "trunk_depth",
            "n_basis",
            "batch_samples",
            "batch_points",
            "val_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}")
        if self.n_fourier < 0:
            raise ValueError("n_fourier must be >= 0")
        if self.sdf_power <= 0:
            raise ValueError(f"sdf_power must be > 0, got {self.sdf_power}")

    @property
    def n_sensors(self) -> int:
        return self.sensor_nx * self.sensor_ny

    @property
    def fitted(self) -> bool:
        return len(self.field_std) > 0

    @property
    def n_fields(self) -> int:
        return len(self.field_std)

    @property
    def n_conditions(self) -> int:
        return len(self.condition_lo)

    def sensors(self) -> np.ndarray:
        return sensor_grid((self.sensor_nx, self.sensor_ny), np.asarray(self.box).reshape(2, 2))


class _Sin(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "gelu": nn.GELU, "sin": _Sin}


class ModifiedMLP(nn.Module):
    """Wang, Wang & Perdikaris' modified MLP: h <- act(W h + b), then gated
    h <- h * U + (1 - h) * V with two encodings U = act(W_U x), V = act(W_V x) of the input,
    which carries the input to every layer (it trains DeepONets markedly better than a plain
    MLP)."""

    def __init__(self, d_in: int, width: int, depth: int, d_out: int, activation: str) -> None:
        super().__init__()
        self.act = _ACTIVATIONS[activation]()
        self.gate_u = nn.Linear(d_in, width)
        self.gate_v = nn.Linear(d_in, width)
        self.hidden = nn.ModuleList(
            nn.Linear(d_in if i == 0 else width, width) for i in range(depth)
        )
        self.out = nn.Linear(width, d_out)
        for layer in [self.gate_u, self.gate_v, *self.hidden, self.out]:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.act(self.gate_u(x))  # (..., width)
        v = self.act(self.gate_v(x))
        h = x
        for layer in self.hidden:
            h = self.act(layer(h))
            h = h * u + (1.0 - h) * v
        return self.out(h)  # (..., d_out)


class GeometryDeepONet(nn.Module):
    """(sensor_sdf (B, P), conditions (B, K), points (B, N, 2), sdf (B, N)) -> (B, N, F)."""

    sensor_mean: torch.Tensor  # (P,)
    sensor_std: torch.Tensor  # (P,)
    condition_lo: torch.Tensor  # (K,)
    condition_hi: torch.Tensor  # (K,)
    coord_lo: torch.Tensor  # (3,) x, y, sdf
    coord_hi: torch.Tensor  # (3,)
    field_mean: torch.Tensor  # (F,)
    field_std: torch.Tensor  # (F,)
    fourier: torch.Tensor  # (3, n_fourier) rad per unit of scaled coordinate
    groups: torch.Tensor  # (F p, F) 0/1: column c sums basis group c

    def __init__(self, cfg: GeometryDeepONetConfig) -> None:
        super().__init__()
        if not cfg.fitted:
            raise ValueError("GeometryDeepONetConfig has no normalisation: fit it on data first")
        self.cfg = cfg
        self.history: list[dict[str, float]] = []

        def buf(name: str, values: Any) -> None:
            self.register_buffer(name, torch.as_tensor(values, dtype=torch.float32))

        buf("sensor_mean", cfg.sensor_mean)
        buf("sensor_std", cfg.sensor_std)
        buf("condition_lo", cfg.condition_lo)
        buf("condition_hi", cfg.condition_hi)
        sdf_lo, sdf_hi = (_sdf_feature(v, cfg.sdf_power) for v in cfg.sdf_range)
        buf("coord_lo", [cfg.box[0], cfg.box[2], sdf_lo])
        buf("coord_hi", [cfg.box[1], cfg.box[3], sdf_hi])
        buf("field_mean", cfg.field_mean)
        buf("field_std", cfg.field_std)
        gen = torch.Generator().manual_seed(cfg.seed)
        buf(
            "fourier",
            2.0 * math.pi * cfg.fourier_scale * torch.randn(3, cfg.n_fourier, generator=gen),
        )
        p, n_fields = cfg.n_basis, cfg.n_fields
        buf("groups", torch.repeat_interleave(torch.eye(n_fields), p, dim=0))  # (Fp, F)

        self.branch = ModifiedMLP(
            cfg.n_sensors + cfg.n_conditions,
            cfg.branch_width,
            cfg.branch_depth,
            n_fields * p,
            cfg.activation,
        )
        self.trunk = ModifiedMLP(
            3 + 2 * cfg.n_fourier, cfg.trunk_width, cfg.trunk_depth, n_fields * p, cfg.activation
        )
        self.bias = nn.Parameter(torch.zeros(n_fields))

    def branch_coefficients(
        self, sensor_sdf: torch.Tensor, conditions: torch.Tensor
    ) -> torch.Tensor:
        """(B, P), (B, K) -> (B, F p)."""
        s = (sensor_sdf - self.sensor_mean) / self.sensor_std  # (B, P)
        c = 2.0 * (conditions - self.condition_lo) / (self.condition_hi - self.condition_lo) - 1.0
        return self.branch(torch.cat([s, c], dim=-1))  # (B, Fp)

    def trunk_basis(self, points: torch.Tensor, sdf: torch.Tensor) -> torch.Tensor:
        """(B, N, 2), (B, N) -> (B, N, F p)."""
        if self.cfg.sdf_power != 1.0:
            sdf = torch.sign(sdf) * torch.abs(sdf) ** self.cfg.sdf_power
        q = torch.cat([points, sdf.unsqueeze(-1)], dim=-1)  # (B, N, 3)
        q = 2.0 * (q - self.coord_lo) / (self.coord_hi - self.coord_lo) - 1.0
        if self.cfg.n_fourier:
            phase = q @ self.fourier  # (B, N, n_fourier)
            q = torch.cat([q, torch.sin(phase), torch.cos(phase)], dim=-1)  # (B, N, 3 + 2F)
        return self.trunk(q)  # (B, N, Fp)

    def forward_normalised(
        self,
        sensor_sdf: torch.Tensor,
        conditions: torch.Tensor,
        points: torch.Tensor,
        sdf: torch.Tensor,
    ) -> torch.Tensor:
        """z-scored (B, N, F): what the loss sees, so every field weighs the same."""
        coef = self.branch_coefficients(sensor_sdf, conditions)  # (B, Fp)
        basis = self.trunk_basis(points, sdf)  # (B, N, Fp)
        # (B, N, Fp) @ (Fp, F): each field's p products summed within its own group.
        return (basis * coef.unsqueeze(1)) @ self.groups + self.bias  # (B, N, F)

    def forward(
        self,
        sensor_sdf: torch.Tensor,
        conditions: torch.Tensor,
        points: torch.Tensor,
        sdf: torch.Tensor,
    ) -> torch.Tensor:
        """Physical fields (B, N, F)."""
        z = self.forward_normalised(sensor_sdf, conditions, points, sdf)
        return z * self.field_std + self.field_mean  # (B, N, F)

    def normalise_targets(self, fields: torch.Tensor) -> torch.Tensor:
        """Physical (B, N, F) -> what forward_normalised is trained to output."""
        return (fields - self.field_mean) / self.field_std


def _sdf_feature(value: float, power: float) -> float:
    return math.copysign(abs(value) ** power, value)


# --------------------------------------------------------------------------- training


def fit_normalisation(
    cfg: GeometryDeepONetConfig, train: Split, train_sensor_sdf: np.ndarray
) -> GeometryDeepONetConfig:
    """A copy of `cfg` with every normalisation statistic taken from the training split."""
    box = train.box  # (2, 2)
    real = valid_mask(train.sdf.shape, train.n_points)  # (S, N)
    sdf = np.asarray(train.sdf[real], dtype=np.float64)
    cond = np.asarray(train.conditions, dtype=np.float64)  # (S, K)
    lo, hi = cond.min(axis=0), cond.max(axis=0)
    # A split with a single value of a condition (tiny test data) still needs a non-zero span.
    hi = np.where(hi - lo > 1e-6, hi, lo + 1.0)
    fields = np.asarray(train.fields[real], dtype=np.float64)  # (R, F)
    sensors = np.asarray(train_sensor_sdf, dtype=np.float64)  # (S, P)
    return dataclasses.replace(
        cfg,
        box=tuple(float(v) for v in box.ravel()),
        sdf_range=(float(sdf.min()), float(sdf.max())),
        condition_lo=tuple(float(v) for v in lo),
        condition_hi=tuple(float(v) for v in hi),
        sensor_mean=tuple(float(v) for v in sensors.mean(axis=0)),
        sensor_std=tuple(float(max(v, cfg.sensor_std_floor)) for v in sensors.std(axis=0)),
        field_mean=tuple(float(v) for v in fields.mean(axis=0)),
        field_std=tuple(float(max(v, 1e-6)) for v in fields.std(axis=0)),
    )


@torch.no_grad()
def predict_torch(
    model: GeometryDeepONet,
    split: Split,
    split_sensor_sdf: np.ndarray,
    dense: bool = False,
    max_points: int = 65536,
) -> np.ndarray:
    """The torch module over a whole split, in sample chunks: (S, N, F) float32."""
    points, sdf = _query_arrays(split, dense)
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunk = max(1, max_points // points.shape[1])
    out = np.empty((*points.shape[:2], model.cfg.n_fields), dtype=np.float32)
    for a in range(0, len(points), chunk):
        b = slice(a, a + chunk)
        inputs = (split_sensor_sdf[b], split.conditions[b], points[b], sdf[b])
        out[b] = model(*(_tensor(x, dev) for x in inputs)).cpu()
    model.train(was_training)
    return out


def _tensor(x: np.ndarray, dev: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32), device=dev)


def _query_arrays(split: Split, dense: bool) -> tuple[np.ndarray, np.ndarray]:
    if not dense:
        return split.points, split.sdf
    if split.dense_points is None or split.dense_sdf is None:
        raise ValueError(f"{split.path} has no dense point set (only test splits carry one)")
    return split.dense_points, split.dense_sdf


def _lr_at(cfg: GeometryDeepONetConfig, step: int, steps: int) -> float:
    """Linear warm-up, then cosine from lr to lr_final over the rest of the budget."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1.0 + math.cos(math.pi * min(frac, 1.0)))


def train_geometry_deeponet(
    train: Split,
    val: Split,
    cfg: GeometryDeepONetConfig,
    steps: int,
    device: str | torch.device = "cpu",
    progress: bool = True,
    mirror: Mirror | None = None,
) -> GeometryDeepONet:
    """Adam on z-scored MSE, `batch_samples` geometries x `batch_points` random points of each
    per step; validated every `val_every` steps and returned with its best validation weights
    (mean rel_l2 over the fields), in eval mode on `device`. With a `mirror`, the training
    samples enter reflected too (as for enf2enf)."""
    dev = torch.device(device)
    names = train.schema.field_names
    sensors = sensor_grid((cfg.sensor_nx, cfg.sensor_ny), train.box)
    train_s = sensor_sdf(train, sensors)  # (S, P)
    val_s = sensor_sdf(val, sensors)
    cfg = fit_normalisation(cfg, train, train_s)
    # Seeded initialisation without disturbing the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = GeometryDeepONet(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)

    s_all, c_all = _tensor(train_s, dev), _tensor(train.conditions, dev)  # (S, P), (S, K)
    x_all = _tensor(train.points, dev)  # (S, N, 2)
    d_all = _tensor(train.sdf, dev)  # (S, N)
    f_all = _tensor(train.fields, dev)  # (S, N, F)
    counts = torch.as_tensor(train.n_points, dtype=torch.long, device=dev)  # (S,)
    if mirror is not None:
        # A reflected geometry's SDF at a sensor is the geometry's own at the reflected sensor.
        s_all = torch.cat([s_all, _tensor(sensor_sdf(train, mirror.reflect(sensors)), dev)])
        c_all = torch.cat([c_all, c_all * torch.tensor(mirror.condition_sign, device=dev)])
        x_all = torch.cat([x_all, mirror.reflect(x_all)])  # (2S, N, 2)
        d_all = torch.cat([d_all, d_all])
        f_all = torch.cat([f_all, f_all * torch.tensor(mirror.field_sign, device=dev)])
        counts = torch.cat([counts, counts])
    n_samples, n_points = d_all.shape
    z_all = model.normalise_targets(f_all)  # (S, N, F)
    b, m = min(cfg.batch_samples, n_samples), min(cfg.batch_points, n_points)

    best_val, best_state = math.inf, copy.deepcopy(model.state_dict())
    start = time.monotonic()
    running, running_n = 0.0, 0
    bar = tqdm(total=steps, desc="geometry deeponet", unit="step", disable=not progress)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, step, steps)
        idx = torch.randperm(n_samples, generator=gen, device=dev)[:b]  # (b,)
        # Each sample's own points only (samples may have different counts).
        u = torch.rand((b, m), generator=gen, device=dev)
        pts = (u * counts[idx, None]).long().clamp_max(n_points - 1)  # (b, m)
        rows = idx[:, None]  # (b, 1) broadcasts against (b, m)
        pred = model.forward_normalised(s_all[idx], c_all[idx], x_all[rows, pts], d_all[rows, pts])
        loss = torch.mean((pred - z_all[rows, pts]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        running += float(loss.detach())
        running_n += 1
        bar.update(1)
        if (step + 1) % cfg.val_every == 0 or step + 1 == steps:
            val_pred = predict_torch(model, val, val_s)
            errors = rel_l2_fields(val_pred, val.fields, names, val.n_points)
            mean_err = float(np.mean(list(errors.values())))
            model.history.append(
                {
                    "step": step + 1,
                    "seconds": time.monotonic() - start,
                    "loss": running / running_n,
                    **{f"val_{k}": v for k, v in errors.items()},
                }
            )
            if mean_err < best_val:
                best_val, best_state = mean_err, copy.deepcopy(model.state_dict())
            bar.set_postfix(loss=f"{running / running_n:.3g}", val=f"{mean_err:.4f}")
            running, running_n = 0.0, 0
    bar.close()
    model.load_state_dict(best_state)
    return model.eval()


# --------------------------------------------------------------------------- persistence


def save_geometry_deeponet(model: GeometryDeepONet, path: str | Path) -> None:
    """Weights, config (with its normalisation) and history in one torch file."""
    payload = {
        "family": FAMILY,
        "config": to_dict(model.cfg),
        "model": model.state_dict(),
        "history": model.history,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_geometry_deeponet(
    path: str | Path, device: str | torch.device = "cpu"
) -> GeometryDeepONet:
    ckpt = torch.load(Path(path), map_location=device, weights_only=False)
    if ckpt.get("family") != FAMILY:
        raise ValueError(f"{path} is not a {FAMILY} checkpoint (family {ckpt.get('family')!r})")
    model = GeometryDeepONet(from_dict(GeometryDeepONetConfig, ckpt["config"], "config"))
    model.load_state_dict(ckpt["model"])
    model.history = list(ckpt.get("history", []))
    return model.to(device).eval()


# --------------------------------------------------------------------------- ONNX


def export_geometry_deeponet(model: GeometryDeepONet, path: str | Path) -> Path:
    """One graph: sensor_sdf (B, P), conditions (B, 2), points (B, N, 2), sdf (B, N) ->
    fields (B, N, F) physical; B and N dynamic. The sensor grid is written into the
    graph's metadata so a reader can sample the SDF where the branch expects it."""
    path = Path(path)
    cpu = copy.deepcopy(model).cpu().eval()
    cfg = cpu.cfg
    b, n = 2, 5
    pts = torch.rand(b, n, 2) * torch.tensor([cfg.box[1] - cfg.box[0], cfg.box[3] - cfg.box[2]])
    pts = pts + torch.tensor([cfg.box[0], cfg.box[2]])
    example = (
        torch.as_tensor(cfg.sensor_mean, dtype=torch.float32).expand(b, -1).clone(),
        torch.as_tensor(cfg.condition_lo, dtype=torch.float32).expand(b, -1).clone(),
        pts,
        torch.rand(b, n) * 0.5,
    )
    batch_and_n = {0: "batch", 1: "n"}
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but handles this plain MLP graph exactly.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                cpu,
                example,
                str(tmp),
                input_names=["sensor_sdf", "conditions", "points", "sdf"],
                output_names=["fields"],
                dynamic_axes={
                    "sensor_sdf": {0: "batch"},
                    "conditions": {0: "batch"},
                    "points": batch_and_n,
                    "sdf": batch_and_n,
                    "fields": batch_and_n,
                },
                opset_version=OPSET,
                dynamo=False,
            )
        graph = onnx.load(str(tmp))
        meta = {
            "family": FAMILY,
            "sensor_grid": json.dumps(
                {
                    "shape": [cfg.sensor_nx, cfg.sensor_ny],
                    "box": [[cfg.box[0], cfg.box[1]], [cfg.box[2], cfg.box[3]]],
                    "order": "x-major: sensor i * ny + j at (x_i, y_j), edges included",
                }
            ),
            "config": json.dumps(to_dict(cfg)),
        }
        for key, value in meta.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
    return path


class OnnxGeometryDeepONet:
    """The exported baseline through onnxruntime: what would be served, numbers included."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        grid = json.loads(meta["sensor_grid"]) if "sensor_grid" in meta else None
        if grid is None:
            raise ValueError(f"{path}: no sensor_grid in the graph's metadata")
        nx, ny = (int(v) for v in grid["shape"])
        self.sensors = sensor_grid((nx, ny), np.asarray(grid["box"]))
        n_in = self.session.get_inputs()[0].shape[1]
        if n_in != len(self.sensors):
            raise ValueError(f"{path}: graph expects {n_in} sensors, grid has {len(self.sensors)}")
        self.n_fields = int(self.session.get_outputs()[0].shape[-1])
        self._cache: dict[str, np.ndarray] = {}

    def sensor_sdf(self, split: Split) -> np.ndarray:
        """(S, P); cached per geometry set (a split's dense and training-density predictions
        share it)."""
        key = hashlib.sha1(
            np.ascontiguousarray(split.polylines_padded).tobytes()
            + np.asarray(split.n_vertices).tobytes()
        ).hexdigest()
        if key not in self._cache:
            self._cache[key] = sensor_sdf(split, self.sensors)
        return self._cache[key]

    def run(
        self, sensor_sdf: np.ndarray, conditions: np.ndarray, points: np.ndarray, sdf: np.ndarray
    ) -> np.ndarray:
        feeds = {
            "sensor_sdf": np.asarray(sensor_sdf, dtype=np.float32),
            "conditions": np.asarray(conditions, dtype=np.float32),
            "points": np.asarray(points, dtype=np.float32),
            "sdf": np.asarray(sdf, dtype=np.float32),
        }
        return np.asarray(self.session.run(None, feeds)[0])

    def predict(self, split: Split, dense: bool = False, max_points: int = 65536) -> np.ndarray:
        """(S, N, F) at the split's points (or its dense points), padded like them."""
        points, sdf = _query_arrays(split, dense)
        sensors = self.sensor_sdf(split)  # (S, P)
        chunk = max(1, max_points // points.shape[1])
        out = np.empty((*points.shape[:2], self.n_fields), dtype=np.float32)
        for a in range(0, len(points), chunk):
            b = slice(a, a + chunk)
            out[b] = self.run(sensors[b], split.conditions[b], points[b], sdf[b])
        return out
