"""What enf2enf needs to know about a problem beyond its dataset, in one place.

A problem is a solver plus a config (training.airfoils, training.elasticity): its generator
makes the held-out splits a fresh clone lacks, and a problem may add a physical floor baseline
and its own manifest domain. Everything else (training, evaluation, export, serving) reads the
dataset alone. An imported dataset (AirfRANS, a folder of VTK files) has no generator.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.common.config import from_dict
from training.geometry_data.format import ENCODER_SEED, Split, load_split, splits_with_role

# Problem -> the module with DatasetConfig, SPLITS, TEST_SPLITS and generate_split.
GENERATORS = {
    "airfoils": "training.airfoils.dataset",
    "elasticity": "training.elasticity.dataset",
}


def problem_of(record: dict[str, Any]) -> str:
    """The problem of a checkpoint or a manifest's "training" block; versions exported before
    there was more than one problem are airfoils."""
    attrs = record.get("dataset_attrs") or {}
    return str(attrs.get("problem", "airfoils"))


def dataset_name(record: dict[str, Any]) -> str:
    """The dataset's name (the default data/<name> folder and model name) of a checkpoint or a
    manifest's "training" block: its generator config's, else the one recorded at training."""
    config = record.get("dataset_config") or record.get("dataset") or {}
    return str(config.get("name") or record["dataset_attrs"]["name"])


def generator(problem: str, data_cfg: dict[str, Any]) -> tuple[Any, Any] | None:
    """(generator module, its DatasetConfig) of a generated dataset; None for an imported one."""
    if problem not in GENERATORS:
        return None
    module = importlib.import_module(GENERATORS[problem])
    return module, from_dict(module.DatasetConfig, data_cfg, "dataset")


def floor_baselines(split: Split) -> dict[str, dict[str, float]]:
    """{name: {field: rel_l2}} of the problem's physical floor on a split (airfoils: the free
    stream); empty for problems without one."""
    if split.schema.problem != "airfoils":
        return {}
    from training.airfoils.freestream import freestream_scores

    return {"freestream": freestream_scores(split)}


@dataclass(frozen=True)
class Serving:
    """What a manifest says about the served task: its name, a description and its domain."""

    task: str
    description: str
    domain: dict[str, Any]


def reference_split(data_dir: Path) -> Split:
    """The training split (the test split where only that one is there): the geometry the
    export traces with and the counts the manifest states."""
    for name in ("train", *splits_with_role(data_dir, "test")):
        if (data_dir / f"{name}.h5").exists():
            return load_split(data_dir, name)
    raise FileNotFoundError(f"{data_dir} holds no split to export against")


def serving(problem: str, data_cfg: dict[str, Any], split: Split, model: Any) -> Serving:
    """The manifest's task, description and domain. Airfoils keep the task the service has
    always known ("airfoil-flow", with NACA and flap ranges); every other dataset is a
    "geometry-fields" task described by its dataset alone."""
    if problem == "airfoils":
        return Serving(
            "airfoil-flow",
            "2-D incompressible potential flow (Hess-Smith panel method) around NACA 4-digit "
            "sections and slotted two-element configurations: u, v and Cp anywhere in the box",
            {
                "box": data_cfg["box"],
                "aoa_deg": data_cfg["aoa_deg"],
                "speed": data_cfg["speed"],
                "naca": {"m": data_cfg["m"], "p": data_cfg["p"], "t": data_cfg["t"]},
                "flap": {
                    "chord": data_cfg["flap_chord"],
                    "deflection_deg": data_cfg["flap_deflection_deg"],
                    "gap": data_cfg["flap_gap"],
                    "overlap": data_cfg["flap_overlap"],
                },
                "max_elements": 2,
                "n_encoder": int(data_cfg["n_encoder"]),
                "encoder_seed": ENCODER_SEED,
                "panels_per_element": data_cfg["panels_per_element"],
                "min_wall_distance": data_cfg["wall_offsets"][0],
            },
        )
    schema = split.schema
    lo, hi = model.cond_lo.tolist(), model.cond_hi.tolist()
    domain: dict[str, Any] = {
        "box": [list(r) for r in schema.box],
        "box_is_domain": schema.box_is_domain,
        "length_unit": schema.length_unit,
        # A field the graph multiplies by a condition trained on positive values only (stress
        # by the load) has no meaning for a value <= 0: the service refuses it.
        "conditions": [
            {
                "name": n,
                "units": u,
                "range": [lo[k], hi[k]],
                "positive": bool(k in model.cfg.field_scale and lo[k] > 0),
            }
            for k, (n, u) in enumerate(
                zip(schema.condition_names, schema.condition_units, strict=True)
            )
        ],
        "max_elements": int(split.polylines_padded.shape[1]),
        "n_encoder": int(split.encoder_points.shape[1]),
        "encoder_seed": ENCODER_SEED,
        "min_wall_distance": 0.0,
    }
    generated = generator(problem, data_cfg)
    if generated is not None and hasattr(generated[0], "shape_range"):
        domain["shape"] = generated[0].shape_range(generated[1])
    description = (
        f"{', '.join(schema.field_names)} from {schema.solver}"
        if generated is None or not hasattr(generated[0], "DESCRIPTION")
        else generated[0].DESCRIPTION
    )
    return Serving("geometry-fields", description, domain)
