"""The elasticity dataset generator: determinism, the geometry-dataset format, the test split's
dense set and data error, resuming, and the shipped config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import training.elasticity.dataset as ds
from training.common.config import from_dict, load_yaml
from training.geometry_data.format import Capacity, GeometryDataError, load_split

ROOT = Path(__file__).resolve().parents[1]


def tiny(**kw: Any) -> ds.DatasetConfig:
    # coarse meshes (~450 vertices, dense ~1,100) keep a sample well under a second
    base: dict[str, Any] = dict(name="tiny", n_train=2, n_val=1, n_test=1, h_min=0.03, h_max=0.1)
    return ds.DatasetConfig(**{**base, **kw})


def test_samples_depend_only_on_seed_split_and_index() -> None:
    cfg = tiny()
    v1, l1 = ds.sample_case(cfg, "train", 1)
    v2, l2 = ds.sample_case(tiny(n_train=50), "train", 1)
    assert np.array_equal(v1, v2) and l1 == l2
    v3, _ = ds.sample_case(cfg, "val", 1)
    assert not np.array_equal(v1, v3)
    assert cfg.load[0] <= l1 <= cfg.load[1] and len(v1) == cfg.n_void_points


def test_config_validation_and_fingerprint() -> None:
    with pytest.raises(ValueError, match=r"n_void_points|n_points"):
        tiny(n_void_points=64)
    with pytest.raises(ValueError, match="load range"):
        tiny(load=(5e4, 1e4))
    assert tiny().fingerprint() != tiny(load=(1e4, 5e4)).fingerprint()
    assert ds.void_range(tiny()) == {
        "centre": [0.5, 0.5],
        "r_min": 0.2,
        "r_max": pytest.approx(0.4),
        "n_void_points": 128,
        "load": [1e4, 1.2e5],
    }


def test_shipped_config_loads() -> None:
    raw = load_yaml(ROOT / "configs" / "elasticity-enf2enf.yaml")
    assert raw["family"] == "enf2enf" and raw["problem"] == "elasticity"
    cfg = from_dict(ds.DatasetConfig, raw["dataset"], "dataset")
    assert (cfg.n_train, cfg.n_val, cfg.n_test) == (2000, 100, 200)
    assert cfg.fingerprint() == ds.DatasetConfig(name=cfg.name).fingerprint()


def test_test_split_has_dense_set_and_data_error(tmp_path: Path) -> None:
    cfg = tiny()
    path = ds.generate_split(cfg, tmp_path, "test", progress=False, workers=1)
    split = load_split(tmp_path, "test")
    assert path.name == "test.h5" and len(split) == 1
    assert split.schema.problem == "elasticity"
    assert split.schema.field_names == ("von_mises", "ux", "uy")
    assert split.schema.condition_names == ("load",) and split.schema.box_is_domain
    pts, sdf, fields = split.sample_points(0)
    dpts, _, dfields = split.sample_points(0, dense=True)
    assert 3 * len(pts) < len(dpts) < 5 * len(pts)  # half the element size: ~4x the vertices
    assert sdf.min() > -1e-6 and np.isfinite(fields).all() and (fields[:, 0] >= 0).all()
    (void,) = split.polylines(0)
    assert void.shape == (128, 2)
    attrs = split.attrs
    assert json.loads(attrs["singular_points"]) == [[0.0, 0.0], [1.0, 0.0]]
    assert float(attrs["singular_radius"]) == cfg.singular_radius
    err = json.loads(attrs["data_error"])
    # the coarse test mesh: von Mises a few % off the half-size mesh, less without the corners
    assert 0 < err["von_mises_no_corners"]["mean"] <= err["von_mises"]["mean"] < 0.15
    assert err["displacement"]["mean"] < 0.01
    secs = json.loads(attrs["solve_seconds"])
    assert secs["coarse_mean"] > 0 and secs["fine_mean"] > secs["coarse_mean"]
    # the top edge's displacement is resolved on both meshes: they agree closely
    top, dtop = pts[:, 1] > 1 - 1e-6, dpts[:, 1] > 1 - 1e-6
    assert fields[top, 2].mean() == pytest.approx(dfields[dtop, 2].mean(), rel=0.01)


def test_an_interrupted_split_resumes_to_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny()
    real = ds.simulate

    def fail_on_second(cfg_: ds.DatasetConfig, split: str, index: int) -> dict[str, Any]:
        if index == 1:
            raise RuntimeError("interrupted")
        return real(cfg_, split, index)

    monkeypatch.setattr(ds, "simulate", fail_on_second)
    with pytest.raises(RuntimeError, match="interrupted"):
        ds.generate_split(cfg, tmp_path / "a", "train", progress=False, workers=1)
    assert (tmp_path / "a" / "train.h5.partial").exists()
    calls: list[int] = []

    def counting(cfg_: ds.DatasetConfig, split: str, index: int) -> dict[str, Any]:
        calls.append(index)
        return real(cfg_, split, index)

    monkeypatch.setattr(ds, "simulate", counting)
    ds.generate_split(cfg, tmp_path / "a", "train", progress=False, workers=1)
    assert calls == [1]  # sample 0 was kept
    resumed = load_split(tmp_path / "a", "train")
    fresh_path = ds.generate_split(cfg, tmp_path / "b", "train", progress=False, workers=1)
    fresh = load_split(fresh_path.parent, "train")
    assert np.array_equal(resumed.points, fresh.points, equal_nan=True)
    assert np.array_equal(resumed.fields, fresh.fields, equal_nan=True)
    assert json.loads(resumed.attrs["solve_seconds"])["coarse_mean"] > 0
    # a finished split from another config is not overwritten
    with pytest.raises(FileExistsError):
        ds.generate_split(tiny(seed=1), tmp_path / "a", "train", progress=False, workers=1)


def test_a_mesh_larger_than_the_capacity_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ds, "capacity", lambda cfg, split: Capacity(1, 128, 50, 64))
    with pytest.raises(GeometryDataError, match="raise max_points_margin"):
        ds.generate_split(tiny(), tmp_path, "val", progress=False, workers=1)
