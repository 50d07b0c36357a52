"""Promotion: an export is a candidate, "latest" is the highest promoted version, and
`python -m training promote` refuses a version whose metric is worse unless --force."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers_serving import air_receivers, manifest_of, sources_in_region

from app.main import create_app
from app.promotion import PromotionRecordError, parse
from app.settings import Settings
from training import promotion
from training.cli import main

ROOT = Path(__file__).resolve().parents[1]
# One room is enough: promotion does not depend on the dimension.
TWO_D = pytest.mark.parametrize("tiny_acoustic", [2], indirect=True, ids=["2d"])


@pytest.fixture(scope="module")
def template(tiny_acoustic: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's repository (version 1, exported first) plus a second export of the
    same run: a model repository as a user has it after retraining."""
    root = tmp_path_factory.mktemp("promotion") / "models"
    shutil.copytree(tiny_acoustic.models, root)
    args = ["export", "--run", str(tiny_acoustic.run), "--out", str(root)]
    assert main([*args, "--data", str(tiny_acoustic.data)]) == 0
    return root


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(template, root)
    return root


def worse_copy(model_root: Path, source: int, version: int, factor: float) -> Path:
    """Version `source` again as `version`, its evaluated error `factor` times larger (the
    graphs, and so their sha256s, are untouched: the service serves it)."""
    folder = model_root / str(version)
    shutil.copytree(model_root / str(source), folder)
    manifest = manifest_of(folder)
    manifest["version"] = str(version)
    manifest["metrics"]["rel_l2"] *= factor
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def request(model_root: Path, tiny_acoustic: Any) -> dict[str, Any]:
    manifest = manifest_of(model_root / "1")
    (source,) = sources_in_region(manifest, 1)
    return {
        "source": source,
        "receivers": air_receivers(manifest, 2).tolist(),
        "times": [0.001, 0.002],
    }


@pytest.fixture
def serve(repo: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=repo))) as client:
        yield client


def summary(client: TestClient, name: str) -> dict[str, Any]:
    (model,) = [m for m in client.get("/v1/models").json()["models"] if m["name"] == name]
    assert model == {
        k: v for k, v in client.get(f"/v1/models/{name}").json().items() if k != "manifest"
    }
    return model


def reload(client: TestClient) -> dict[str, Any]:
    r = client.post("/v1/admin/reload")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@TWO_D
def test_the_first_export_is_promoted_and_a_retrain_is_a_candidate(
    repo: Path, serve: TestClient, tiny_acoustic: Any
) -> None:
    name = tiny_acoustic.name
    record = json.loads((repo / name / ".promoted.json").read_text())
    assert [e["version"] for e in record["promoted"]] == ["1"]
    assert record["promoted"][0]["reason"] == "the model's first version"
    assert record["promoted"][0]["value"] == manifest_of(repo / name / "1")["metrics"]["rel_l2"]
    model = summary(serve, name)
    assert (model["version"], model["latest"], model["state"]) == ("1", "1", "promoted")
    assert (model["versions"], model["promoted"]) == (["1", "2"], ["1"])
    assert model["promotion_record"] == "recorded" and not model["promotion"]["forced"]
    two = serve.get(f"/v1/models/{name}/versions/2").json()
    assert (two["state"], two["latest"], two["promotion"]) == ("candidate", "1", None)
    body = request(repo / name, tiny_acoustic)
    assert serve.post(f"/v1/models/{name}/predict", json=body).json()["version"] == "1"
    # Pinned, the candidate answers.
    pinned = serve.post(f"/v1/models/{name}/versions/2/predict", json=body)
    assert pinned.status_code == 200 and pinned.json()["version"] == "2"
    states = {
        (m["name"], m["version"]): m["state"] for m in serve.get("/health/ready").json()["models"]
    }
    assert states == {(name, "1"): "promoted", (name, "2"): "candidate"}


@TWO_D
def test_a_worse_candidate_is_refused_with_both_numbers_and_not_served(
    repo: Path, serve: TestClient, tiny_acoustic: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name = tiny_acoustic.name
    model_root = repo / name
    before = (model_root / ".promoted.json").read_bytes()
    worse = worse_copy(model_root, 1, 3, 10.0)
    mine = manifest_of(worse)["metrics"]["rel_l2"]
    theirs = manifest_of(model_root / "1")["metrics"]["rel_l2"]
    assert main(["promote", str(worse)]) == 1
    err = capsys.readouterr().err
    assert f"{mine:.4g}" in err and f"{theirs:.4g}" in err and "--force" in err, err
    assert "worse" in err and "version 1" in err
    assert (model_root / ".promoted.json").read_bytes() == before  # nothing written
    reload(serve)
    assert summary(serve, name)["latest"] == "1"
    body = request(model_root, tiny_acoustic)
    assert serve.post(f"/v1/models/{name}/predict", json=body).json()["version"] == "1"
    assert serve.post(f"/v1/models/{name}/versions/3/predict", json=body).json()["version"] == "3"


@TWO_D
def test_a_candidate_no_worse_is_promoted_and_served_after_a_reload(
    repo: Path, serve: TestClient, tiny_acoustic: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name = tiny_acoustic.name
    assert main(["promote", str(repo / name / "2"), "--reason", "retrained"]) == 0
    out = capsys.readouterr().out
    assert "promoted" in out and "version 2 is the latest" in out, out
    assert summary(serve, name)["latest"] == "1"  # the snapshot in memory until a reload
    reload(serve)
    model = summary(serve, name)
    assert (model["latest"], model["promoted"]) == ("2", ["1", "2"])
    assert model["promotion"]["reason"].startswith("retrained (rel_l2 ")
    assert model["promotion"]["forced"] is False
    assert main(["promote", str(repo / name / "2")]) == 0  # again: nothing to do
    assert "already promoted" in capsys.readouterr().out
    assert not list((repo / name).glob(".promoted.json.*"))  # no temporary file left behind


@TWO_D
def test_force_promotes_a_worse_version_and_the_state_survives_reloads_and_restarts(
    repo: Path, serve: TestClient, tiny_acoustic: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name = tiny_acoustic.name
    worse = worse_copy(repo / name, 1, 3, 10.0)
    assert main(["promote", str(worse), "--force", "--reason", "a hotfix"]) == 0
    assert "(forced)" in capsys.readouterr().out
    for _ in range(2):
        reload(serve)
        model = summary(serve, name)
        assert (model["latest"], model["promoted"]) == ("3", ["1", "3"])
        assert model["promotion"]["forced"] is True and "worse" in model["promotion"]["reason"]
    with TestClient(create_app(Settings(model_dir=repo))) as fresh:
        assert summary(fresh, name)["latest"] == "3"
        body = request(repo / name, tiny_acoustic)
        assert fresh.post(f"/v1/models/{name}/predict", json=body).json()["version"] == "3"
        for v in ("1", "2"):
            r = fresh.post(f"/v1/models/{name}/versions/{v}/predict", json=body)
            assert r.json()["version"] == v
    # Demoted, the next promoted version is the latest again.
    assert main(["demote", str(worse)]) == 0
    reload(serve)
    assert summary(serve, name)["latest"] == "1"


@TWO_D
def test_demoting_the_last_promoted_version_needs_force(
    repo: Path, serve: TestClient, tiny_acoustic: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name = tiny_acoustic.name
    assert main(["demote", str(repo / name / "1")]) == 1
    assert "leaves no promoted version" in capsys.readouterr().err
    assert main(["demote", str(repo / name / "1"), "--force"]) == 0
    reload(serve)
    model = summary(serve, name)
    assert (model["latest"], model["state"], model["version"]) == (None, "candidate", "2")
    r = serve.post(f"/v1/models/{name}/predict", json=request(repo / name, tiny_acoustic))
    assert r.status_code == 404 and "promote" in r.json()["error"], r.text
    assert serve.get(f"/v1/models/{name}/versions/1").json()["state"] == "candidate"


CORRUPT = {
    "not json": b"{not json",
    "not an object": b"[]",
    "another model's": None,  # filled in with the other model's name
    "a version twice": None,
    "a version with a leading zero": None,
    "no format": None,
}


def corrupt(kind: str, record: dict[str, Any]) -> bytes:
    raw = CORRUPT[kind]
    if raw is not None:
        return raw
    doc = json.loads(json.dumps(record))
    if kind == "another model's":
        doc["model"] = "someone-else"
    elif kind == "a version twice":
        doc["promoted"].append(dict(doc["promoted"][0]))
    elif kind == "a version with a leading zero":
        doc["promoted"][0]["version"] = "01"
    else:
        del doc["format"]
    return json.dumps(doc).encode()


@TWO_D
@pytest.mark.parametrize("kind", list(CORRUPT))
def test_a_corrupt_record_is_refused_clearly_and_other_models_keep_serving(
    repo: Path, tiny_acoustic: Any, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = tiny_acoustic.name
    # A second model, as fine as the first was.
    other = repo / "other-model"
    (other / "1").parent.mkdir()
    shutil.copytree(repo / name / "1", other / "1")
    manifest = manifest_of(other / "1")
    manifest["name"] = "other-model"
    (other / "1" / "manifest.json").write_text(json.dumps(manifest))
    assert main(["promote", str(other / "1")]) == 0  # adopts the folder: records version 1
    record_path = repo / name / ".promoted.json"
    bad = corrupt(kind, json.loads(record_path.read_text()))
    record_path.write_bytes(bad)
    capsys.readouterr()

    with TestClient(create_app(Settings(model_dir=repo))) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        (refusal,) = ready.json()["refused"]
        assert (refusal["name"], refusal["version"]) == (name, "latest")
        assert (
            refusal["path"].endswith(".promoted.json")
            and "not a promotion record" in refusal["reason"]
        )
        body = request(repo / name, tiny_acoustic)
        latest = client.post(f"/v1/models/{name}/predict", json=body)
        assert latest.status_code == 404 and ".promoted.json" in latest.json()["error"]
        pinned = client.post(f"/v1/models/{name}/versions/1/predict", json=body)
        assert pinned.status_code == 200
        model = summary(client, name)
        assert (model["promotion_record"], model["latest"], model["promoted"]) == (
            "refused",
            None,
            [],
        )
        fine = client.post("/v1/models/other-model/predict", json=body)
        assert fine.status_code == 200 and fine.json()["version"] == "1"

        # The command refuses it too, naming the file; --force replaces it and keeps the bad one.
        assert main(["promote", str(repo / name / "1")]) == 2
        err = capsys.readouterr().err
        assert ".promoted.json is not a promotion record" in err and "--force" in err, err
        assert record_path.read_bytes() == bad
        assert main(["promote", str(repo / name / "1"), "--force"]) == 0
        assert (repo / name / ".promoted.json.corrupt").read_bytes() == bad
        report = reload(client)
        assert report["refused"] == []
        assert summary(client, name)["latest"] == "1"


@TWO_D
def test_a_folder_without_a_record_serves_every_version_until_an_export_records_them(
    repo: Path, tiny_acoustic: Any
) -> None:
    name = tiny_acoustic.name
    (repo / name / ".promoted.json").unlink()
    with TestClient(create_app(Settings(model_dir=repo))) as client:
        model = summary(client, name)
        assert (model["promotion_record"], model["latest"], model["promoted"]) == (
            "unrecorded",
            "2",
            ["1", "2"],
        )
        args = ["export", "--run", str(tiny_acoustic.run), "--out", str(repo)]
        assert main([*args, "--data", str(tiny_acoustic.data)]) == 0
        reload(client)
        model = summary(client, name)
        assert (model["promotion_record"], model["latest"], model["promoted"]) == (
            "recorded",
            "2",
            ["1", "2"],
        )
        assert client.get(f"/v1/models/{name}/versions/3").json()["state"] == "candidate"


# -- the record format, and what "worse" means per family ----------------------------------


@TWO_D
def test_the_service_and_the_command_refuse_the_same_records(tiny_acoustic: Any) -> None:
    name = tiny_acoustic.name
    good = json.loads((tiny_acoustic.models / name / ".promoted.json").read_text())
    assert parse(json.dumps(good).encode(), name)
    assert promotion.record_problems(good, name) == []
    variants = [corrupt(kind, good) for kind in CORRUPT] + [
        json.dumps({**good, "promoted": [{**good["promoted"][0], "forced": "yes"}]}).encode(),
        json.dumps({**good, "promoted": [{**good["promoted"][0], "value": "small"}]}).encode(),
        json.dumps({**good, "promoted": [{**good["promoted"][0], "at": 5}]}).encode(),
        json.dumps({**good, "promoted": {}}).encode(),
        json.dumps({**good, "format": 2}).encode(),
        json.dumps({**good, "format": True}).encode(),
        json.dumps({**good, "format": 1.0}).encode(),
        json.dumps({**good, "promoted": [{**good["promoted"][0], "value": "0.5"}]}).encode(),
        json.dumps({**good, "promoted": [{**good["promoted"][0], "forced": 1}]}).encode(),
        json.dumps({**good, "promoted": [{**good["promoted"][0], "version": 1}]}).encode(),
        b'{"format": 1, "model": "x", "promoted": [], "value": NaN}',
    ]
    for raw in variants:
        with pytest.raises(PromotionRecordError):
            parse(raw, name)
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        assert promotion.record_problems(doc, name), raw


def test_worse_is_the_held_out_relative_error_of_each_family() -> None:
    room = manifest_of(ROOT / "models" / "acoustics-room-2d" / "1")
    assert promotion.score(room) == promotion.Score("rel_l2", room["metrics"]["rel_l2"])
    airfoil = manifest_of(ROOT / "models" / "airfoil-enf2enf" / "2")
    per_field = airfoil["metrics"]["rel_l2"]
    s = promotion.score(airfoil)
    assert s.metric == "rel_l2 (mean of u, v, cp)"
    assert s.value == pytest.approx(sum(per_field.values()) / 3)
    assert promotion.score({"metrics": {"rel_l2": float("nan")}}).value is None
    assert promotion.score({"metrics": {}}).value is None


def test_the_shipped_versions_are_promoted() -> None:
    for model_root in sorted(p for p in (ROOT / "models").iterdir() if p.is_dir()):
        record = promotion.read_record(model_root)
        assert record is not None, model_root
        versions = sorted(int(p.name) for p in model_root.iterdir() if p.name.isdigit())
        assert sorted(int(e["version"]) for e in record["promoted"]) == versions
