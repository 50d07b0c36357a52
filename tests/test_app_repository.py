"""The model repository: verified loading, refusals with reasons, atomic reload."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.repository import ModelRepository
from app.settings import Settings


def copy_version(src: Path, dst: Path, **manifest_changes: Any) -> Path:
    """Copy a version folder, rewriting its manifest's name/version to fit the new place."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest.update({"name": dst.parent.name, "version": dst.name, **manifest_changes})
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def request_body(dim: int) -> dict[str, Any]:
    source = [0.5, 0.45, 0.4][:dim]
    return {"source": source, "receivers": [[0.2] * dim, [0.3] * dim], "times": [0.0, 0.002]}


def refusals(client: TestClient) -> dict[tuple[str, str], str]:
    return {
        (r["name"], r["version"]): r["reason"]
        for r in client.get("/health/ready").json()["refused"]
    }


def test_corrupted_graph_is_refused_while_the_others_serve(
    tiny_acoustic: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name, good = tiny_acoustic.name, tiny_acoustic.version_dir
    root = tmp_path / "models"
    corrupt = copy_version(good, root / name / "1")
    flip_a_byte(corrupt / "trunk.onnx")
    copy_version(good, root / name / "2")
    copy_version(good, root / "other-room" / "1")

    with TestClient(create_app(Settings(model_dir=root))) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        served = {(m["name"], m["version"]) for m in ready.json()["models"]}
        assert served == {(name, "2"), ("other-room", "1")}
        reason = refusals(client)[(name, "1")]
        assert "trunk" in reason and "sha256" in reason
        logged = [
            r
            for r in caplog.records
            if r.name == "fieldserve.repository" and r.levelname == "ERROR"
        ]
        assert len(logged) == 1 and reason in logged[0].getMessage()
        assert f"{name} version 1" in logged[0].getMessage()

        body = request_body(tiny_acoustic.dim)
        latest = client.post(f"/v1/models/{name}/predict", json=body)
        assert latest.status_code == 200 and latest.json()["version"] == "2"
        other = client.post("/v1/models/other-room/predict", json=body)
        assert other.json()["pressure"] == latest.json()["pressure"]  # same graphs
        refused = client.post(f"/v1/models/{name}/versions/1/predict", json=body)
        assert refused.status_code == 404 and refused.json()["field"] == "version"


def test_each_kind_of_broken_version_is_refused_with_its_reason(
    tiny_acoustic: Any, tmp_path: Path
) -> None:
    good = tiny_acoustic.version_dir
    root = tmp_path / "models"
    copy_version(good, root / "ok" / "1")
    (copy_version(good, root / "missing-file" / "1") / "branch.onnx").unlink()
    (copy_version(good, root / "bad-json" / "1") / "manifest.json").write_text("{not json")
    (root / "no-manifest" / "1").mkdir(parents=True)
    # Not an ONNX graph, but its hash is honest: it reaches onnxruntime, which refuses it.
    garbage = b"this is not an onnx graph"
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["graphs"]["trunk"]["sha256"] = hashlib.sha256(garbage).hexdigest()
    bad_session = copy_version(good, root / "bad-session" / "1", graphs=manifest["graphs"])
    (bad_session / "trunk.onnx").write_bytes(garbage)
    copy_version(good, root / "misplaced" / "3", version="1")  # manifest says another version
    copy_version(good, root / "unknown-family" / "1", family="fno")
    copy_version(
        good,
        root / "traversal" / "1",
        graphs={
            **manifest["graphs"],
            "trunk": {**manifest["graphs"]["trunk"], "file": "../../ok/1/trunk.onnx"},
        },
    )
    copy_version(good, root / "ok" / "01")
    shutil.copytree(good, root / "ok" / ".2.partial")  # an export in progress: ignored

    with TestClient(create_app(Settings(model_dir=root))) as client:
        ready = client.get("/health/ready").json()
        assert [(m["name"], m["version"]) for m in ready["models"]] == [("ok", "1")]
        reasons = refusals(client)
        expected = {
            ("missing-file", "1"): "missing",
            ("bad-json", "1"): "not valid JSON",
            ("no-manifest", "1"): "no manifest.json",
            ("bad-session", "1"): "onnxruntime cannot load",
            ("misplaced", "3"): "misplaced/1",
            ("unknown-family", "1"): "unknown model family 'fno'",
            ("traversal", "1"): "plain name",
            ("ok", "01"): "leading zeros",
        }
        assert set(reasons) == set(expected)
        for key, words in expected.items():
            assert words in reasons[key], (key, reasons[key])
        assert (
            client.post("/v1/models/ok/predict", json=request_body(tiny_acoustic.dim)).status_code
            == 200
        )


def test_nothing_to_serve_is_not_ready(tmp_path: Path, tiny_acoustic: Any) -> None:
    for root in [tmp_path / "absent", tmp_path]:
        with TestClient(create_app(Settings(model_dir=root))) as client:
            ready = client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable" and ready.json()["models"] == []
            assert ready.json()["execution_provider"] is None
            assert client.get("/health/live").status_code == 200
            assert client.get("/v1/models").json() == {"models": []}
            r = client.post("/v1/models/x/predict", json=request_body(tiny_acoustic.dim))
            assert r.status_code == 404


def test_reload_picks_up_new_versions_and_swaps_atomically(
    tiny_acoustic: Any, tmp_path: Path
) -> None:
    name, good = tiny_acoustic.name, tiny_acoustic.version_dir
    root = tmp_path / "models"
    copy_version(good, root / name / "1")
    body = request_body(tiny_acoustic.dim)

    with TestClient(create_app(Settings(model_dir=root))) as client:
        repository: ModelRepository = client.app.state.repository  # type: ignore[attr-defined]
        before = repository.snapshot
        v1 = before.get(name, "1")
        assert client.post(f"/v1/models/{name}/predict", json=body).json()["version"] == "1"

        copy_version(good, root / name / "2")
        report = client.post("/v1/admin/reload")
        assert report.status_code == 200
        assert report.json()["added"] == [f"{name}/2"] and report.json()["removed"] == []
        latest = client.post(f"/v1/models/{name}/predict", json=body).json()
        assert latest["version"] == "2"
        assert client.get(f"/v1/models/{name}").json()["versions"] == ["1", "2"]
        # Unchanged versions keep their sessions; the old snapshot is untouched and usable.
        assert repository.snapshot.get(name, "1") is v1
        assert [m.version for m in before] == [1]
        pinned = client.post(f"/v1/models/{name}/versions/1/predict", json=body).json()
        np.testing.assert_array_equal(pinned["pressure"], latest["pressure"])

        flip_a_byte(root / name / "2" / "branch.onnx")
        report = client.post("/v1/admin/reload").json()
        assert report["removed"] == [f"{name}/2"]
        assert [(r["name"], r["version"]) for r in report["refused"]] == [(name, "2")]
        assert client.post(f"/v1/models/{name}/predict", json=body).json()["version"] == "1"


@pytest.mark.parametrize("broken", ["branch.onnx", "trunk.onnx"])
def test_verification_happens_before_loading(
    tiny_acoustic: Any, tmp_path: Path, broken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph whose hash fails never reaches onnxruntime, not even the sibling graphs."""
    import app.runtime

    created: list[bytes] = []
    real = app.runtime.ort.InferenceSession

    def spy(model: Any, *args: Any, **kwargs: Any) -> Any:
        created.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(app.runtime.ort, "InferenceSession", spy)
    root = tmp_path / "models"
    flip_a_byte(copy_version(tiny_acoustic.version_dir, root / "m" / "1") / broken)
    with TestClient(create_app(Settings(model_dir=root))) as client:
        assert client.get("/health/ready").status_code == 503
    assert created == []
