"""POD-DeepONet for the acoustic task, fitted by linear algebra on a CPU in minutes.

After Lu et al. (2022), "A comprehensive and fair comparison of two neural operators (with
practical extensions) based on FAIR data": the trunk of a DeepONet is replaced by a POD basis of
the training fields, and the branch maps the source position to the POD coefficients.

    p(x, t; x0) = sum_k c_k(x0) phi_k(x, t)

- POD: the fields of the S training sources, each flattened over (times x receivers), are
  decomposed through their S x S Gram matrix (method of snapshots): exact, and cheap because
  S (hundreds) is far smaller than T * P (millions).
- Branch: a thin-plate spline with a linear polynomial term over the training source positions,
  one output per mode. It interpolates the training coefficients exactly and is a small closed
  form graph (distances to the S centres, the kernel, one matrix product), so it needs no
  training and no early stopping. Measured: its held-out error equals the local thin-plate
  spline baseline over the stored fields (2-D 0.0082 vs 0.0087; 3-D furnished 0.0333 vs
  0.0335) and is far below linear interpolation (0.035; 0.144).
- Trunk: the modes stored as a table with one row per (air receiver, output time step),
  evaluated by multilinear interpolation on the receiver grid (a cell-centred box grid; a
  node inside furniture is an index to the nearest air receiver's rows) and Catmull-Rom (or
  linear) interpolation in time. At the training receivers and times it returns the modes
  exactly (up to the table's precision); elsewhere its error is the interpolation error of
  the modes. The table is float16, float32 or `quantized`: every row keeps its leading modes
  as int8 and the rest as 4-bit codes, each part with a float16 scale per row (the leading
  modes carry most of a field's energy, so the 4-bit codes cost little accuracy: measured on
  the furnished room, 0.046 -> 0.053 test error for 2.6x fewer bytes than float16). The
  table is split column-wise into tensors under `max_file_mb`, exported as external data
  files of the trunk graph. Neural trunks regressed onto the 2-D modes were measured too (a
  3 x 128 modified MLP; a sine MLP and a grid-feature MLP with the output layer solved by
  least squares at every step): after 3 minutes of CPU training they reproduce the fields to
  14-24 %, against 0.8 % for the table. The table's price is its size (bytes per value x
  receivers x time steps x modes) and a gather-bound cost per point (16 rows of p modes in
  2-D, 32 in 3-D).

The exported graphs keep the DeepONet interface served by app/families/deeponet.py: the branch
takes `source` (S, dim) in metres and returns (S, p + 1) coefficients in pascals (the last one
zero: the POD needs no bias), and the trunk takes `points` (N, dim + 1) = (x, [y, [z,]] t) in
metres and seconds and returns (N, p + 1) = [phi_1..phi_p, 1].
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import ndimage
from torch import nn
from tqdm import tqdm

from training.acoustics.dataset import AcousticSplit
from training.acoustics.graphs import export_factors, externalize
from training.common.config import from_dict, to_dict
from training.common.files import atomic_path

CHECKPOINT = "pod.pt"
# Receivers closer than this fraction of a grid step to a grid node count as on the node.
GRID_TOLERANCE = 1e-3
# Bytes per stored mode value (quantized: the 4-bit part; its int8 part costs 1).
TABLE_BYTES = {"float32": 4.0, "float16": 2.0, "quantized": 0.5}
# Trunk tensors at least this large are written beside the graph, not in it (the table).
TABLE_FILE_MIN_BYTES = 16 * 1024
# Bytes per row of a quantized table besides the codes: a float16 scale for each part.
SCALE_BYTES = 4


@dataclass
class PodConfig:
    """Hyperparameters of a POD-DeepONet; the data fields are filled by `fit_pod`."""

    n_modes: int = 256  # most POD modes kept; the count actually used is chosen on val
    # Keep the fewest modes whose validation error is within this factor of the best one: a
    # smaller table (the trunk's size and cost grow with the mode count) for a bounded loss.
    mode_tolerance: float = 1.02
    mode_step: int = 8  # mode counts tried on val: mode_step, 2 * mode_step, ...
    branch_kernel: str = "thin_plate_spline"  # the only kernel exported so far
    branch_smoothing: float = 0.0  # 0 = the spline interpolates the training coefficients
    time_interpolation: str = "cubic"  # "cubic" (Catmull-Rom, 4 taps) | "linear" (2 taps)
    # The stored modes: float16 | float32 | quantized (leading modes int8, the rest 4-bit,
    # as many int8 as `max_trunk_mb` allows).
    table_dtype: str = "float16"
    chunk_bytes: int = 1 << 27  # float64 column block of the data held at once by the POD
    max_seconds: float = 3600.0  # checked between stages; the mode scan is cut when exceeded
    # The trunk is a table of every mode on the receivers x output times: its bytes grow with
    # the mode count, and this caps them (the graph is served and versioned in git).
    max_trunk_mb: float = 64.0
    # Largest single tensor of the table (each becomes one file beside the trunk graph).
    max_file_mb: float = 9.0
    # From the data (saved with every checkpoint).
    dim: int = 2
    n_sources: int = 0
    room_size: tuple[float, ...] = field(default_factory=tuple)
    grid_lo: tuple[float, ...] = field(default_factory=tuple)  # first receiver node, metres
    grid_step: tuple[float, ...] = field(default_factory=tuple)  # node spacing, metres
    grid_counts: tuple[int, ...] = field(default_factory=tuple)
    n_receivers: int = 0  # table rows = n_receivers * n_times
    int8_modes: int = 0  # quantized tables: leading modes stored as int8, the rest 4-bit
    t0: float = 0.0
    dt: float = 0.0005
    n_times: int = 101
    p_scale: float = 1.0  # RMS training pressure, Pa (for reference; the branch is in Pa)

    def __post_init__(self) -> None:
        if self.n_modes < 1 or self.mode_step < 1:
            raise ValueError("n_modes and mode_step must be >= 1")
        if self.max_trunk_mb <= 0:
            raise ValueError(f"max_trunk_mb must be positive, got {self.max_trunk_mb}")
        if self.mode_tolerance < 1.0:
            raise ValueError(f"mode_tolerance must be >= 1, got {self.mode_tolerance}")
        if self.branch_kernel != "thin_plate_spline":
            raise ValueError(f"branch_kernel must be 'thin_plate_spline', got {self.branch_kernel}")
        if self.branch_smoothing < 0:
            raise ValueError("branch_smoothing must be >= 0")
        if self.time_interpolation not in ("cubic", "linear"):
            raise ValueError(
                f"time_interpolation must be 'cubic' or 'linear', got {self.time_interpolation}"
            )
        if self.table_dtype not in TABLE_BYTES:
            raise ValueError(
                f"table_dtype must be one of {sorted(TABLE_BYTES)}, got {self.table_dtype}"
            )
        if self.max_file_mb <= 0:
            raise ValueError(f"max_file_mb must be positive, got {self.max_file_mb}")
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim}")


# -- the two graphs ---------------------------------------------------------------------------


def _tps(d2: torch.Tensor) -> torch.Tensor:
    """Thin-plate kernel r^2 log r written on r^2 (0.5 r^2 log r^2), 0 at r = 0."""
    return 0.5 * d2 * torch.log(torch.clamp(d2, min=1e-30))


class PodBranch(nn.Module):
    """source (S, dim) metres -> (S, p + 1) coefficients, Pa: a thin-plate spline per mode."""

    centres: torch.Tensor  # (C, dim) training sources, in the unit coordinates below
    shift: torch.Tensor  # (dim,) metres subtracted before scaling
    scale: torch.Tensor  # () metres per unit
    weights: torch.Tensor  # (C, p + 1) kernel weights, Pa
    poly: torch.Tensor  # (dim + 1, p + 1) weights of [1, x, ...], Pa

    def __init__(self, dim: int, n_centres: int, width: int) -> None:
        super().__init__()
        self.register_buffer("centres", torch.zeros(n_centres, dim))
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("weights", torch.zeros(n_centres, width))
        self.register_buffer("poly", torch.zeros(dim + 1, width))

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        # Unit coordinates keep the kernel values O(1), so float32 loses nothing that float64
        # solved for.
        s = (source - self.shift) / self.scale  # (S, dim)
        d2 = ((s[:, None, :] - self.centres[None, :, :]) ** 2).sum(-1)  # (S, C)
        ones = torch.ones_like(s[:, :1])  # (S, 1)
        return _tps(d2) @ self.weights + torch.cat([ones, s], dim=1) @ self.poly  # (S, p + 1)


@dataclass(frozen=True)
class TablePart:
    """One column block of the trunk's table: modes [first, first + count) in one tensor."""

    kind: str  # float16 | float32 | int8 | int4 (two codes a byte)
    first: int
    count: int

    @property
    def width(self) -> int:
        """Columns of the stored tensor."""
        return (self.count + 1) // 2 if self.kind == "int4" else self.count


def table_layout(cfg: PodConfig, n_modes: int) -> list[TablePart]:
    """The table's tensors: by kind, then split so no tensor exceeds `max_file_mb`."""
    rows = cfg.n_receivers * cfg.n_times
    if cfg.table_dtype == "quantized":
        k8 = min(cfg.int8_modes, n_modes)
        blocks = [("int8", 0, k8, 1.0), ("int4", k8, n_modes - k8, 0.5)]
    else:
        blocks = [(cfg.table_dtype, 0, n_modes, TABLE_BYTES[cfg.table_dtype])]
    parts: list[TablePart] = []
    for kind, first, count, per_value in blocks:
        # Whole bytes per row: an int4 tensor holds an even number of modes but its last.
        most = max(1, int(cfg.max_file_mb * 2**20 // max(1.0, rows * per_value)))
        most = max(2, most - most % 2) if kind == "int4" else most
        for start in range(first, first + count, most):
            parts.append(TablePart(kind, start, min(most, first + count - start)))
    return parts


class PodTrunk(nn.Module):
    """points (N, dim + 1) = (x, [y, [z,]] t) -> (N, p + 1) = [phi_1..phi_p, 1].

    The modes sit in a table with one row per (air receiver, time step): row = receiver * T +
    step, so one Gather per tensor and interpolation tap fetches all p modes of that tap.
    `node_receiver` maps every node of the receiver grid to its receiver (the nearest one
    for a node inside furniture), so the stencil of a point next to furniture mixes air
    values only.
    """

    node_receiver: torch.Tensor  # (G,) int64 receiver of each grid node
    scales: torch.Tensor  # (R, 2) float16 row scales of the int8 and int4 parts (quantized)
    nibbles: torch.Tensor  # (256, 2) the two signed 4-bit codes of each byte value
    lo: torch.Tensor  # (dim,) first grid node, metres
    step: torch.Tensor  # (dim,) node spacing, metres

    def __init__(self, cfg: PodConfig, n_modes: int) -> None:
        super().__init__()
        self.dim = cfg.dim
        self.counts = tuple(int(c) for c in cfg.grid_counts)
        self.n_times = cfg.n_times
        self.t0, self.dt = cfg.t0, cfg.dt
        self.cubic = cfg.time_interpolation == "cubic"
        self.n_modes = n_modes
        self.parts = table_layout(cfg, n_modes)
        rows = cfg.n_receivers * cfg.n_times
        dtypes = {
            "float32": torch.float32,
            "float16": torch.float16,
            "int8": torch.int8,
            "int4": torch.uint8,
        }
        for i, part in enumerate(self.parts):
            self.register_buffer(
                f"table_{i}", torch.zeros(rows, part.width, dtype=dtypes[part.kind])
            )
        quantized = cfg.table_dtype == "quantized"
        self.register_buffer(
            "scales", torch.zeros(rows if quantized else 0, 2, dtype=torch.float16)
        )
        # The two 4-bit codes of every byte value, high nibble first, less their offset of 8.
        byte = torch.arange(256)
        self.register_buffer("nibbles", torch.stack([byte // 16, byte % 16], dim=1).float() - 8.0)
        self.register_buffer("node_receiver", torch.zeros(math.prod(self.counts), dtype=torch.long))
        self.register_buffer("lo", torch.tensor(cfg.grid_lo, dtype=torch.float32))
        self.register_buffer("step", torch.tensor(cfg.grid_step, dtype=torch.float32))
        # Node strides of each axis of the grid (C order).
        strides, acc = [], 1
        for c in reversed(self.counts):
            strides.append(acc)
            acc *= c
        self.strides = tuple(reversed(strides))

    def tables(self) -> list[torch.Tensor]:
        return [getattr(self, f"table_{i}") for i in range(len(self.parts))]

    def _axis(self, g: torch.Tensor, upper: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fractional node coordinate (N,) -> lower node index (N,) int64 and fraction (N,).

        Clamped to the grid: between the outermost receivers and a wall the table is held
        constant rather than extrapolated, which cannot blow up.
        """
        g = torch.clamp(g, min=0.0, max=float(upper))
        i0 = torch.clamp(torch.floor(g), max=float(max(upper - 1, 0)))
        return i0.long(), g - i0

    def _interpolate(self, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Table rows (N, K) int64 and their weights (N, K) -> sum_k w_k row_k (N, p) float32.

        A quantized row's scale multiplies all its codes, so it is folded into the weights
        (N, K) rather than into the codes (N, K, p): the decoded codes go straight into one
        batched product per tensor.
        """
        if self.scales.numel():
            scales = self.scales[rows].float()  # (N, K, 2) of the int8 and int4 parts
            weights_of = {"int8": weights * scales[:, :, 0], "int4": weights * scales[:, :, 1]}
        else:
            weights_of = {part.kind: weights for part in self.parts}
        out = []
        for part, table in zip(self.parts, self.tables(), strict=True):
            raw = table[rows]  # (N, K, width)
            if part.kind == "int4":
                pair = self.nibbles[raw.long()]  # (N, K, width, 2): one lookup decodes a byte
                codes = pair.flatten(2)[:, :, : part.count]  # (N, K, count)
            else:
                codes = raw.float()  # (N, K, count)
            w = weights_of[part.kind][:, None, :]  # (N, 1, K)
            out.append(torch.bmm(w, codes).squeeze(1))  # (N, count)
        return torch.cat(out, dim=1) if len(out) > 1 else out[0]  # (N, p)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        n = points.shape[0]
        g = (points[:, : self.dim] - self.lo) / self.step  # (N, dim) in node units
        base = torch.zeros(n, dtype=torch.long)
        fracs: list[torch.Tensor] = []
        for a in range(self.dim):
            i0, f = self._axis(g[:, a], self.counts[a] - 1)
            base = base + i0 * self.strides[a]
            fracs.append(f)
        nodes, w_space = [], []
        for corner in range(2**self.dim):
            offset, weight = 0, torch.ones(n)
            for a in range(self.dim):
                high = (corner >> a) & 1
                # A single node on an axis: its fraction is 0, so the far corner weighs 0
                # and keeps the near node's index (in range).
                offset += self.strides[a] * high * (self.counts[a] > 1)
                weight = weight * (fracs[a] if high else 1.0 - fracs[a])
            nodes.append(base + offset)
            w_space.append(weight)
        # (N, C) first table row of each stencil corner, C = 2^dim.
        first = self.node_receiver[torch.stack(nodes, dim=1)] * self.n_times
        j0, ft = self._axis((points[:, self.dim] - self.t0) / self.dt, self.n_times - 1)
        steps, w_time = self._time_taps(j0, ft)  # (N, K) step indices and weights
        # All C * K taps in one gather per table tensor: a few large ops, not hundreds of
        # small ones (onnxruntime's per-op cost dominated 500-point queries).
        rows = (first[:, :, None] + steps[:, None, :]).reshape(n, -1)  # (N, C*K)
        weights = torch.stack(w_space, dim=1)[:, :, None] * w_time[:, None, :]  # (N, C, K)
        modes = self._interpolate(rows, weights.reshape(n, -1))  # (N, p)
        return torch.cat([modes, torch.ones(n, 1)], dim=1)  # (N, p + 1)

    def _time_taps(self, j0: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower step (N,) and fraction (N,) -> tap steps (N, K) int64 and weights (N, K)."""
        last = self.n_times - 1
        if not self.cubic or last < 1:
            steps = torch.stack([j0, torch.clamp(j0 + 1, max=last)], dim=1)
            return steps, torch.stack([1.0 - f, f], dim=1)
        # Catmull-Rom: exact at the steps, C1, and it reproduces quadratics; the taps beyond
        # the ends are clamped (a constant continuation), as numpy's "nearest" padding.
        f2, f3 = f * f, f * f * f
        weights = torch.stack(
            [
                -0.5 * f3 + f2 - 0.5 * f,
                1.5 * f3 - 2.5 * f2 + 1.0,
                -1.5 * f3 + 2.0 * f2 + 0.5 * f,
                0.5 * f3 - 0.5 * f2,
            ],
            dim=1,
        )
        steps = torch.stack([torch.clamp(j0 + k, min=0, max=last) for k in (-1, 0, 1, 2)], dim=1)
        return steps, weights


# -- fitting ------------------------------------------------------------------------------------


@dataclass
class PodFit:
    """What `fit_pod` returns: the two graphs, their config and how the fit went."""

    branch: PodBranch
    trunk: PodTrunk
    config: PodConfig
    report: dict[str, Any]


def receiver_grid(
    receivers: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[int, ...], NDArray[np.int64]]:
    """The box grid the receivers sit on: lo (dim,), step (dim,), counts, and each receiver's
    node index (P, dim). Raises if the receivers are not on one regular grid."""
    lo = receivers.min(axis=0)
    hi = receivers.max(axis=0)
    dim = receivers.shape[1]
    steps, counts = np.zeros(dim), []
    for a in range(dim):
        gaps = np.diff(np.unique(np.round(receivers[:, a], 9)))
        step = float(gaps.min()) if len(gaps) else 1.0
        steps[a] = step
        counts.append(round((hi[a] - lo[a]) / step) + 1)
    idx = np.rint((receivers - lo) / steps).astype(np.int64)  # (P, dim)
    off = np.abs((receivers - lo) / steps - idx).max()
    if off > GRID_TOLERANCE:
        raise ValueError(
            f"receivers are not on a regular grid (a receiver is {off:.3g} steps off a node): "
            "the table trunk needs the receiver grid of `output.receiver_spacing`"
        )
    return lo, steps, tuple(counts), idx


def _gram(x: NDArray[np.float32], chunk_cols: int, progress: bool) -> NDArray[np.float64]:
    """X X^T in float64 for X (S, M), over column blocks so X is never copied whole."""
    s, m = x.shape
    gram = np.zeros((s, s))
    for start in tqdm(range(0, m, chunk_cols), desc="POD gram", unit="blk", disable=not progress):
        block = x[:, start : start + chunk_cols].astype(np.float64)  # (S, m_blk)
        gram += block @ block.T
    return gram


def _modes(
    x: NDArray[np.float32], proj: NDArray[np.float64], chunk_cols: int, progress: bool
) -> NDArray[np.float32]:
    """proj (p, S) @ X (S, M) -> (p, M) float32, over column blocks."""
    out = np.empty((proj.shape[0], x.shape[1]), dtype=np.float32)
    for start in tqdm(
        range(0, x.shape[1], chunk_cols), desc="POD modes", unit="blk", disable=not progress
    ):
        block = x[:, start : start + chunk_cols].astype(np.float64)
        out[:, start : start + chunk_cols] = proj @ block
    return out


def tps_fit(
    centres: NDArray[np.float64], values: NDArray[np.float64], smoothing: float = 0.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Thin-plate spline with a linear term through (centres (C, dim), values (C, k)):
    kernel weights (C, k) and polynomial weights (dim + 1, k), by one dense solve."""
    c, dim = centres.shape
    d2 = ((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1)  # (C, C)
    kernel = 0.5 * d2 * np.log(np.maximum(d2, 1e-300))
    kernel[d2 == 0] = 0.0
    poly = np.concatenate([np.ones((c, 1)), centres], axis=1)  # (C, dim + 1)
    system = np.zeros((c + dim + 1, c + dim + 1))
    system[:c, :c] = kernel + smoothing * np.eye(c)
    system[:c, c:] = poly
    system[c:, :c] = poly.T
    rhs = np.concatenate([values, np.zeros((dim + 1, values.shape[1]))], axis=0)
    if np.linalg.matrix_rank(poly) < dim + 1:
        # Centres on one line or plane (a lattice one layer thick): the linear term along the
        # flat axes is undetermined, and the minimum-norm solution leaves it at zero.
        sol = np.linalg.lstsq(system, rhs, rcond=None)[0]
    else:
        sol = np.linalg.solve(system, rhs)  # (C + dim + 1, k)
    return sol[:c], sol[c:]


@dataclass
class _Spline:
    """The fitted spline in float64, to score mode counts without building graphs."""

    centres: NDArray[np.float64]  # (C, dim) unit coordinates
    w_kernel: NDArray[np.float64]  # (C, k)
    w_poly: NDArray[np.float64]  # (dim + 1, k)
    shift: NDArray[np.float64]  # (dim,)
    scale: float

    def __call__(self, sources: NDArray[np.float64]) -> NDArray[np.float64]:
        unit = (sources - self.shift) / self.scale  # (Q, dim)
        d2 = ((unit[:, None, :] - self.centres[None, :, :]) ** 2).sum(-1)  # (Q, C)
        kernel = 0.5 * d2 * np.log(np.maximum(d2, 1e-300))
        kernel[d2 == 0] = 0.0
        ones = np.ones((len(unit), 1))
        return kernel @ self.w_kernel + np.concatenate([ones, unit], axis=1) @ self.w_poly


def _unit_coordinates(
    sources: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    shift = sources.mean(axis=0)
    scale = float(np.abs(sources - shift).max()) or 1.0
    return (sources - shift) / scale, shift, scale


def _room_size(split: AcousticSplit) -> tuple[float, ...]:
    """The room's bounding box, from the built room every split records (scene or inline)."""
    room = split.attrs.get("room")
    spec = json.loads(room) if isinstance(room, str | bytes) else split.config["room"]
    return tuple(float(v) for v in spec["size"])


def _node_receiver(node_index: NDArray[np.int64], counts: tuple[int, ...]) -> NDArray[np.int64]:
    """(G,) the receiver of every grid node: its own, or the nearest one for a node without a
    receiver (inside furniture)."""
    owner = np.full(counts, -1, dtype=np.int64)
    owner[tuple(node_index.T)] = np.arange(len(node_index))
    if (owner < 0).any():
        _, nearest = ndimage.distance_transform_edt(owner < 0, return_indices=True)
        owner = owner[tuple(nearest)]
    return owner.reshape(-1)


def _row_bytes(cfg: PodConfig, n_modes: int, int8_modes: int = 0) -> float:
    """Bytes of one table row (one receiver at one time step)."""
    if cfg.table_dtype != "quantized":
        return n_modes * TABLE_BYTES[cfg.table_dtype]
    return int8_modes + (n_modes - int8_modes + 1) // 2 + SCALE_BYTES


def _int8_modes(cfg: PodConfig, n_modes: int, rows: int) -> int:
    """As many leading int8 modes as the trunk's byte cap allows."""
    budget = cfg.max_trunk_mb * 2**20 / rows
    return max(k for k in range(n_modes + 1) if k == 0 or _row_bytes(cfg, n_modes, k) <= budget)


def quantize(
    table: NDArray[np.float32], int8_modes: int
) -> tuple[NDArray[np.int8], NDArray[np.uint8], NDArray[np.float16]]:
    """(R, p) modes -> int8 codes of the leading modes (R, k), packed 4-bit codes of the rest
    (R, ceil((p - k) / 2)), and the row scales (R, 2) float16 of the two parts.

    Each part is scaled by its own largest magnitude in the row (int8: to 127, int4: to 7), so
    a row's codes use the whole range whatever the row's level (the field decays over time
    and with distance); the scale is rounded up to a float16 and is the one used to code, so
    every value decodes to within half a code.
    """
    rows, p = table.shape
    scales = np.zeros((rows, 2), dtype=np.float16)
    head, tail = table[:, :int8_modes], table[:, int8_modes:]
    codes8 = np.zeros((rows, int8_modes), dtype=np.int8)
    codes4 = np.zeros((rows, (p - int8_modes + 1) // 2), dtype=np.uint8)
    for col, block, top in ((0, head, 127), (1, tail, 7)):
        if block.shape[1] == 0:
            continue
        exact = np.abs(block).max(axis=1) / top  # (R,)
        scale = exact.astype(np.float16)
        # Rounded up to a float16, so the row's largest value never needs a clipped code.
        scale = np.where(scale < exact, np.nextafter(scale, np.float16(np.inf)), scale)
        scales[:, col] = scale
        safe = np.where(scale > 0, scale.astype(np.float32), 1.0)[:, None]
        codes = np.clip(np.rint(block / safe), -top, top)  # (R, count)
        if col == 0:
            codes8[:] = codes.astype(np.int8)
        else:
            nibbles = (codes + 8).astype(np.uint8)  # 1..15; 8 is zero
            if nibbles.shape[1] % 2:
                nibbles = np.concatenate([nibbles, np.full((rows, 1), 8, np.uint8)], axis=1)
            codes4[:] = nibbles[:, 0::2] * 16 + nibbles[:, 1::2]
    return codes8, codes4, scales


def dequantize(
    codes8: NDArray[np.int8], codes4: NDArray[np.uint8], scales: NDArray[np.float16], n_modes: int
) -> NDArray[np.float32]:
    """The (R, p) modes that `quantize`'s codes stand for, as the trunk graph decodes them."""
    step = scales.astype(np.float32)  # (R, 2)
    nibbles = np.stack([codes4 // 16, codes4 % 16], axis=2).reshape(len(codes4), -1)  # (R, 2w)
    tail = (nibbles[:, : n_modes - codes8.shape[1]].astype(np.float32) - 8.0) * step[:, 1:]
    return np.concatenate([codes8.astype(np.float32) * step[:, :1], tail], axis=1)


def _fill_table(trunk: PodTrunk, cfg: PodConfig, table: NDArray[np.float32]) -> None:
    """Store (R, p) float32 modes in the trunk's tensors, as its layout says."""
    if cfg.table_dtype == "quantized":
        codes8, codes4, scales = quantize(table, cfg.int8_modes)
        trunk.scales.copy_(torch.as_tensor(scales))
        for part, tensor in zip(trunk.parts, trunk.tables(), strict=True):
            if part.kind == "int8":
                tensor.copy_(torch.as_tensor(codes8[:, part.first : part.first + part.count]))
            else:
                col = (part.first - cfg.int8_modes) // 2
                tensor.copy_(torch.as_tensor(codes4[:, col : col + part.width]))
        return
    for part, tensor in zip(trunk.parts, trunk.tables(), strict=True):
        tensor.copy_(torch.as_tensor(table[:, part.first : part.first + part.count]))


def fit_pod(
    train: AcousticSplit,
    val: AcousticSplit | None = None,
    cfg: PodConfig | None = None,
    progress: bool = True,
) -> PodFit:
    """Fit the POD-DeepONet of `train`; `val` chooses the mode count. Physical units in,
    pascals out. Deterministic: the same data give the same graphs."""
    cfg = cfg or PodConfig()
    started = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - started - sum(timings.values()), 2)

    s, n_t, n_r = train.pressure.shape
    dim = train.sources.shape[1]
    lo, step, counts, node_index = receiver_grid(train.receivers)
    times = np.asarray(train.times, dtype=np.float64)
    dt = float(times[1] - times[0]) if n_t > 1 else 1.0
    if n_t > 1 and np.abs(np.diff(times) - dt).max() > 1e-6 * dt:
        raise ValueError("the table trunk needs evenly spaced output times")
    x = train.pressure.reshape(s, n_t * n_r)  # (S, T*P) view, time-major as `pressure`
    chunk_cols = max(1, cfg.chunk_bytes // (8 * s))

    # POD by the method of snapshots: X X^T = U L U^T, modes = L^-1/2 U^T X (orthonormal).
    gram = _gram(x, chunk_cols, progress)
    lam, vec = np.linalg.eigh(gram)
    lam, vec = lam[::-1], vec[:, ::-1]  # descending energy
    # Modes below float32 round-off of the leading one carry no signal, only noise.
    usable = int((lam > lam[0] * 1e-12).sum())
    rows = n_r * n_t
    room_for = int(
        (cfg.max_trunk_mb * 2**20 / rows - _row_bytes(cfg, 0)) // TABLE_BYTES[cfg.table_dtype]
    )
    p_max = max(1, min(cfg.n_modes, usable, room_for))
    sv = np.sqrt(lam[:p_max])
    coeffs = vec[:, :p_max] * sv  # (S, p) training coefficients, Pa
    modes = _modes(x, (vec[:, :p_max] / sv).T, chunk_cols, progress)  # (p, T*P)
    lap("pod")

    unit, shift, scale = _unit_coordinates(np.asarray(train.sources, dtype=np.float64))
    # Modes are unit vectors over T*P entries; scaled to unit RMS per entry they sit well in
    # float16, and the branch carries the inverse scale.
    entry_scale = math.sqrt(n_t * n_r)
    w_kernel, w_poly = tps_fit(unit, coeffs / entry_scale, cfg.branch_smoothing)
    lap("branch")

    p_used = p_max
    scan: list[dict[str, float]] = []
    if val is not None and len(val.sources) > 0:
        spline = _Spline(unit, w_kernel, w_poly, shift, scale)
        p_used, scan = _choose_modes(cfg, val, modes, spline, entry_scale, p_max, started, progress)
    lap("select")

    full = dataclasses.replace(
        cfg,
        dim=dim,
        n_sources=s,
        room_size=_room_size(train),
        grid_lo=tuple(float(v) for v in lo),
        grid_step=tuple(float(v) for v in step),
        grid_counts=counts,
        n_receivers=n_r,
        t0=float(times[0]),
        dt=dt,
        n_times=n_t,
        # From the Gram's trace: no float64 copy of the whole data.
        p_scale=float(np.sqrt(np.trace(gram) / x.size)),
        n_modes=p_used,
    )
    if full.table_dtype == "quantized":
        full = dataclasses.replace(full, int8_modes=_int8_modes(full, p_used, rows))
    branch = PodBranch(dim, s, p_used + 1)
    branch.centres.copy_(torch.as_tensor(unit, dtype=torch.float32))
    branch.shift.copy_(torch.as_tensor(shift, dtype=torch.float32))
    branch.scale.fill_(scale)
    # The last column is the bias b0 of the DeepONet form: the POD has none.
    branch.weights[:, :p_used].copy_(torch.as_tensor(w_kernel[:, :p_used], dtype=torch.float32))
    branch.poly[:, :p_used].copy_(torch.as_tensor(w_poly[:, :p_used], dtype=torch.float32))
    trunk = PodTrunk(full, p_used)
    trunk.node_receiver.copy_(torch.as_tensor(_node_receiver(node_index, counts)))
    # (p, T * P) time-major -> (P * T, p): row = receiver * T + step.
    table = (modes[:p_used] * entry_scale).reshape(p_used, n_t, n_r).transpose(2, 1, 0)
    _fill_table(trunk, full, np.ascontiguousarray(table).reshape(rows, p_used))
    lap("table")
    report = {
        "modes_available": p_max,
        "modes_used": p_used,
        "energy_kept": float(lam[:p_used].sum() / lam.sum()),
        "val_scan": scan,
        "seconds": timings,
        "trunk_table_bytes": sum(t.numel() * t.element_size() for t in trunk.tables())
        + int(trunk.scales.numel() * trunk.scales.element_size()),
        "int8_modes": full.int8_modes,
    }
    return PodFit(branch.eval(), trunk.eval(), full, report)


def _choose_modes(
    cfg: PodConfig,
    val: AcousticSplit,
    modes: NDArray[np.float32],
    spline: _Spline,
    entry_scale: float,
    p_max: int,
    started: float,
    progress: bool,
) -> tuple[int, list[dict[str, float]]]:
    """The fewest modes whose mean val relative L2 (at the training receivers and times) is
    within `mode_tolerance` of the best count tried, and the scan itself.

    With orthonormal modes V and predicted coefficients c, ||y - c V||^2 = ||y||^2 - 2 c.(V y)
    + ||c||^2, so one projection of the val fields onto all modes scores every count.
    """
    y = val.pressure.reshape(len(val.sources), -1)  # (V, T*P)
    chunk_cols = max(1, cfg.chunk_bytes // (8 * max(len(y), modes.shape[0])))
    proj = np.zeros((len(y), p_max))  # (V, p): V y for each val field
    for start in tqdm(
        range(0, y.shape[1], chunk_cols), desc="val projection", unit="blk", disable=not progress
    ):
        cols = slice(start, start + chunk_cols)
        proj += y[:, cols].astype(np.float64) @ modes[:, cols].T.astype(np.float64)
    norm2 = np.square(y, dtype=np.float64).sum(axis=1)  # (V,)
    pred = spline(np.asarray(val.sources, dtype=np.float64)) * entry_scale  # (V, p)
    counts = sorted({*range(cfg.mode_step, p_max, cfg.mode_step), p_max})
    quantized = cfg.table_dtype == "quantized"
    scan = []
    for p in tqdm(counts, desc="mode counts", disable=not (progress and quantized)):
        err2 = norm2 - 2 * (pred[:, :p] * proj[:, :p]).sum(1) + (pred[:, :p] ** 2).sum(1)
        rel = float(np.mean(np.sqrt(np.maximum(err2, 0.0) / norm2)))
        row: dict[str, float] = {"modes": p, "val_rel_l2": rel}
        if quantized:
            # More modes leave fewer int8 ones under the byte cap: score what will be stored.
            k8 = _int8_modes(cfg, p, modes.shape[1])
            stored = dequantize(*quantize(modes[:p].T * entry_scale, k8), p)  # (T*P, p)
            field = (pred[:, :p] / entry_scale).astype(np.float32) @ stored.T  # (V, T*P)
            err = np.linalg.norm(field - y, axis=1) / np.sqrt(norm2)
            row.update(float_val_rel_l2=rel, val_rel_l2=float(err.mean()), int8_modes=k8)
        scan.append(row)
        if time.monotonic() - started > cfg.max_seconds:
            break  # out of time: choose among the counts scored so far
    best = min(r["val_rel_l2"] for r in scan)
    chosen = next(r for r in scan if r["val_rel_l2"] <= cfg.mode_tolerance * best)
    return int(chosen["modes"]), scan


# -- checkpoints, export, numpy interface ----------------------------------------------------


def save_pod(path: str | Path, fit: PodFit, extra: dict[str, Any] | None = None) -> Path:
    """Write the fitted model with its config (atomically: a reader never sees half a file)."""
    path = Path(path)
    payload = {
        "family": "deeponet",
        "kind": "pod",
        "model_config": to_dict(fit.config),
        "branch": fit.branch.state_dict(),
        "trunk": fit.trunk.state_dict(),
        "report": fit.report,
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_pod(path: str | Path) -> tuple[PodFit, dict[str, Any]]:
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
    if ckpt.get("kind") != "pod":
        raise ValueError(f"{path} is not a POD-DeepONet checkpoint")
    return pod_from(ckpt), ckpt


def pod_from(ckpt: dict[str, Any]) -> PodFit:
    """The fitted model held by a loaded POD checkpoint."""
    cfg = from_dict(PodConfig, ckpt["model_config"], "model_config")
    branch_state, trunk_state = ckpt["branch"], ckpt["trunk"]
    n_centres, width = branch_state["weights"].shape
    branch = PodBranch(cfg.dim, n_centres, width)
    branch.load_state_dict(branch_state)
    trunk = PodTrunk(cfg, cfg.n_modes)
    trunk.load_state_dict(trunk_state)
    return PodFit(branch.eval(), trunk.eval(), cfg, ckpt.get("report", {}))


def export_pod_graphs(fit: PodFit, out_dir: str | Path) -> dict[str, Path]:
    """branch.onnx and trunk.onnx, served as any DeepONet's (training/acoustics/graphs.py);
    the trunk's table tensors go to data files beside it (`trunk.table_<i>.bin`, ...)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = export_factors(fit.branch, fit.trunk, fit.config.room_size, out)
    externalize(paths["trunk"], min_bytes=TABLE_FILE_MIN_BYTES)
    return paths


class TorchPod:
    """A fitted POD-DeepONet behind the numpy interface of the exported graphs (FieldModel)."""

    def __init__(self, fit: PodFit) -> None:
        self.fit = fit

    @torch.no_grad()
    def coefficients(self, sources: np.ndarray) -> np.ndarray:
        return self.fit.branch(torch.as_tensor(sources, dtype=torch.float32)).numpy()

    @torch.no_grad()
    def basis(self, points: np.ndarray) -> np.ndarray:
        return self.fit.trunk(torch.as_tensor(points, dtype=torch.float32)).numpy()
