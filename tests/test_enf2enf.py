"""enf2enf end to end: panel data -> two-stage training -> ONNX export -> evaluation.

The graphs are checked against torch (the encoder's unrolled inner loop in particular), the
inner loop must fit held-out geometries better than the shared initial code, and the decoder
must be permutation-equivariant in its query points.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import TinyGeometry, tiny_airfoil_config, tiny_elasticity_config

from geometry.airfoils import BOX, naca4
from geometry.polylines import signed_distance, surface_features
from training.cli import main
from training.common.config import ConfigError, from_dict
from training.common.files import sha256_file
from training.enf2enf.mirror import Mirror
from training.enf2enf.model import EquivariantCrossAttention
from training.enf2enf.train import Tensors, TrainConfig, load_model, train
from training.geometry_data.format import Split, load_split


def _split(t: TinyGeometry, name: str) -> Split:
    return load_split(t.data, name)


def test_end_to_end_outputs(tiny_airfoil: TinyGeometry) -> None:
    for name in ("checkpoint.pt", "loss.png", "field.png", "history.json", "baseline_deeponet.pt"):
        assert (tiny_airfoil.run / name).stat().st_size > 0, name
    history = json.loads((tiny_airfoil.run / "history.json").read_text())
    assert [h["stage"] for h in history] == ["encoder", "decoder"]
    manifest = json.loads((tiny_airfoil.version_dir / "manifest.json").read_text())
    assert manifest["family"] == "enf2enf" and manifest["task"] == "airfoil-flow"
    assert set(manifest["graphs"]) == {"encoder", "decoder"}
    for graph in [*manifest["graphs"].values(), *manifest["baselines"].values()]:
        assert sha256_file(tiny_airfoil.version_dir / graph["file"]) == graph["sha256"]
    assert manifest["graphs"]["encoder"]["inputs"][0]["shape"] == [64, 2]
    assert manifest["graphs"]["decoder"]["inputs"][2]["shape"] == [-1, 2]
    assert manifest["domain"]["n_encoder"] == 64 and manifest["domain"]["encoder_seed"] == 0
    assert manifest["commands"]["generate"].startswith("python -m training generate airfoils")
    assert "train" in " ".join(manifest["commands"]["train"])
    metrics = manifest["metrics"]
    assert metrics["n_test"] == 3 and metrics["n_test_multi"] == 2
    for key in ("rel_l2", "rel_l2_multi", "superres_ratio_fields"):
        assert set(metrics[key]) == {"u", "v", "cp"}
    for key in ("baseline_freestream", "baseline_deeponet"):
        assert set(metrics[key]) == {"single", "multi"}
    # Free stream predicts Cp = 0 everywhere: its relative Cp error is exactly 1.
    assert metrics["baseline_freestream"]["single"]["cp"] == pytest.approx(1.0)
    assert np.isfinite(metrics["superres_ratio"])


def test_encoder_onnx_matches_torch(tiny_airfoil: TinyGeometry) -> None:
    """The unrolled inner loop (forward + backward of every step) in ONNX equals torch's."""
    model, _ = load_model(tiny_airfoil.run)
    test = _split(tiny_airfoil, "test_multi")
    session = ort.InferenceSession(str(tiny_airfoil.version_dir / "encoder.onnx"))
    for i in range(len(test)):
        pts, sdf = test.encoder_points[i], test.encoder_sdf[i]
        got = session.run(None, {"points": pts, "sdf": sdf})[0]
        encoded = model.encode(torch.from_numpy(pts)[None], torch.from_numpy(sdf)[None])
        want = encoded[0].detach().numpy()
        assert got.shape == (model.cfg.n_latents, model.cfg.latent_dim)
        # The inner loop moved the codes away from the shared initialisation.
        assert np.abs(want - model.c0.detach().numpy()).max() > 1e-6
        assert np.abs(got - want).max() < 1e-5 * max(1.0, float(np.abs(want).max()))


@pytest.mark.parametrize("n_points", [5, 1500])
@pytest.mark.parametrize(
    "tiny", ["tiny_airfoil", "tiny_elasticity"], ids=["plain", "surface-shape"]
)
def test_decoder_onnx_matches_torch(
    tiny: str, n_points: int, request: pytest.FixtureRequest
) -> None:
    t: TinyGeometry = request.getfixturevalue(tiny)
    model, _ = load_model(t.run)
    test = _split(t, "test")
    latents = model.encode(
        torch.from_numpy(test.encoder_points[:1]), torch.from_numpy(test.encoder_sdf[:1])
    )
    latents_np = latents[0].detach().numpy()
    assert test.dense_points is not None and test.dense_sdf is not None
    pts = test.dense_points[0, :n_points]
    sdf = test.dense_sdf[0, :n_points]
    cond = test.conditions[0]
    feeds = {"latents": latents_np, "conditions": cond, "points": pts, "sdf": sdf}
    shape = None
    if model.cfg.surface_shape:
        local = surface_features(pts, test.polylines(0))[:, 1:].astype(np.float32)
        feeds["shape"], shape = local, torch.from_numpy(local)[None]
    session = ort.InferenceSession(str(t.version_dir / "decoder.onnx"))
    assert [i.name for i in session.get_inputs()] == list(feeds)
    got = session.run(None, feeds)
    with torch.no_grad():
        want = model.decode(
            latents.detach(),
            torch.from_numpy(cond)[None],
            torch.from_numpy(pts)[None],
            torch.from_numpy(sdf)[None],
            shape,
        )[0].numpy()
        if shape is not None:  # the shape is used, not ignored
            other = model.decode(
                latents.detach(),
                torch.from_numpy(cond)[None],
                torch.from_numpy(pts)[None],
                torch.from_numpy(sdf)[None],
                shape * torch.tensor([2.0, -1.0, -1.0]),
            )[0].numpy()
            assert np.abs(other - want).max() > 1e-4 * np.abs(want).max()
    assert got[0].shape == (len(pts), 3)
    assert np.abs(got[0] - want).max() < 1e-5 * max(1.0, float(np.abs(want).max()))


@pytest.mark.parametrize("d_pos", [2, 3], ids=["2d", "2d+sdf"])
@pytest.mark.parametrize(
    ("features", "shared"), [(0, False), (16, True)], ids=["paper", "shared-narrow"]
)
def test_cross_attention_equals_the_per_pair_formula(
    d_pos: int, features: int, shared: bool
) -> None:
    # The module takes sines once per query (sin(a - b) = sin a cos b - cos a sin b), folds the
    # query's last layer into the keys, the value modulation into per-latent matrices and
    # beta's last layer after the average: the same numbers as the paper's formula written
    # out pair by pair (or, shared, with one relative MLP serving query and value).
    gen = torch.Generator().manual_seed(3)
    hidden, heads = 32, 2
    attn = EquivariantCrossAttention(d_pos, hidden, heads, 2.0, 1.0, 0.5, gen, features, shared)
    x = torch.rand(2, 50, d_pos, generator=gen) * 2 - 1
    p = torch.rand(9, d_pos, generator=gen) * 2 - 1
    a = torch.randn(2, 9, hidden, generator=gen)
    with torch.no_grad():
        for param in attn.parameters():  # biases start at zero in places: make every term count
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
        rel = x[:, :, None, :] - p[None, None, :, :]  # (B, N, L, D)
        q = attn.to_q(attn.rff_q(rel)).reshape(2, 50, 9, heads, -1)  # (B, N, L, heads, dh)
        k = attn.to_k(a).reshape(2, 1, 9, heads, -1)
        if attn.rff_v is None:  # shared: gamma, beta from the query MLP's hidden layer
            hidden_q = attn.to_q[1](attn.to_q[0](attn.rff_q(rel)))
            gamma, beta = attn.to_gb(hidden_q).chunk(2, dim=-1)  # (B, N, L, H) each
        else:
            gamma, beta = attn.to_gb(attn.rff_v(rel)).chunk(2, dim=-1)
        v = (attn.to_v(a)[:, None] * (1 + gamma) + beta).reshape(2, 50, 9, heads, -1)
        window = (rel * rel).sum(-1, keepdim=True) / attn.sigma**2  # (B, N, L, 1)
        att = torch.softmax((q * k).sum(-1) / math.sqrt(hidden // heads) - window, dim=2)
        direct = attn.out((att[..., None] * v).sum(2).reshape(2, 50, hidden))  # (B, N, H)
        got = attn(x, p, a)
    assert got.shape == direct.shape
    assert float((got - direct).abs().max()) <= 1e-5 * float(direct.abs().max())


def test_inner_loop_reduces_sdf_loss_on_held_out_geometries(tiny_airfoil: TinyGeometry) -> None:
    model, _ = load_model(tiny_airfoil.run)
    for split in ("test", "test_multi"):
        data = _split(tiny_airfoil, split)
        pts, sdf = torch.from_numpy(data.encoder_points), torch.from_numpy(data.encoder_sdf)
        latents = model.encode(pts, sdf).detach()
        with torch.no_grad():
            target = model.norm_sdf(sdf)
            init = model.c0.expand(len(pts), -1, -1)
            before = ((model.reconstruct_sdf(init, pts) - target) ** 2).mean(1)  # per sample
            after = ((model.reconstruct_sdf(latents, pts) - target) ** 2).mean(1)
        assert (after < before).all(), (split, before, after)


def test_decoder_is_permutation_equivariant_in_queries(tiny_airfoil: TinyGeometry) -> None:
    test = _split(tiny_airfoil, "test")
    pts, sdf, cond = test.points[1], test.sdf[1], test.conditions[1]
    perm = np.random.default_rng(0).permutation(len(pts))
    enc = ort.InferenceSession(str(tiny_airfoil.version_dir / "encoder.onnx"))
    dec = ort.InferenceSession(str(tiny_airfoil.version_dir / "decoder.onnx"))
    lat = enc.run(None, {"points": test.encoder_points[1], "sdf": test.encoder_sdf[1]})[0]

    def run(p: np.ndarray, s: np.ndarray) -> np.ndarray:
        return dec.run(None, {"latents": lat, "conditions": cond, "points": p, "sdf": s})[0]

    np.testing.assert_allclose(run(pts[perm], sdf[perm]), run(pts, sdf)[perm], atol=1e-6)


def _assert_close(got: Any, want: Any, where: str = "metrics") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for key in want:
            _assert_close(got[key], want[key], f"{where}.{key}")
    elif want is None:
        assert got is None, where
    else:
        assert got == pytest.approx(want, rel=1e-6), where


def test_manifest_metrics_equal_evaluate(
    tiny_airfoil: TinyGeometry, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    args = ["evaluate", str(tiny_airfoil.version_dir), "--data", str(tiny_airfoil.data), "--json"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    manifest = json.loads((tiny_airfoil.version_dir / "manifest.json").read_text())
    _assert_close(printed, manifest["metrics"])


@pytest.mark.parametrize(
    "tiny", ["tiny_airfoil", "tiny_elasticity"], ids=["plain", "surface-shape"]
)
def test_run_dir_evaluates_like_the_export(tiny: str, request: pytest.FixtureRequest) -> None:
    from training.enf2enf.evaluate import evaluate_model_dir

    t: TinyGeometry = request.getfixturevalue(tiny)
    torch_metrics = evaluate_model_dir(t.run, t.data)
    manifest = json.loads((t.version_dir / "manifest.json").read_text())
    for key in ("rel_l2", "rel_l2_multi"):
        if key in manifest["metrics"]:
            assert torch_metrics[key] == pytest.approx(manifest["metrics"][key], rel=1e-4)


def test_evaluate_regenerates_missing_test_data(tiny_airfoil: TinyGeometry, tmp_path: Path) -> None:
    """A fresh clone has no data/: evaluate rebuilds the held-out splits from the manifest."""
    from training.enf2enf.evaluate import evaluate_model_dir

    metrics = evaluate_model_dir(tiny_airfoil.version_dir, data_dir=tmp_path / "fresh")
    manifest = json.loads((tiny_airfoil.version_dir / "manifest.json").read_text())
    assert metrics["rel_l2"] == pytest.approx(manifest["metrics"]["rel_l2"], rel=1e-5)
    assert (tmp_path / "fresh" / "test_multi.h5").exists()


def test_export_refuses_to_overwrite_a_version(tiny_airfoil: TinyGeometry) -> None:
    args = ["export", "--run", str(tiny_airfoil.run), "--out", str(tiny_airfoil.models)]
    assert main([*args, "--version", "1", "--data", str(tiny_airfoil.data)]) == 2
    assert not list((tiny_airfoil.models / tiny_airfoil.name).glob(".*partial"))


@pytest.mark.parametrize("split_at", [3, 7], ids=["in-encoder-stage", "in-decoder-stage"])
def test_resumed_training_equals_uninterrupted(
    tiny_airfoil: TinyGeometry, tmp_path: Path, split_at: int
) -> None:
    cfg = tiny_airfoil_config()
    base = {**cfg["train"], "baseline_steps": 0, "val_every": 2, "checkpoint_every": 2}
    full = from_dict(TrainConfig, {**base, "steps": 9})
    part = from_dict(TrainConfig, {**base, "steps": split_at})
    kw: dict[str, Any] = {"device": "cpu", "progress": False}
    train(tmp_path / "straight", tiny_airfoil.data, cfg["model"], full, **kw)
    train(tmp_path / "resumed", tiny_airfoil.data, cfg["model"], part, **kw)
    state = train(tmp_path / "resumed", tiny_airfoil.data, cfg["model"], full, **kw)
    assert state.step == 9
    a, _ = load_model(tmp_path / "straight")
    b, _ = load_model(tmp_path / "resumed")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=name)


def test_mirror_reflects_the_geometry_and_flips_the_named_fields(
    tiny_elasticity: TinyGeometry,
) -> None:
    split = _split(tiny_elasticity, "train")
    data = Tensors.of(split, torch.device("cpu"), with_shape=True)
    mirror = Mirror.of(0, 0.5, ["ux"], split.schema)
    assert mirror is not None
    both = data.with_mirror(mirror)
    sign = torch.tensor([1.0, -1.0, 1.0])  # von_mises, ux, uy
    s = len(data.sdf)
    assert both.points.shape[0] == both.enc_points.shape[0] == 2 * s
    torch.testing.assert_close(both.points[s:, :, 0], 1.0 - data.points[..., 0])
    torch.testing.assert_close(both.fields[s:], data.fields * sign)
    torch.testing.assert_close(both.conditions[s:], data.conditions)
    # The stored SDF is kept: it must be the reflected void's SDF at the reflected points.
    void = split.polylines(0)[0] * np.array([-1.0, 1.0]) + np.array([1.0, 0.0])
    n = int(split.n_points[0])
    mirrored = both.points[s, :n].numpy().astype(np.float64)
    np.testing.assert_allclose(
        signed_distance(mirrored, [void[::-1]]), both.sdf[s, :n].numpy(), atol=1e-5
    )
    # So must the surface shape: the curvature kept, the normal reflected. On the void itself
    # (its mesh vertices) the nearest segment is a matter of rounding, and the normal with it.
    assert both.shape is not None
    off = np.abs(both.sdf[s, :n].numpy()) > 1e-6
    assert off.sum() > n // 2
    want = surface_features(mirrored, [void[::-1]])
    got = both.shape[s, :n].numpy()
    np.testing.assert_allclose(want[:, 1], got[:, 0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(want[off, 2:], got[off, 1:], atol=1e-4)


def test_training_from_another_runs_encoder(tiny_elasticity: TinyGeometry, tmp_path: Path) -> None:
    cfg = tiny_elasticity_config()
    tc = from_dict(
        TrainConfig,
        {
            **cfg["train"],  # the baseline too: it trains on the mirrored set as well
            "encoder_from": str(tiny_elasticity.run),
            "mirror_axis": 0,
            "mirror_about": 0.5,
            "mirror_negate": ["ux"],
        },
    )
    state = train(tmp_path / "run", tiny_elasticity.data, cfg["model"], tc, progress=False)
    assert state.step == tc.steps
    assert {h["stage"] for h in state.history} == {"decoder"}  # stage 1 was skipped
    assert (tmp_path / "run" / "baseline_deeponet.pt").exists()
    ours, _ = load_model(tmp_path / "run")
    theirs, source = load_model(tiny_elasticity.run)
    assert state.commands == source["state"]["commands"]  # the encoder's run made this model too
    for name in ("c0", "alpha", "sdf_lo", "box_hi"):
        torch.testing.assert_close(ours.state_dict()[name], theirs.state_dict()[name])
    with pytest.raises(ConfigError, match="latent_dim 4 there, 8 here"):
        train(
            tmp_path / "other",
            tiny_elasticity.data,
            {**cfg["model"], "latent_dim": 8},
            tc,
            progress=False,
        )
    bad = from_dict(TrainConfig, {**cfg["train"], "mirror_axis": 0, "mirror_negate": ["uz"]})
    with pytest.raises(ConfigError, match="uz"):
        train(tmp_path / "bad", tiny_elasticity.data, cfg["model"], bad, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda(tiny_airfoil: TinyGeometry, tmp_path: Path) -> None:
    cfg = tiny_airfoil_config()
    tc = from_dict(TrainConfig, {**cfg["train"], "baseline_steps": 3})
    state = train(
        tmp_path / "cuda", tiny_airfoil.data, cfg["model"], tc, device="cuda", progress=False
    )
    assert state.step == tc.steps
    assert np.isfinite(state.history[-1]["val_rel_l2"])


def test_export_parity_with_superposition_head(tmp_path: Path) -> None:
    """The (cos a, sin a) output head exports too; export_graphs checks parity itself."""
    from training.enf2enf.export import export_graphs
    from training.enf2enf.model import Enf2Enf, Enf2EnfConfig

    torch.manual_seed(0)
    cfg = Enf2EnfConfig(
        latent_dim=4,
        enc_hidden=8,
        dec_hidden=8,
        out_width=8,
        field_scale=(1, 1, -1),
        superposition=True,
    )
    model = Enf2Enf(cfg)
    export_graphs(model, tmp_path, [naca4("2412", 40)], n_encoder=48, box=BOX)
    dec = ort.InferenceSession(str(tmp_path / "decoder.onnx"))
    lat = np.zeros((cfg.n_latents, cfg.latent_dim), np.float32)
    far = np.array([[1.45, 0.7]], np.float32)
    cond = np.array([30.0, 2.0], np.float32)
    out = dec.run(None, {"latents": lat, "conditions": cond, "points": far, "sdf": far[:, 0]})[0]
    assert out.shape == (1, 3)
