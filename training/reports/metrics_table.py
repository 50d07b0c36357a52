"""The manifest's evaluation as a table: every number the export measured, none recomputed.

Metrics are nested differently per family (acoustics: flat, with `_ci95` intervals beside
each mean; airfoils: per field and per test split), so they are flattened into dotted paths
rather than laid out by a per-family schema that a new metric would silently fall out of.
"""

from __future__ import annotations

from typing import Any

from training.reports.page import table

# What the headline keys mean, for a reader who has not read evaluate.py; keys not listed
# are shown without a gloss.
MEANINGS = {
    "rel_l2": "relative L2 error against the solver, mean over held-out cases",
    "rel_l2_ci95": "Student-t 95% interval of that mean",
    "rel_l2_p95": "95th percentile over held-out sources",
    "rel_l2_max": "worst held-out source",
    "rmse_norm": "RMSE over time / peak, per receiver (the paper's measure)",
    "rel_l2_offgrid": "relative L2 at receivers between the training receivers",
    "rel_l2_multi": "relative L2 on held-out two-element configurations",
    "rel_l2_dense": "relative L2 at 4x the training point density",
    "superres_ratio": "dense error / training-density error (1 = no loss off the training points)",
    "baseline_freestream": "baseline: the free stream everywhere",
    "baseline_deeponet": "baseline: a geometry DeepONet trained on the same data",
    "baseline_nearest_rel_l2": "baseline: the nearest training source's field",
    "baseline_linear_rel_l2": "baseline: linear interpolation between training sources",
    "baseline_spline_rel_l2": "baseline: spline interpolation between training sources",
    "bytes_onnx": "bytes of the served graphs (with their data files)",
    "bytes_training_fields": "bytes of the training fields a lookup baseline needs",
}


def flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """[(dotted key, leaf value)] in the manifest's order; lists stay whole (intervals)."""
    out: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.extend(flatten(value, path))
        else:
            out.append((path, value))
    return out


def metrics_table(metrics: dict[str, Any]) -> str:
    rows: list[list[Any]] = []
    for path, value in flatten(metrics):
        head = path.split(".", 1)[0]
        # The gloss once per group: on its first row only.
        gloss = MEANINGS.get(path, MEANINGS.get(head, "") if path.startswith(head + ".") else "")
        if rows and rows[-1][0].split(".", 1)[0] == head and "." in path:
            gloss = ""
        rows.append([path, value, gloss])
    return table(rows, ["metric", "value", "meaning"], css="metrics")
