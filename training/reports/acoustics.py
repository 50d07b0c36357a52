"""Acoustic test cases for a report: the FDTD reference beside what the served graphs predict.

The reference is the solver's: the stored test split when it is here and was made from the
version's dataset config (same fingerprint), otherwise the first test sources solved again
with the FDTD of training/acoustics from that config. The config is the manifest's
(`training.dataset`), with the scene replaced by the spec the manifest recorded
(`domain.scene`), so a scene file edited since training cannot change the reference. The
prediction runs the exported branch and trunk graphs through onnxruntime, composed as the
service composes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from training.acoustics.dataset import (
    AcousticSplit,
    DatasetConfig,
    make_solver,
    receivers_for,
    simulate,
    sources_for,
    split_path,
)
from training.acoustics.evaluate import OnnxDeepONet
from training.acoustics.metrics import predict, rel_l2_per_source
from training.common.config import from_dict
from training.reports.page import Page, magnification, png_bytes, table

Array = NDArray[np.float64]


@dataclass
class AcousticCases:
    indices: list[int]  # positions in the test split
    sources: Array  # (n, dim)
    receivers: Array  # (P, dim)
    times: Array  # (T,)
    reference: NDArray[np.float32]  # (n, T, P) Pa, the solver's
    origin: str  # where the reference came from, in words
    stored: bool  # True: read from the stored test split; False: solved again here


def dataset_config(manifest: dict[str, Any]) -> DatasetConfig:
    data = dict(manifest["training"]["dataset"])
    scene = manifest.get("domain", {}).get("scene")
    if scene is not None:
        data["scene"] = scene
    return from_dict(DatasetConfig, data, "dataset")


def _stored(cfg: DatasetConfig, path: Path, n: int) -> AcousticCases | None:
    with h5py.File(path, "r") as f:
        if f.attrs.get("fingerprint") != cfg.fingerprint() or not f["done"][:n].all():
            return None
        # Only the first n sources: a 3-D test split is hundreds of megabytes.
        return AcousticCases(
            indices=list(range(n)),
            sources=f["sources"][:n],
            receivers=f["receivers"][...],
            times=f["times"][...],
            reference=f["pressure"][:n],
            origin=f"the stored test split {path} ({f.attrs.get('solver', 'FDTD')})",
            stored=True,
        )


def reference_cases(
    manifest: dict[str, Any], data_dir: Path, n: int, progress: bool = False
) -> AcousticCases:
    """The first `n` test sources and the solver's pressure at the test receivers."""
    cfg = dataset_config(manifest)
    n = max(1, min(n, cfg.sources.n_test))
    path = split_path(data_dir, "test")
    why = f"{path} is not present"
    if path.exists():
        found = _stored(cfg, path, n)
        if found is not None:
            return found
        why = f"{path} was made from another dataset config"
    sources = sources_for(cfg, "test")[:n]
    receivers = receivers_for(cfg, "test")
    solver = make_solver(cfg, "cpu")
    pressure = np.stack(
        [
            simulate(cfg, solver, src[None], receivers)[0]
            for src in tqdm(sources, desc="FDTD reference", unit="src", disable=not progress)
        ]
    )
    grid = " x ".join(str(s) for s in solver.shape)
    return AcousticCases(
        indices=list(range(n)),
        sources=sources,
        receivers=receivers,
        times=np.arange(cfg.output.n_times, dtype=np.float64) * cfg.output.dt,
        reference=pressure,
        origin=(
            f"solved again for this report with the FDTD of training/acoustics ({grid} grid, "
            f"the dataset config recorded in the manifest), because {why}"
        ),
        stored=False,
    )


def predicted(version_dir: Path, cases: AcousticCases) -> NDArray[np.float32]:
    """(n, T, P) from the exported graphs through onnxruntime."""
    split = AcousticSplit(cases.sources, cases.receivers, cases.times, cases.reference, {})
    return predict(OnnxDeepONet(version_dir), split)


@dataclass(frozen=True)
class Slice:
    """The receivers of one horizontal layer (all of them in 2-D) as an image grid."""

    select: NDArray[np.int64]  # receiver indices in the layer
    ix: NDArray[np.int64]
    iy: NDArray[np.int64]
    shape: tuple[int, int]  # (ny, nx)
    extent: tuple[float, float, float, float]  # cell edges, for imshow
    z: float | None

    def image(self, values: NDArray[Any]) -> NDArray[np.float64]:
        img = np.full(self.shape, np.nan)
        img[self.iy, self.ix] = values[self.select]
        return img


def _axis(values: Array, spacing: float) -> tuple[Array, NDArray[np.int64], float]:
    axis = np.unique(np.round(values, 6))
    step = float(np.diff(axis).min()) if len(axis) > 1 else spacing
    return axis, np.searchsorted(axis, np.round(values, 6)), step


def layer_at(receivers: Array, z: float | None, spacing: float) -> Slice:
    """Receivers are cell-centred on a grid (solids removed): scatter them back onto it."""
    select = np.arange(len(receivers))
    layer_z = None
    if receivers.shape[1] == 3:
        zs = np.unique(np.round(receivers[:, 2], 6))
        layer_z = float(zs[np.argmin(np.abs(zs - (z if z is not None else zs.mean())))])
        select = np.flatnonzero(np.isclose(receivers[:, 2], layer_z, atol=1e-5))
    xs, ix, hx = _axis(receivers[select, 0], spacing)
    ys, iy, hy = _axis(receivers[select, 1], spacing)
    extent = (xs[0] - hx / 2, xs[-1] + hx / 2, ys[0] - hy / 2, ys[-1] + hy / 2)
    return Slice(select, ix, iy, (len(ys), len(xs)), extent, layer_z)


def frames(n_times: int) -> list[int]:
    """Two moments: the direct wave still visible, then the reverberant field."""
    return sorted({max(1, n_times // 10), n_times // 2})


def case_figure(
    cases: AcousticCases, pred: NDArray[np.float32], k: int, spacing: float
) -> tuple[bytes, str]:
    import matplotlib.pyplot as plt

    src = cases.sources[k]
    layer = layer_at(cases.receivers, float(src[2]) if len(src) == 3 else None, spacing)
    ref, out = cases.reference[k], pred[k]
    # A listener at a typical distance from the source: the median over the layer.
    dist = np.linalg.norm(cases.receivers[layer.select, :2] - src[:2], axis=1)
    listener = int(layer.select[np.argsort(dist)[len(dist) // 2]])
    picks = frames(len(cases.times))
    # Fixed margins, not a layout engine: constrained layout was half a report's run time.
    fig = plt.figure(figsize=(13, 2.7 * len(picks) + 0.4))
    # Columns: reference, prediction, their colour bar, a gap for its labels, error, its
    # bar, a gap, the IR.
    grid = fig.add_gridspec(
        len(picks),
        8,
        width_ratios=[1, 1, 0.05, 0.25, 1, 0.05, 0.3, 1.25],
        left=0.035,
        right=0.985,
        bottom=0.1,
        top=0.9,
        wspace=0.18,
        hspace=0.3,
    )
    image_cols, bar_cols = (0, 1, 4), {1: 2, 4: 5}
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#d9d9d9")
    for row, t in enumerate(picks):
        vmax = float(np.abs(ref[t, layer.select]).max()) or 1.0
        err = out[t] - ref[t]
        # The 99th percentile: a few receivers by a wall would set the scale for all.
        gain = magnification(vmax, float(np.percentile(np.abs(err[layer.select]), 99)))
        panels = [
            ("FDTD (reference)", ref[t], vmax),
            ("DeepONet (ONNX)", out[t], vmax),
            ("error" if gain == 1 else f"error, scale / {gain}", err, vmax / gain),
        ]
        for col, (label, values, scale) in zip(image_cols, panels, strict=True):
            ax = fig.add_subplot(grid[row, col])
            im = ax.imshow(
                layer.image(values),
                origin="lower",
                extent=layer.extent,
                cmap=cmap,
                vmin=-scale,
                vmax=scale,
                interpolation="nearest",
            )
            ax.plot(*src[:2], "k*", ms=9)
            ax.plot(*cases.receivers[listener, :2], "ko", ms=5, mfc="none")
            ax.set_title(f"{label}, t = {1e3 * cases.times[t]:.1f} ms", fontsize=9)
            ax.tick_params(labelsize=7, labelleft=col != 1)
            if col in bar_cols:  # one bar for the two fields, one for the error
                bar = fig.colorbar(im, cax=fig.add_subplot(grid[row, bar_cols[col]]))
                bar.set_label("Pa", fontsize=8)
                bar.ax.tick_params(labelsize=7)
    ax = fig.add_subplot(grid[:, 7])
    ms = 1e3 * cases.times
    ax.plot(ms, ref[:, listener], "k-", lw=1.2, label="FDTD")
    ax.plot(ms, out[:, listener], "C3--", lw=1.0, label="DeepONet")
    ax.set_xlabel("t (ms)", fontsize=8)
    ax.set_ylabel("p (Pa)", fontsize=8)
    ax.tick_params(labelsize=7)
    where = ", ".join(f"{v:.2f}" for v in cases.receivers[listener])
    ax.set_title(f"impulse response at the listener o\n({where}) m", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    where_src = ", ".join(f"{v:.2f}" for v in src)
    slice_note = "" if layer.z is None else f"; the receiver layer at z = {layer.z:.2f} m"
    caption = (
        f"Test source {cases.indices[k]} (*) at ({where_src}) m{slice_note}. Rows: two "
        "moments; columns: the solver, the served graphs, their difference (on the "
        "solver's colour scale narrowed by the factor in its title; grey: no receiver there, "
        "outside the air)."
    )
    return png_bytes(fig), caption


def add_sections(
    page: Page,
    manifest: dict[str, Any],
    version_dir: Path,
    data_dir: Path,
    n_cases: int,
    progress: bool,
) -> AcousticCases:
    cases = reference_cases(manifest, data_dir, n_cases, progress)
    pred = predicted(version_dir, cases)
    errors = rel_l2_per_source(pred, cases.reference)
    page.heading("Test cases: predicted, reference and error fields")
    page.text(
        f"Reference: {cases.origin}. Prediction: branch.onnx and trunk.onnx through "
        "onnxruntime (CPU), composed as the service composes them."
    )
    rows: list[list[Any]] = []
    for k in range(len(cases.indices)):
        src = "(" + ", ".join(f"{v:.3f}" for v in cases.sources[k]) + ")"
        peak = float(np.abs(cases.reference[k]).max())
        rows.append([cases.indices[k], src, float(errors[k]), peak])
    page.raw(table(rows, ["test source", "position (m)", "relative L2", "peak |p| (Pa)"]))
    metrics = manifest.get("metrics", {})
    if metrics.get("rel_l2") is not None:
        page.text(
            f"Relative L2 over all receivers and times; the manifest's mean over all "
            f"{metrics.get('n_test_sources', '?')} test sources is {metrics['rel_l2']:.4g}.",
            css="note",
        )
    worst = metrics.get("rel_l2_max")
    if not cases.stored and worst is not None and float(errors.max()) > float(worst):
        # The export scored every test source, so a case above its worst means the reference
        # is not the data the version was evaluated on: the solver has changed since.
        page.text(
            f"Note: test source {cases.indices[int(errors.argmax())]} scores "
            f"{float(errors.max()):.4g} here, above the worst the export measured "
            f"({float(worst):.4g}) on the same sources. The reference above is today's "
            f"FDTD; the version (created {manifest.get('created', '?')}) was trained and "
            "evaluated on data from the solver as it was then, and the difference between "
            "the two solvers is part of these errors.",
            css="note",
        )
    spacing = float(manifest.get("domain", {}).get("trained_receiver_spacing", 0.1))
    for k in tqdm(range(len(cases.indices)), desc="figures", disable=not progress):
        png, caption = case_figure(cases, pred, k, spacing)
        page.figure(png, caption, alt=f"fields of test source {cases.indices[k]}")
    return cases
