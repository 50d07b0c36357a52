"""`python -m training report`: a self-contained page per exported version, whose reference is
the solver's and whose model is the served graphs, and which leaves the version servable."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from PIL import Image

from training.cli import main
from training.reports import REPORT
from training.reports.page import fmt

PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _report(version_dir: Path, data: Path, cases: int = 2) -> tuple[str, bytes]:
    """Run the CLI; (page, manifest bytes before) — the page must not touch the manifest."""
    before = (version_dir / "manifest.json").read_bytes()
    assert main(["report", str(version_dir), "--data", str(data), "--cases", str(cases)]) == 0
    assert (version_dir / "manifest.json").read_bytes() == before
    return (version_dir / REPORT).read_text(encoding="utf-8"), before


def _pngs(page: str) -> list[Image.Image]:
    images = []
    for data in PNG.findall(page):
        raw = base64.b64decode(data, validate=True)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n")
        img = Image.open(io.BytesIO(raw))
        img.load()  # decodes every pixel: a truncated or corrupt PNG raises here
        assert img.width > 100 and img.height > 100
        images.append(img)
    return images


def _self_contained(page: str) -> None:
    # Nothing fetched from elsewhere: no scripts, stylesheets, frames or remote images.
    for needle in ("<script", "<link", "<iframe", "http://", "https://", "url("):
        assert needle not in page, needle
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))


def _metrics_shown(page: str, metrics: dict[str, Any]) -> None:
    assert '<table class="metrics">' in page
    table = page.split('<table class="metrics">', 1)[1].split("</table>", 1)[0]
    value = metrics["rel_l2"]
    shown = [("rel_l2", value)] if not isinstance(value, dict) else list(value.items())
    for key, val in shown:
        assert key in table
        assert fmt(val) in table  # the manifest's number, not a recomputed one


def _still_served(version_dir: Path, name: str, before: bytes) -> None:
    """The report beside the graphs changes neither what loads nor the fingerprint."""
    from app.repository import load_version
    from app.runtime import Runtime

    loaded = load_version(version_dir, name, 1, Runtime("cpu", 1))
    assert loaded.fingerprint == hashlib.sha256(before).hexdigest()


def test_acoustic_report(tiny_acoustic: Any, single_torch_thread: None) -> None:
    t = tiny_acoustic
    page, before = _report(t.version_dir, t.data)
    manifest = json.loads(before)
    _self_contained(page)
    _metrics_shown(page, manifest["metrics"])
    # Loss curves (from the run, which the export recorded), then one figure per case.
    assert len(_pngs(page)) == 1 + 2
    assert str(t.run / "history.json") in page
    assert f"the stored test split {t.data / 'test.h5'}" in page
    _still_served(t.version_dir, t.name, before)


def test_acoustic_reference_is_the_solvers(
    tiny_acoustic: Any, tmp_path: Path, single_torch_thread: None
) -> None:
    from training.reports.acoustics import reference_cases

    t = tiny_acoustic
    manifest = json.loads((t.version_dir / "manifest.json").read_text())
    stored = reference_cases(manifest, t.data, 2)
    with h5py.File(t.data / "test.h5", "r") as f:
        np.testing.assert_array_equal(stored.reference, f["pressure"][:2])
        np.testing.assert_array_equal(stored.sources, f["sources"][:2])
    # Without the data, the same cases are solved again from the manifest's config alone.
    fresh = reference_cases(manifest, tmp_path / "absent", 2)
    assert stored.stored and not fresh.stored
    np.testing.assert_allclose(fresh.sources, stored.sources)
    np.testing.assert_allclose(fresh.receivers, stored.receivers)
    np.testing.assert_allclose(fresh.times, stored.times)
    peak = float(np.abs(stored.reference).max())
    np.testing.assert_allclose(fresh.reference, stored.reference, rtol=0, atol=1e-5 * peak)
    assert not (tmp_path / "absent").exists()  # a report never writes data


def test_airfoil_report(tiny_airfoil: Any) -> None:
    t = tiny_airfoil
    page, before = _report(t.version_dir, t.data, cases=3)
    manifest = json.loads(before)
    _self_contained(page)
    _metrics_shown(page, manifest["metrics"])
    # Loss curves, three field figures (two sections, one two-element), surface Cp.
    assert len(_pngs(page)) == 1 + 3 + 1
    assert "Surface pressure against the panel solver" in page
    assert "test_multi #0 (two-element)" in page
    _still_served(t.version_dir, t.name, before)


def test_airfoil_reference_is_the_solvers(tiny_airfoil: Any, tmp_path: Path) -> None:
    from training.airfoils.panel import solve
    from training.reports.airfoils import reference_cases

    t = tiny_airfoil
    manifest = json.loads((t.version_dir / "manifest.json").read_text())
    stored, origin = reference_cases(manifest, t.data, 3)
    assert "stored split" in origin and all(c.stored for c in stored)
    fresh, origin = reference_cases(manifest, tmp_path / "absent", 3)
    assert "made again" in origin and not any(c.stored for c in fresh)
    for a, b in zip(stored, fresh, strict=True):
        with h5py.File(t.data / f"{a.split}.h5", "r") as f:
            np.testing.assert_array_equal(a.fields, f["fields"][a.index])
        assert (a.split, a.index) == (b.split, b.index)
        np.testing.assert_allclose(b.fields, a.fields, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b.surface_cp, a.surface_cp, rtol=1e-6, atol=1e-6, equal_nan=True)
        # The pictures' reference (a panel solution of the case) is the data's solver.
        aoa, speed = (float(v) for v in a.conditions)
        again = solve(a.polylines, aoa_deg=aoa, speed=speed).fields(a.points.astype(np.float64))
        np.testing.assert_allclose(again, a.fields, rtol=1e-4, atol=1e-4)


def test_a_missing_run_is_said_not_fatal(tiny_airfoil: Any, tmp_path: Path) -> None:
    """A shipped version whose run folder is not here: the page says so and shows what the
    version itself records."""
    from training.reports.history import history_of

    t = tiny_airfoil
    copy = tmp_path / "models" / t.name / "1"
    shutil.copytree(t.version_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["commands"]["export"] = "python -m training export --run runs/gone"
    manifest["commands"]["train"] = []
    found = history_of(manifest, copy)
    assert "not present locally" in found.note and "runs/gone" in found.note
    assert found.png is None and found.final == manifest["training"]["final_val"]
    # With the loss figure an export copies beside the graphs, that figure is shown.
    (copy / "loss.png").write_bytes((t.run / "loss.png").read_bytes())
    found = history_of(manifest, copy)
    assert found.png is not None and "loss.png of the version folder" in found.note


@pytest.mark.parametrize("value, shown", [(0.0123456, "0.01235"), ([0.1, 0.2], "[0.1, 0.2]")])
def test_metric_format(value: Any, shown: str) -> None:
    assert fmt(value) == shown
