"""Shared fixtures: tiny but real acoustic pipelines (FDTD data -> training -> ONNX export)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from training.tiny import tiny_acoustic_config


@dataclass
class TinyAcoustic:
    dim: int
    config: Path
    data: Path
    run: Path
    models: Path
    name: str

    @property
    def version_dir(self) -> Path:
        return self.models / self.name / "1"


@pytest.fixture(scope="module")
def single_torch_thread() -> Iterator[None]:
    """One torch thread for modules of tiny solver grids: this machine may be running a
    training job on the same two cores, and an oversubscribed intra-op pool makes each torch
    op ~100x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session", params=[2, 3], ids=["2d", "3d"])
def tiny_acoustic(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> TinyAcoustic:
    """Generate, train and export a tiny acoustic DeepONet through the CLI, once per session."""
    from training.cli import main

    dim = request.param
    root = tmp_path_factory.mktemp(f"acoustic{dim}d")
    cfg = tiny_acoustic_config(dim)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    t = TinyAcoustic(
        dim, config, root / "data", root / "run", root / "models", cfg["dataset"]["name"]
    )
    assert main(["generate", "acoustics", "--config", str(config), "--out", str(t.data)]) == 0
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--data",
                str(t.data),
                "--out",
                str(t.run),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert main(["export", "--run", str(t.run), "--out", str(t.models), "--data", str(t.data)]) == 0
    return t


def tiny_geometry_train(sensor_ny: int) -> dict[str, Any]:
    """The tiny enf2enf schedule: both stages and the baseline, a few steps each."""
    return {
        "steps": 10,
        "encoder_steps": 5,
        "encoder_batch": 4,
        "encoder_field_points": 16,
        "batch_samples": 4,
        "batch_points": 32,
        "warmup_steps": 2,
        "val_every": 5,
        "checkpoint_every": 5,
        "baseline_steps": 6,
        "baseline": {
            "sensor_nx": 4,
            "sensor_ny": sensor_ny,
            "branch_width": 8,
            "branch_depth": 1,
            "trunk_width": 8,
            "trunk_depth": 1,
            "n_basis": 4,
            "n_fourier": 2,
            "batch_samples": 4,
            "batch_points": 32,
            "warmup_steps": 2,
            "val_every": 3,
        },
    }


TINY_ENF2ENF = {"latent_grid": 2, "latent_dim": 4, "enc_hidden": 8, "dec_hidden": 8, "out_width": 8}


def tiny_airfoil_config() -> dict[str, Any]:
    """Small enough to generate, train (both stages + baseline) and export in seconds; every
    stage is the real one."""
    return {
        "family": "enf2enf",
        "problem": "airfoils",
        "dataset": {
            "name": "tiny-airfoils",
            "n_train_single": 6,
            "n_train_multi": 2,
            "n_val_single": 2,
            "n_val_multi": 1,
            "n_test": 3,
            "n_test_multi": 2,
            "panels_per_element": 40,
            "n_field": 96,
            "superres_factor": 4,
            "n_encoder": 64,
            "seed": 3,
        },
        # The shipped airfoil decoder's form (one relative MLP, one head, fewer Fourier
        # features); the tiny elasticity model keeps the paper's.
        "model": {
            **TINY_ENF2ENF,
            "dec_heads": 1,
            "dec_rff_features": 4,
            "dec_shared_relative": True,
            "field_scale": [1, 1, -1],
            "superposition": True,
        },
        "train": tiny_geometry_train(sensor_ny=3),
    }


def tiny_elasticity_config() -> dict[str, Any]:
    """The elastic cell on coarse meshes: real FEM solves, a few seconds in all."""
    return {
        "family": "enf2enf",
        "problem": "elasticity",
        "dataset": {
            "name": "tiny-elasticity",
            "n_train": 6,
            "n_val": 2,
            "n_test": 2,
            "h_min": 0.05,
            "h_max": 0.12,
            "n_encoder": 64,
            "seed": 5,
        },
        "model": {
            **TINY_ENF2ENF,
            "latent_bbox": [-0.6, 0.6, -0.6, 0.6],
            "field_scale": [0, 0, 0],
            "surface_shape": True,  # as the shipped model: the decoder takes the shape
        },
        "train": tiny_geometry_train(sensor_ny=4),
    }


@dataclass
class TinyGeometry:
    config: Path
    data: Path
    run: Path
    models: Path
    name: str

    @property
    def version_dir(self) -> Path:
        return self.models / self.name / "1"


def _tiny_geometry(root: Path, cfg: dict[str, Any]) -> TinyGeometry:
    """Generate, train and export through the CLI, as a user would."""
    from training.cli import main

    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    t = TinyGeometry(config, root / "data", root / "run", root / "models", cfg["dataset"]["name"])
    generate = ["generate", cfg["problem"], "--config", str(config), "--out", str(t.data)]
    assert main(generate) == 0
    train_args = ["--config", str(config), "--data", str(t.data), "--out", str(t.run)]
    assert main(["train", *train_args, "--device", "cpu"]) == 0
    assert main(["export", "--run", str(t.run), "--out", str(t.models), "--data", str(t.data)]) == 0
    return t


@pytest.fixture(scope="session")
def tiny_airfoil(tmp_path_factory: pytest.TempPathFactory) -> TinyGeometry:
    """A tiny airfoil enf2enf (panel method, training, export), once per session."""
    return _tiny_geometry(tmp_path_factory.mktemp("airfoil"), tiny_airfoil_config())


@pytest.fixture(scope="session")
def tiny_elasticity(tmp_path_factory: pytest.TempPathFactory) -> TinyGeometry:
    """A tiny elasticity enf2enf (real FEM on coarse meshes, training, export), once."""
    return _tiny_geometry(tmp_path_factory.mktemp("elasticity"), tiny_elasticity_config())
