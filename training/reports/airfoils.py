"""Airfoil test cases for a report: the panel method beside what the served graphs predict.

The cases are the first samples of the held-out splits (single-element `test`, two-element
`test_multi`): read from the stored splits when they are here and were made from the
version's dataset config, otherwise made again by the dataset's own generator (same seeds,
so the same geometry, conditions and points). The pictures are on a regular grid over the
training box, where the reference is the Hess-Smith solution of the case itself, and the
model runs as the manifest composes it: encoder points from the geometry, the encoder graph,
then the decoder graph at the query points and their signed distance, through onnxruntime.
Points nearer a wall than the manifest's `min_wall_distance` are left blank: no training
point was nearer, and there the panel solution is not trustworthy either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from geometry.airfoils import encoder_points, signed_distance
from training.airfoils.dataset import FIELD_COLUMNS, DatasetConfig, simulate
from training.airfoils.panel import PanelSolution, solve
from training.common.config import from_dict
from training.enf2enf.evaluate import OnnxEnf2Enf
from training.enf2enf.metrics import rel_l2_per_sample
from training.geometry_data.format import FORMAT, Sample, split_path
from training.reports.page import Page, magnification, png_bytes, table

Array = NDArray[np.float64]
FIELDS = FIELD_COLUMNS  # u, v, cp
GRID = (120, 90)  # nx, ny over the 2 x 1.5 chord box: square cells


@dataclass
class AirfoilCase:
    split: str
    index: int
    polylines: list[Array]
    conditions: NDArray[np.float32]  # [aoa_deg, speed]
    points: NDArray[np.float32]  # (N, 2) the sample's field points
    fields: NDArray[np.float32]  # (N, 3) the solver's u, v, cp there
    surface_cp: NDArray[np.float32]  # (2, K) the solver's Cp at panel midpoints (NaN padded)
    stored: bool  # read from a stored split (True) or made again here (False)

    @property
    def label(self) -> str:
        kind = "two-element" if len(self.polylines) > 1 else "single section"
        return f"{self.split} #{self.index} ({kind})"


def dataset_config(manifest: dict[str, Any]) -> DatasetConfig:
    return from_dict(DatasetConfig, manifest["training"]["dataset"], "dataset")


def picks(cfg: DatasetConfig, n: int) -> list[tuple[str, int]]:
    """The first samples of each held-out split: about a third two-element ones, where the
    model is weakest, so the page shows that too."""
    n = max(1, n)
    n_multi = min(cfg.n_test_multi, 0 if n < 2 else max(1, n // 3))
    n_single = min(cfg.n_test, n - n_multi)
    return [("test", i) for i in range(n_single)] + [("test_multi", i) for i in range(n_multi)]


def _made_case(split: str, index: int, sample: Sample) -> AirfoilCase:
    """A case from what the generator's `simulate` returns."""
    return AirfoilCase(
        split=split,
        index=index,
        polylines=[np.asarray(p, dtype=np.float64) for p in sample.polylines],
        conditions=np.asarray(sample.conditions, dtype=np.float32),
        points=np.asarray(sample.points, dtype=np.float32),
        fields=np.asarray(sample.fields, dtype=np.float32),
        surface_cp=np.asarray(sample.extra["surface_cp"], dtype=np.float32),
        stored=False,
    )


def _stored_case(split: str, index: int, f: h5py.File) -> AirfoilCase:
    """One sample of an open split file (training.geometry_data.format), padding dropped."""
    padded, n_vertices = f["polylines"][index], f["n_vertices"][index]
    n = int(f["n_points"][index])
    return AirfoilCase(
        split=split,
        index=index,
        polylines=[
            np.asarray(padded[e, : int(n_vertices[e])], dtype=np.float64)
            for e in range(int(f["n_polylines"][index]))
        ],
        conditions=np.asarray(f["conditions"][index], dtype=np.float32),
        points=np.asarray(f["points"][index, :n], dtype=np.float32),
        fields=np.asarray(f["fields"][index, :n], dtype=np.float32),
        surface_cp=np.asarray(f["extra/surface_cp"][index], dtype=np.float32),
        stored=True,
    )


def _stored_split(
    cfg: DatasetConfig, path: Path, indices: list[int]
) -> tuple[list[AirfoilCase] | None, str]:
    """The cases from a stored split, or None and why it cannot serve."""
    if not path.exists():
        return None, "is not present"
    split = path.stem
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            return None, f"is not in the {FORMAT} format (made by an older version)"
        if f.attrs.get("fingerprint") != cfg.fingerprint():
            return None, "was made from another dataset config"
        if not all(bool(f["done"][i]) for i in indices):
            return None, "lacks some of these samples"
        return [_stored_case(split, i, f) for i in indices], ""


def reference_cases(
    manifest: dict[str, Any], data_dir: Path, n: int, progress: bool = False
) -> tuple[list[AirfoilCase], str]:
    """The cases and, in words, where their reference came from."""
    cfg = dataset_config(manifest)
    wanted: dict[str, list[int]] = {}
    for split, index in picks(cfg, n):
        wanted.setdefault(split, []).append(index)
    cases: list[AirfoilCase] = []
    origins: list[str] = []
    for split, indices in wanted.items():
        path = split_path(data_dir, split)
        found, why = _stored_split(cfg, path, indices)
        if found is not None:
            cases.extend(found)
            origins.append(f"{split}: the stored split {path}")
            continue
        for i in tqdm(indices, desc=f"panel method {split}", disable=not progress):
            cases.append(_made_case(split, i, simulate(cfg, split, i)))
        origins.append(
            f"{split}: made again for this report by the dataset generator (Hess-Smith panel "
            f"method, the dataset config recorded in the manifest), because {path} {why}"
        )
    return cases, "; ".join(origins)


@dataclass
class Prediction:
    """One case through the served graphs, and its panel solution on the picture grid."""

    at_points: NDArray[np.float32]  # (N, 3) at the case's field points
    grid_ref: Array  # (ny, nx, 3), NaN off the fluid
    grid_pred: Array  # (ny, nx, 3)
    solution: PanelSolution
    latents: NDArray[np.float32]


def grid_points(box: list[list[float]]) -> tuple[Array, tuple[float, float, float, float]]:
    (x0, x1), (y0, y1) = box
    nx, ny = GRID
    hx, hy = (x1 - x0) / nx, (y1 - y0) / ny
    xs, ys = x0 + hx * (np.arange(nx) + 0.5), y0 + hy * (np.arange(ny) + 0.5)
    gx, gy = np.meshgrid(xs, ys)  # (ny, nx)
    return np.stack([gx.ravel(), gy.ravel()], axis=1), (x0, x1, y0, y1)


def run_case(model: OnnxEnf2Enf, manifest: dict[str, Any], case: AirfoilCase) -> Prediction:
    domain = manifest["domain"]
    enc_pts, enc_sdf = encoder_points(
        case.polylines, int(domain["n_encoder"]), domain["box"], seed=int(domain["encoder_seed"])
    )
    latents = model.encode(enc_pts, enc_sdf)
    sdf = signed_distance(case.points, case.polylines)
    at_points = model.decode(latents, case.conditions, case.points, sdf)
    pts, _ = grid_points(domain["box"])
    grid_sdf = signed_distance(pts, case.polylines)
    fluid = grid_sdf >= float(domain.get("min_wall_distance", 0.0))
    aoa, speed = (float(v) for v in case.conditions)
    solution = solve(case.polylines, aoa_deg=aoa, speed=speed)
    nx, ny = GRID
    ref = np.full((nx * ny, 3), np.nan)
    out = np.full((nx * ny, 3), np.nan)
    ref[fluid] = solution.fields(pts[fluid])
    out[fluid] = model.decode(latents, case.conditions, pts[fluid], grid_sdf[fluid])
    return Prediction(at_points, ref.reshape(ny, nx, 3), out.reshape(ny, nx, 3), solution, latents)


def field_figure(
    case: AirfoilCase, pred: Prediction, extent: tuple[float, float, float, float]
) -> bytes:
    import matplotlib.pyplot as plt

    # Shared axes and fixed margins: matplotlib's layout engines and per-axes tick labels
    # were most of a report's run time.
    fig, axs = plt.subplots(3, 3, figsize=(11, 7), sharex=True, sharey=True, squeeze=False)
    fig.subplots_adjust(left=0.05, right=0.93, bottom=0.05, top=0.91, wspace=0.28, hspace=0.22)
    for row, name in enumerate(FIELDS):
        ref, out = pred.grid_ref[..., row], pred.grid_pred[..., row]
        lo, hi = np.nanpercentile(ref, [1, 99])
        scale = max(abs(lo), abs(hi), 1e-12)
        err = out - ref
        # The 99th percentile, not the maximum: a few cells at a leading edge would set the
        # scale for the whole panel and hide the error's pattern elsewhere.
        gain = magnification(scale, float(np.nanpercentile(np.abs(err), 99)))
        panels = [
            ("panel method", ref, "viridis", lo, hi),
            ("enf2enf (ONNX)", out, "viridis", lo, hi),
            (
                "error" if gain == 1 else f"error, scale / {gain}",
                err,
                "RdBu_r",
                -scale / gain,
                scale / gain,
            ),
        ]
        for col, (label, img, cmap, vmin, vmax) in enumerate(panels):
            ax = axs[row, col]
            im = ax.imshow(
                img,
                origin="lower",
                extent=extent,
                cmap=plt.get_cmap(cmap).with_extremes(bad="#d9d9d9"),
                vmin=vmin,
                vmax=vmax,
                interpolation="nearest",
            )
            for poly in case.polylines:
                ax.plot(poly[:, 0], poly[:, 1], "k-", lw=0.7)
            ax.set_title(f"{label}: {name}", fontsize=9)
            ax.tick_params(labelsize=7)
            if col >= 1:  # one bar for the two fields, one for the error
                bar = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
                bar.ax.tick_params(labelsize=7)
    aoa, speed = (float(v) for v in case.conditions)
    fig.suptitle(f"{case.label}: angle of attack {aoa:.2f} deg, speed {speed:.3f}", fontsize=10)
    return png_bytes(fig)


def surface_points(polyline: Array, offset: float) -> tuple[Array, Array]:
    """Panel midpoints, and the same moved `offset` outward along each panel's normal (the
    polylines are clockwise, so (-t_y, t_x) points into the fluid)."""
    mid = 0.5 * (polyline[:-1] + polyline[1:])
    t = np.diff(polyline, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    normal = np.stack([-t[:, 1], t[:, 0]], axis=1)
    return mid, mid + offset * normal


def surface_figure(
    model: OnnxEnf2Enf,
    manifest: dict[str, Any],
    cases: list[AirfoilCase],
    preds: list[Prediction],
) -> bytes:
    import matplotlib.pyplot as plt

    offset = float(manifest["domain"].get("min_wall_distance", 0.005))
    fig, axs = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 3.6), squeeze=False)
    for ax, case, pred in zip(axs[0], cases, preds, strict=True):
        for e, poly in enumerate(case.polylines):
            mid, off = surface_points(poly, offset)
            sdf = signed_distance(off, case.polylines)
            keep = sdf > 0.5 * offset  # not pushed into the other element (a slot)
            model_cp = model.decode(pred.latents, case.conditions, off[keep], sdf[keep])[:, 2]
            solver_off = pred.solution.fields(off[keep])[:, 2]
            solver_wall = case.surface_cp[e, : len(mid)]
            tag = "" if len(case.polylines) == 1 else (" main" if e == 0 else " flap")
            ax.plot(mid[:, 0], solver_wall, "k-", lw=1.0, label=f"panel, wall{tag}")
            ax.plot(off[keep, 0], solver_off, "-", color="0.6", lw=0.8, label=f"panel, off{tag}")
            ax.plot(off[keep, 0], model_cp, ".", color=f"C{3 + e}", ms=3, label=f"enf2enf{tag}")
        ax.invert_yaxis()  # the aerodynamicists' way: suction up
        ax.set_xlabel("x (chord)", fontsize=8)
        ax.set_ylabel("Cp", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(case.label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return png_bytes(fig)


def add_sections(
    page: Page,
    manifest: dict[str, Any],
    version_dir: Path,
    data_dir: Path,
    n_cases: int,
    progress: bool,
) -> list[AirfoilCase]:
    cases, origin = reference_cases(manifest, data_dir, n_cases, progress)
    model = OnnxEnf2Enf(version_dir)
    preds = [
        run_case(model, manifest, case)
        for case in tqdm(cases, desc="enf2enf (ONNX)", disable=not progress)
    ]
    page.heading("Test cases: predicted, reference and error fields")
    page.text(
        f"Reference: {origin}. Prediction: encoder.onnx and decoder.onnx through onnxruntime "
        "(CPU), composed as the manifest's `compose` says."
    )
    rows: list[list[Any]] = []
    for case, pred in zip(cases, preds, strict=True):
        err = rel_l2_per_sample(pred.at_points[None], case.fields[None])[0]
        aoa, speed = (float(v) for v in case.conditions)
        rows.append([case.label, aoa, speed, *(float(e) for e in err)])
    header = ["case", "aoa (deg)", "speed", *(f"rel L2 {f}" for f in FIELDS)]
    page.raw(table(rows, header))
    page.text(
        f"Relative L2 at each case's {len(cases[0].points)} field points (the data's "
        "distribution, clustered at the walls); the metrics below average it over every "
        "held-out sample.",
        css="note",
    )
    _, extent = grid_points(manifest["domain"]["box"])
    for case, pred in tqdm(
        list(zip(cases, preds, strict=True)), desc="figures", disable=not progress
    ):
        page.figure(
            field_figure(case, pred, extent),
            f"{case.label}: u, v and Cp on a {GRID[0]} x {GRID[1]} grid over the training box. "
            "Columns: the panel method, the served graphs, their difference (on the field's "
            "colour scale narrowed by the factor in its title; grey: inside a body or nearer "
            "a wall than any training point). Field colours span the 1st to 99th percentile.",
            alt=f"fields of {case.label}",
        )
    page.heading("Surface pressure against the panel solver")
    offset = float(manifest["domain"].get("min_wall_distance", 0.005))
    page.figure(
        surface_figure(model, manifest, cases, preds),
        f"Cp along each surface against x. Black: the panel method's Cp at its panel "
        f"midpoints on the wall; grey: the panel method {offset:g} chord off the wall along "
        "each panel's normal; dots: enf2enf at those same points (the nearest any training "
        "point came to a wall, so the model is asked only where it was trained).",
        alt="surface pressure coefficient",
    )
    return cases
