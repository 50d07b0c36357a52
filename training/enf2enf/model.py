"""enf2enf after Catalani et al. (2025): equivariant neural fields from geometry to fields.

A geometry becomes a latent point cloud: L latents at fixed positions p_i on a grid over the
body region (normalised [-1, 1] coordinates), each with a context vector c_i. The contexts are
found by auto-decoding: starting from a learned shared initialisation, K gradient steps
c <- c - alpha * grad_c(loss) with learned per-dimension step sizes alpha (Meta-SGD / CAVIA)
make an SDF neural field reproduce the signed distance at the encoder points. Meta-training
backpropagates through those steps (second order).

The field decoder appends the global conditions (an airfoil's angle of attack and speed, a
cell's load; min-max scaled) to every context, z-scores them, mixes the latents with
self-attention, then lets every query point cross-attend to all latents through its relative
position x - p_i (random Fourier features, value modulation, Gaussian window). The query
coordinates carry the signed distance as a third coordinate.

Nothing here knows the problem: field and condition counts come from the dataset, and two
optional output transforms encode physics a problem may have (`field_scale`: a field is
proportional to a condition, as velocity to the free-stream speed or stress to the load;
`superposition`: potential flow is linear in the free-stream direction).

Every normalisation (coordinates, SDF, conditions, latent z-score, field z-score) is a buffer
inside the module, so the exported graphs take physical units in and give physical units out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

ALPHA_MIN, ALPHA_MAX = 1e-6, 10.0  # inner-loop step-size clamp, as the authors' code
N_SHAPE = 3  # surface shape per query: curvature, outward normal (x, y)
N_LOCAL = N_SHAPE + 1  # what the output MLP gets: those three and their weight


@dataclass
class Enf2EnfConfig:
    """Hyperparameters (saved with every checkpoint). Defaults are the configuration verified
    on a GPU (configs/airfoil-enf2enf.yaml); the paper's widths are 128 (encoder) and 256
    (decoder). n_fields and n_conditions are the dataset's (training fills them in)."""

    n_fields: int = 3
    n_conditions: int = 2

    latent_grid: int = 3  # latents on a latent_grid x latent_grid grid (paper: 3 x 3)
    latent_dim: int = 16  # context vector size (paper: 8)
    # Latent grid extent in normalised coordinates (x0, x1, y0, y1): over the bodies, which
    # span x in [0, ~1.3] chords, i.e. [-0.5, ~0.8] once the box [-0.5, 1.5] maps to [-1, 1].
    latent_bbox: tuple[float, ...] = (-0.55, 0.75, -0.35, 0.35)
    window_sigma: float = 0.0  # Gaussian window width (normalised); 0 = 2 / latent_grid
    rff_seed: int = 0  # seed of the fixed random Fourier feature matrices
    # Geometry encoder: SDF neural field + meta-learned inner loop.
    enc_hidden: int = 32
    enc_heads: int = 2
    enc_rff_scale: float = 2.0
    inner_steps: int = 3
    inner_lr: float = 5.0  # initial per-dimension step size alpha (the authors' 5.0)
    # Field decoder.
    dec_hidden: int = 128
    dec_heads: int = 2
    dec_blocks: int = 2  # latent self-attention blocks
    # RFF scales of x - p_i (normalised units) for queries and value modulation: 1.0 as the
    # authors' AirfRANS config; 2/4 and 4/10 trained markedly worse here.
    dec_rff_scale_q: float = 1.0
    dec_rff_scale_v: float = 1.0
    # Random Fourier features of x - p_i in the decoder (0 = dec_hidden, the paper's). A
    # (point, latent) pair pays features x dec_hidden for the relative MLPs' first layer.
    dec_rff_features: int = 0
    # One relative hidden layer serves the query and the value modulation (the paper has one
    # MLP each): a pair then pays 2 dec_hidden^2, not 3, and one activation, not two.
    dec_shared_relative: bool = False
    out_width: int = 128
    # Per field, the index of the condition it is proportional to (-1: none); empty = none.
    # The head predicts field / condition and the graph multiplies back (a deviation from the
    # paper, which appends conditions only): potential-flow velocities scale with the speed,
    # small-strain stresses with the load.
    field_scale: tuple[int, ...] = ()
    # Potential flow is linear in the free-stream direction: (u, v) / speed =
    # cos(a) A(x) + sin(a) B(x), with fields 0, 1 the velocity and condition 0 the angle of
    # attack in degrees. When set, the head outputs A, B and the other fields and the graph
    # combines them (a deviation from the paper's plain output MLP).
    superposition: bool = False
    # The decoder's output MLP also gets, per query, the boundary's curvature and outward
    # normal at the nearest surface point (geometry.polylines.surface_features), exactly,
    # weighted by exp(-sdf / shape_length): the latents carry the shape only to ~0.02 cell
    # lengths, and a stress concentration follows the local curvature. Not through the
    # relative-position features: the normal jumps across a medial axis, and mixed into every
    # Fourier feature it left the smooth displacements twice as far off after 1,000 steps
    # (measured). A deviation from the paper, whose decoder gets the latents and the query
    # position only.
    surface_shape: bool = False
    shape_length: float = 0.05  # dataset length units

    def __post_init__(self) -> None:
        names = ("n_fields", "latent_grid", "latent_dim", "enc_hidden", "dec_hidden", "out_width")
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.dec_rff_features < 0 or self.dec_rff_features % 2:
            raise ValueError("dec_rff_features must be 0 (= dec_hidden) or a positive even number")
        if self.inner_steps < 0:
            raise ValueError("inner_steps must be >= 0")
        if self.enc_hidden % self.enc_heads or self.dec_hidden % self.dec_heads:
            raise ValueError("enc_hidden / dec_hidden must be divisible by their head counts")
        self.field_scale = tuple(int(v) for v in self.field_scale)
        if self.field_scale and len(self.field_scale) != self.n_fields:
            raise ValueError(f"field_scale needs one entry per field ({self.n_fields})")
        if any(not -1 <= v < self.n_conditions for v in self.field_scale):
            raise ValueError(
                f"field_scale entries must be -1 or a condition index < {self.n_conditions}"
            )
        if self.superposition and (
            self.n_fields < 2 or self.n_conditions < 1 or self.field_scale[:2] != (1, 1)
        ):
            raise ValueError(
                "superposition needs fields 0, 1 = velocity scaled by condition 1 (speed), "
                "condition 0 = the angle of attack: field_scale [1, 1, ...]"
            )
        if len(self.latent_bbox) != 4:
            raise ValueError(f"latent_bbox must be (x0, x1, y0, y1), got {self.latent_bbox}")

    @property
    def n_latents(self) -> int:
        return self.latent_grid**2

    @property
    def sigma(self) -> float:
        return self.window_sigma if self.window_sigma > 0 else 2.0 / self.latent_grid


def latent_positions(cfg: Enf2EnfConfig) -> torch.Tensor:
    """(L, 2) fixed latent positions on the grid, normalised coordinates, x-major."""
    x0, x1, y0, y1 = cfg.latent_bbox
    n = cfg.latent_grid
    xs = torch.linspace(x0, x1, n) if n > 1 else torch.tensor([(x0 + x1) / 2])
    ys = torch.linspace(y0, y1, n) if n > 1 else torch.tensor([(y0 + y1) / 2])
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")  # (n, n) each
    return torch.stack([gx, gy], dim=-1).reshape(-1, 2)  # (L, 2)


class RFF(nn.Module):
    """Fixed random Fourier features [sin(2 pi x B), cos(2 pi x B)], B ~ N(0, scale^2)."""

    matrix: torch.Tensor

    def __init__(self, d_in: int, d_out: int, scale: float, gen: torch.Generator) -> None:
        super().__init__()
        if d_out % 2:
            raise ValueError("RFF output size must be even")
        self.register_buffer(
            "matrix", 2 * math.pi * scale * torch.randn(d_in, d_out // 2, generator=gen)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x @ self.matrix  # (..., d_out / 2)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def mlp(d_in: int, width: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, width), nn.GELU(), nn.Linear(width, d_out))


class EquivariantCrossAttention(nn.Module):
    """Every query x attends to every latent (p_i, a_i) through x - p_i only.

    query  q = MLP(RFF_q(x - p_i))                      (depends on the relative position)
    key    k = W_k a_i;   value v = (W_v a_i) * (1 + gamma) + beta,
           [gamma, beta] = MLP(RFF_v(x - p_i))          (position-modulated values)
    logit  q . k / sqrt(d_head) - |x - p_i|^2 / sigma^2 (Gaussian window), softmax over i.

    Heads split the hidden width (the authors give each head the full width; splitting keeps
    the CPU cost of the (N, L) pair tensors at one width). With `shared`, one relative MLP's
    hidden layer u serves both: q is its last layer, [gamma, beta] a second last layer on u.

    The function is computed with every product that does not need a (point, latent) pair
    moved out of the pairs (exact algebra, not an approximation; tests/test_enf2enf.py checks
    it against the formula written out pair by pair):
    - the query's last layer is folded into the keys, q . k = u . (W_q^T k) + b_q . k;
    - the value becomes u M_i + c_i + b_beta with per-latent matrices M_i = W_gamma^T
      diag(v_i) + W_beta^T and c_i = v_i (1 + b_gamma), built from the latents alone, and
      sum_i att_i (u_i M_i) is one matrix product of the attention-weighted hidden layers of
      all latents side by side with the stacked M_i;
    - the first layers of the relative MLPs are one product for all latents
      (`_relative_hidden`).
    A pair then costs features x H + H x H (+ H x H for a separate value MLP) multiply-adds in
    large matrix products, and the (N, L H) pair tensors are passed over a few times only: an
    activation per relative MLP, the attention weighting, the product.
    """

    def __init__(
        self,
        d_pos: int,
        hidden: int,
        heads: int,
        scale_q: float,
        scale_v: float,
        sigma: float,
        gen: torch.Generator,
        features: int = 0,
        shared: bool = False,
    ) -> None:
        super().__init__()
        self.hidden, self.heads, self.sigma = hidden, heads, sigma
        features = features or hidden
        self.rff_q = RFF(d_pos, features, scale_q, gen)
        self.to_q = mlp(features, hidden, hidden)
        # Shared: gamma and beta are a second last layer on the query MLP's hidden layer.
        self.rff_v: RFF | None = None if shared else RFF(d_pos, features, scale_v, gen)
        self.to_gb: nn.Sequential | nn.Linear = (
            nn.Linear(hidden, 2 * hidden) if shared else mlp(features, hidden, 2 * hidden)
        )
        self.to_k = nn.Linear(hidden, hidden)
        self.to_v = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, p: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """x (B, N, D) queries, p (L, D) latent positions, a (B, L, H) latents -> (B, N, H)."""
        b, n, _ = x.shape
        nl, hid = p.shape[0], self.hidden
        h, dh = self.heads, hid // self.heads
        q_first, q_act, q_last = self.to_q
        last = self.to_gb[2] if isinstance(self.to_gb, nn.Sequential) else self.to_gb
        assert isinstance(q_first, nn.Linear) and isinstance(q_last, nn.Linear)
        assert isinstance(last, nn.Linear)
        # Per-latent matrices, built from the latents alone (L H^2 work, not N L H^2).
        k = self.to_k(a).reshape(b, nl, h, 1, dh)  # (B, L, heads, 1, dh)
        w_q, b_q = q_last.weight.reshape(h, dh, hid), q_last.bias.reshape(h, dh, 1)
        k_folded = (k @ w_q).squeeze(3).transpose(2, 3)  # (B, L, H, heads)
        # Block-diagonal over latents, so all logits are one product with the stacked hidden.
        eye = torch.eye(nl, dtype=x.dtype, device=x.device)[:, None, :, None]  # (L, 1, L, 1)
        k_block = (k_folded[:, :, :, None, :] * eye).reshape(b, nl * hid, nl * h)
        k_bias = (k @ b_q).reshape(b, 1, nl * h)  # (B, 1, L heads)
        w_g, w_b = last.weight[:hid], last.weight[hid:]  # (H, H) each: gamma, beta
        b_g, b_b = last.bias[:hid], last.bias[hid:]
        v = self.to_v(a)  # (B, L, H)
        # Value of pair (x, i), head slice hs: v_i (1 + W_g u + b_g) + W_b u + b_b
        #   = u M_i + c_i + b_b with M_i = W_g^T diag(v_i) + W_b^T and c_i = v_i (1 + b_g).
        m = w_g.t() * v[:, :, None, :] + w_b.t()  # (B, L, H, H)
        m = m.reshape(b, nl, hid, h, dh).permute(0, 3, 1, 2, 4).reshape(b, h, nl * hid, dh)
        c = (v * (1.0 + b_g)).reshape(b, nl, h, dh).transpose(1, 2)  # (B, heads, L, dh)

        u_q = self._relative_hidden(q_first, q_act, self.rff_q, x, p)  # (B, N, L H)
        dist2 = (
            (x * x).sum(-1)[..., None] - 2.0 * x @ p.t() + (p * p).sum(-1)
        )  # (B, N, L): |x - p_i|^2 expanded, no (B, N, L, D) tensor
        logits = (u_q @ k_block + k_bias).reshape(b, n, nl, h) / math.sqrt(dh)
        att = torch.softmax(logits - (dist2 / self.sigma**2)[..., None], dim=2)  # over latents
        att = att.permute(0, 3, 1, 2)  # (B, heads, N, L)
        if self.rff_v is None:
            u_v = u_q
        else:
            assert isinstance(self.to_gb, nn.Sequential)
            v_first, v_act, _ = self.to_gb
            assert isinstance(v_first, nn.Linear)
            u_v = self._relative_hidden(v_first, v_act, self.rff_v, x, p)  # (B, N, L H)
        # sum_i att_i u_i M_i as one product: the attention-weighted hidden layers of all
        # latents side by side, (B, heads, N, L H), times the stacked M_i.
        weighted = (u_v.reshape(b, 1, n, nl, hid) * att[..., None]).reshape(b, h, n, nl * hid)
        y = weighted @ m + att @ c  # (B, heads, N, dh)
        return self.out(y.transpose(1, 2).reshape(b, n, hid) + b_b)  # (B, N, H)

    @staticmethod
    def _relative_hidden(
        first: nn.Linear, act: nn.Module, rff: RFF, x: torch.Tensor, p: torch.Tensor
    ) -> torch.Tensor:
        """act(first(rff(x - p_i))) for every query and latent, side by side: (B, N, L H).

        The Fourier features of x - p_i are never formed. With phases u = x M and w_i = p_i M,
        sin(u - w_i) = sin u cos w_i - cos u sin w_i and cos(u - w_i) = cos u cos w_i +
        sin u sin w_i, so the first layer W [sin; cos] + b equals W_i [sin u; cos u] + b with
        one matrix W_i per latent built from W and w_i alone. Sines and cosines are then taken
        once per query, not once per (query, latent) pair, and the L matrices side by side make
        the whole layer one matrix product.
        """
        k = rff.matrix.shape[1]
        phase_x = x @ rff.matrix  # (B, N, K)
        feats = torch.cat([torch.sin(phase_x), torch.cos(phase_x)], dim=-1)  # (B, N, 2K)
        phase_p = p @ rff.matrix  # (L, K)
        sin_p, cos_p = torch.sin(phase_p)[:, None, :], torch.cos(phase_p)[:, None, :]
        w_sin, w_cos = first.weight[:, :k], first.weight[:, k:]  # (H, K) each
        per_latent = torch.cat(
            [w_sin * cos_p + w_cos * sin_p, w_cos * cos_p - w_sin * sin_p], dim=-1
        )  # (L, H, 2K)
        nl, hid = per_latent.shape[:2]
        stacked = per_latent.reshape(nl * hid, 2 * k).t()  # (2K, L H), latent-major columns
        return act(feats @ stacked + first.bias.repeat(nl))  # (B, N, L H)


class SdfField(nn.Module):
    """The geometry encoder's neural field: contexts (B, L, C) + points (B, M, 2) -> SDF."""

    def __init__(self, cfg: Enf2EnfConfig, gen: torch.Generator) -> None:
        super().__init__()
        self.stem = mlp(cfg.latent_dim, cfg.enc_hidden, cfg.enc_hidden)
        self.attn = EquivariantCrossAttention(
            2, cfg.enc_hidden, cfg.enc_heads, cfg.enc_rff_scale, cfg.enc_rff_scale, cfg.sigma, gen
        )
        self.head = mlp(cfg.enc_hidden, cfg.enc_hidden, 1)

    def forward(self, x: torch.Tensor, p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, M, 2) normalised, p (L, 2), c (B, L, C) -> (B, M) normalised SDF."""
        return self.head(self.attn(x, p, self.stem(c))).squeeze(-1)


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block over the latents (no positions: those enter through the
    cross-attention's relative positions)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = mlp(hidden, 2 * hidden, hidden)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        b, nl, hid = a.shape
        h, dh = self.heads, hid // self.heads
        qkv = self.qkv(self.norm1(a)).reshape(b, nl, 3, h, dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, L, dh) each
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)  # (B, heads, L, L)
        y = (att @ v).transpose(1, 2).reshape(b, nl, hid)  # (B, L, H)
        a = a + self.proj(y)
        return a + self.ffn(self.norm2(a))


class FieldDecoder(nn.Module):
    """Latents (normalised, with conditions) + query points -> normalised fields."""

    def __init__(self, cfg: Enf2EnfConfig, gen: torch.Generator) -> None:
        super().__init__()
        self.stem = mlp(cfg.latent_dim + cfg.n_conditions, cfg.dec_hidden, cfg.dec_hidden)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(cfg.dec_hidden, cfg.dec_heads) for _ in range(cfg.dec_blocks)
        )
        self.attn = EquivariantCrossAttention(
            3,
            cfg.dec_hidden,
            cfg.dec_heads,
            cfg.dec_rff_scale_q,
            cfg.dec_rff_scale_v,
            cfg.sigma,
            gen,
            cfg.dec_rff_features,
            cfg.dec_shared_relative,
        )
        self.head = nn.Sequential(
            nn.Linear(cfg.dec_hidden + N_LOCAL * cfg.surface_shape, cfg.out_width),
            nn.GELU(),
            nn.Linear(cfg.out_width, cfg.out_width),
            nn.GELU(),
            # Superposition: A and B (2 each) in place of the two velocity components.
            nn.Linear(cfg.out_width, cfg.n_fields + 2 * cfg.superposition),
        )

    def forward(
        self,
        z: torch.Tensor,
        p3: torch.Tensor,
        x3: torch.Tensor,
        local: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z (B, L, C+K) z-scored, p3 (L, 3) positions with sdf 0, x3 (B, N, 3), local
        (B, N, N_LOCAL) with surface_shape -> (B, N, F)."""
        a = self.stem(z)  # (B, L, H)
        for block in self.blocks:
            a = block(a)
        h = self.attn(x3, p3, a)  # (B, N, H)
        if local is not None:
            h = torch.cat([h, local], dim=-1)  # (B, N, H + N_LOCAL)
        return self.head(h)


class Enf2Enf(nn.Module):
    """Geometry encoder and field decoder with every normalisation as a buffer."""

    positions: torch.Tensor  # (L, 2) latent positions, normalised
    box_lo: torch.Tensor  # (2,) physical box, dataset length units
    box_hi: torch.Tensor
    sdf_lo: torch.Tensor  # () SDF min-max range
    sdf_hi: torch.Tensor
    cond_lo: torch.Tensor  # (K,) condition ranges
    cond_hi: torch.Tensor
    latent_mean: torch.Tensor  # (L, C+K) z-score of [contexts, scaled conditions]
    latent_std: torch.Tensor
    field_mean: torch.Tensor  # (F,) z-score of the (condition-scaled) targets
    field_std: torch.Tensor
    curvature_scale: torch.Tensor  # () with surface_shape only

    def __init__(self, cfg: Enf2EnfConfig) -> None:
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.rff_seed)
        nl, c, k, f = cfg.n_latents, cfg.latent_dim, cfg.n_conditions, cfg.n_fields
        self.register_buffer("positions", latent_positions(cfg))
        # Placeholders: training fits every one of them to its dataset before the first step.
        for name, value in (
            ("box_lo", -torch.ones(2)),
            ("box_hi", torch.ones(2)),
            ("sdf_lo", torch.tensor(-1.0)),
            ("sdf_hi", torch.tensor(1.0)),
            ("cond_lo", -torch.ones(k)),
            ("cond_hi", torch.ones(k)),
            ("latent_mean", torch.zeros(nl, c + k)),
            ("latent_std", torch.ones(nl, c + k)),
            ("field_mean", torch.zeros(f)),
            ("field_std", torch.ones(f)),
        ):
            self.register_buffer(name, value)
        if cfg.surface_shape:  # curvature scale: 1 / its 99th percentile magnitude in training
            self.register_buffer("curvature_scale", torch.tensor(1.0))
        self.c0 = nn.Parameter(torch.zeros(nl, c))  # shared initial code (learned)
        self.alpha = nn.Parameter(torch.full((c,), cfg.inner_lr))  # per-dimension step sizes
        self.sdf_field = SdfField(cfg, gen)
        self.decoder = FieldDecoder(cfg, gen)

    # --- normalisation -------------------------------------------------------------------
    def norm_points(self, points: torch.Tensor) -> torch.Tensor:
        return 2.0 * (points - self.box_lo) / (self.box_hi - self.box_lo) - 1.0

    def norm_sdf(self, sdf: torch.Tensor) -> torch.Tensor:
        return 2.0 * (sdf - self.sdf_lo) / (self.sdf_hi - self.sdf_lo) - 1.0

    def scaled_conditions(self, conditions: torch.Tensor) -> torch.Tensor:
        return 2.0 * (conditions - self.cond_lo) / (self.cond_hi - self.cond_lo) - 1.0

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [self.c0, self.alpha, *self.sdf_field.parameters()]

    # --- geometry encoder ------------------------------------------------------------------
    def sdf_loss(self, c: torch.Tensor, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Sum over the batch of each sample's mean squared SDF error: each sample's gradient
        with respect to its own code is then independent of the batch size."""
        pred = self.sdf_field(x, self.positions, c)  # (B, M)
        return ((pred - s) ** 2).mean(dim=1).sum()

    def encode(
        self, points: torch.Tensor, sdf: torch.Tensor, create_graph: bool = False
    ) -> torch.Tensor:
        """(B, M, 2) points, (B, M) SDF -> (B, L, C) contexts after the inner steps.

        Needs autograd even at inference (call under torch.enable_grad()); create_graph=True
        keeps the second-order graph for meta-training.
        """
        x, s = self.norm_points(points), self.norm_sdf(sdf)
        b = points.shape[0]
        with torch.enable_grad():
            c = self.c0.expand(b, -1, -1)  # (B, L, C)
            if not c.requires_grad:  # frozen encoder: the inner loop still needs d loss / d c
                c = c.detach().requires_grad_(True)
            alpha = self.alpha.clamp(ALPHA_MIN, ALPHA_MAX)
            for _ in range(self.cfg.inner_steps):
                loss = self.sdf_loss(c, x, s)
                (grad,) = torch.autograd.grad(loss, c, create_graph=create_graph)
                c = c - alpha * grad  # (B, L, C)
        return c

    def reconstruct_sdf(
        self, c: torch.Tensor, points: torch.Tensor
    ) -> torch.Tensor:  # (B, L, C), (B, M, 2) -> (B, M) normalised SDF
        return self.sdf_field(self.norm_points(points), self.positions, c)

    # --- field decoder ---------------------------------------------------------------------
    def decode_normalised(
        self,
        latents: torch.Tensor,
        conditions: torch.Tensor,
        points: torch.Tensor,
        sdf: torch.Tensor,
        shape: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, L, C) contexts, (B, K) conditions, (B, N, 2), (B, N), shape (B, N, 3) = the
        surface's curvature and outward normal at the nearest point (with surface_shape only)
        -> (B, N, F) z-scored (condition-scaled) fields: what the training loss compares."""
        nl = latents.shape[1]
        cond = self.scaled_conditions(conditions)[:, None, :].expand(-1, nl, -1)  # (B, L, K)
        z = (torch.cat([latents, cond], dim=-1) - self.latent_mean) / self.latent_std
        x3 = torch.cat([self.norm_points(points), self.norm_sdf(sdf)[..., None]], dim=-1)
        # Latents sit at SDF coordinate 0: the third relative coordinate is the query's SDF.
        p3 = F.pad(self.positions, (0, 1))  # (L, 3)
        local = None
        if self.cfg.surface_shape:
            if shape is None:
                raise ValueError("this model's decoder needs the surface shape at each query")
            weight = torch.exp(-sdf.clamp_min(0.0) / self.cfg.shape_length)[..., None]  # (B,N,1)
            curvature = shape[..., :1] * self.curvature_scale
            local = torch.cat([curvature, shape[..., 1:], torch.ones_like(weight)], -1) * weight
        out = self.decoder(z, p3, x3, local)  # (B, N, F), or (B, N, F+2) = [A_u, A_v, B_u, ...]
        if not self.cfg.superposition:
            return out
        a = conditions[:, 0, None, None] * (math.pi / 180.0)  # (B, 1, 1) radians
        # Offsets make a zero output the free stream: A = (1, 0), B = (0, 1).
        ab = out[..., :4] + torch.tensor([1.0, 0.0, 0.0, 1.0], device=out.device)
        uv = torch.cos(a) * ab[..., 0:2] + torch.sin(a) * ab[..., 2:4]  # (B, N, 2) u/V, v/V
        uv_z = (uv - self.field_mean[:2]) / self.field_std[:2]
        return torch.cat([uv_z, out[..., 4:]], dim=-1)  # (B, N, F) z-scored like the targets

    def decode(
        self,
        latents: torch.Tensor,
        conditions: torch.Tensor,
        points: torch.Tensor,
        sdf: torch.Tensor,
        shape: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Same inputs as decode_normalised -> (B, N, F) physical fields."""
        out = self.decode_normalised(latents, conditions, points, sdf, shape)
        return (out * self.field_std + self.field_mean) * self.condition_scale(conditions)

    def normalised_fields(self, fields: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """(B, N, F) physical targets -> what the decoder's last layer is trained to output."""
        return (fields / self.condition_scale(conditions) - self.field_mean) / self.field_std

    def condition_scale(self, conditions: torch.Tensor) -> torch.Tensor:
        """(B, K) -> (B, 1, F): each field's scaling condition (field_scale), 1 where none."""
        ones = torch.ones_like(conditions[:, :1])  # (B, 1)
        columns = [
            conditions[:, k : k + 1] if k >= 0 else ones
            for k in (self.cfg.field_scale or (-1,) * self.cfg.n_fields)
        ]
        return torch.cat(columns, dim=1)[:, None, :]  # (B, 1, F)


class EncoderGraph(nn.Module):
    """Export wrapper: points (M, 2), sdf (M,) -> latents (L, C). Uses autograd inside: it is
    traced with make_fx (export.py), not exported directly."""

    def __init__(self, model: Enf2Enf) -> None:
        super().__init__()
        self.model = model

    def forward(self, points: torch.Tensor, sdf: torch.Tensor) -> torch.Tensor:
        return self.model.encode(points[None], sdf[None])[0]


class DecoderGraph(nn.Module):
    """Export wrapper: latents (L, C), conditions (K,), points (N, 2), sdf (N,) [, shape (N, 3)
    with surface_shape] -> (N, F)."""

    def __init__(self, model: Enf2Enf) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        latents: torch.Tensor,
        conditions: torch.Tensor,
        points: torch.Tensor,
        sdf: torch.Tensor,
        shape: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = None if shape is None else shape[None]
        return self.model.decode(latents[None], conditions[None], points[None], sdf[None], extra)[0]
