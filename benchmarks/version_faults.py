"""Model versions for the reload scenarios: broken ones, as they turn up in a real model
repository, and a valid new one whose numbers differ from the old.

Each broken maker copies a good version folder to `<model>/<label>` and breaks the copy in
one way; the service must refuse it on reload and keep serving the rest. The valid one has
its branch output scaled by 2 and its trunk output by 3, so its pressure is 6 times the old
and an answer that mixed the two versions' factors (2x or 3x) matches neither.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Maker = Callable[[Path, Path, int], Path]


def _manifest(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    return doc


def _write_manifest(folder: Path, doc: dict[str, Any]) -> None:
    (folder / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_version(good: Path, target: Path, version: int) -> Path:
    """A faithful copy of `good` as `version` (its manifest says so), written in place."""
    shutil.copytree(good, target)
    doc = _manifest(target)
    doc["version"] = str(version)
    _write_manifest(target, doc)
    return target


def _graph_file(folder: Path, graph: str) -> Path:
    return folder / _manifest(folder)["graphs"][graph]["file"]


def truncated_graph(good: Path, model_dir: Path, version: int) -> Path:
    """Half a graph file whose sha256 the manifest matches: only onnxruntime can tell."""
    target = copy_version(good, model_dir / str(version), version)
    graph = _graph_file(target, "branch")
    data = graph.read_bytes()
    graph.write_bytes(data[: len(data) // 2])
    doc = _manifest(target)
    doc["graphs"]["branch"]["sha256"] = _sha256(graph)
    _write_manifest(target, doc)
    return target


def sha256_mismatch(good: Path, model_dir: Path, version: int) -> Path:
    """A graph changed after export (a flipped byte in the middle): a valid-looking file."""
    target = copy_version(good, model_dir / str(version), version)
    graph = _graph_file(target, "trunk")
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    return target


def invalid_manifest(good: Path, model_dir: Path, version: int) -> Path:
    """manifest.json cut off mid-way: not JSON."""
    target = copy_version(good, model_dir / str(version), version)
    text = (target / "manifest.json").read_text()
    (target / "manifest.json").write_text(text[: len(text) // 2])
    return target


def incomplete_manifest(good: Path, model_dir: Path, version: int) -> Path:
    """Valid JSON without the graphs."""
    target = copy_version(good, model_dir / str(version), version)
    doc = _manifest(target)
    del doc["graphs"]
    _write_manifest(target, doc)
    return target


def half_copied(good: Path, model_dir: Path, version: int) -> Path:
    """A copy caught mid-way: the manifest and the branch are there, the trunk is a third of
    itself (a `cp -r` into the repository, seen before it finished)."""
    target = model_dir / str(version)
    target.mkdir()
    doc = _manifest(good)
    doc["version"] = str(version)
    _write_manifest(target, doc)
    branch, trunk = (doc["graphs"][g]["file"] for g in ("branch", "trunk"))
    shutil.copyfile(good / branch, target / branch)
    data = (good / trunk).read_bytes()
    (target / trunk).write_bytes(data[: len(data) // 3])
    return target


def missing_graph(good: Path, model_dir: Path, version: int) -> Path:
    target = copy_version(good, model_dir / str(version), version)
    _graph_file(target, "trunk").unlink()
    return target


def other_versions_manifest(good: Path, model_dir: Path, version: int) -> Path:
    """A folder copied without re-export: its manifest describes the version it came from."""
    target = model_dir / str(version)
    shutil.copytree(good, target)
    return target


def wrong_input_shape(good: Path, model_dir: Path, version: int) -> Path:
    """A manifest whose branch takes one more coordinate than the domain has."""
    target = copy_version(good, model_dir / str(version), version)
    doc = _manifest(target)
    shape = doc["graphs"]["branch"]["inputs"][0]["shape"]
    doc["graphs"]["branch"]["inputs"][0]["shape"] = [*shape[:-1], shape[-1] + 1]
    _write_manifest(target, doc)
    return target


def empty_folder(good: Path, model_dir: Path, version: int) -> Path:
    target = model_dir / str(version)
    target.mkdir()
    return target


def leading_zero(good: Path, model_dir: Path, version: int) -> Path:
    """`02`: not the canonical spelling of a version number."""
    return copy_version(good, model_dir / f"0{version}", version)


BROKEN: dict[str, Maker] = {
    "truncated graph": truncated_graph,
    "sha256 mismatch": sha256_mismatch,
    "invalid manifest": invalid_manifest,
    "manifest without graphs": incomplete_manifest,
    "half-copied folder": half_copied,
    "missing graph file": missing_graph,
    "manifest of another version": other_versions_manifest,
    "input shape unlike the domain": wrong_input_shape,
    "empty folder": empty_folder,
    "version 02": leading_zero,
}


def _scaled_graph(path: Path, factor: float) -> None:
    """Multiply the graph's (first) output by `factor`: a different model, same signature."""
    import onnx  # the train extra; only the hot-reload scenario needs it
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    out = graph.output[0].name
    raw = f"{out}__unscaled"
    for node in graph.node:
        node.output[:] = [raw if o == out else o for o in node.output]
        node.input[:] = [raw if i == out else i for i in node.input]
    scale = f"{out}__scale"
    graph.initializer.append(numpy_helper.from_array(np.asarray(factor, np.float32), scale))
    graph.node.append(helper.make_node("Mul", [raw, scale], [out], name=f"{out}__scaled"))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def scaled_version(good: Path, model_dir: Path, version: int) -> Path:
    """A valid new version (branch x2, trunk x3: pressure x6), written in a hidden folder and
    renamed into place, as an export does: the service never sees half of it."""
    target = model_dir / str(version)
    staging = model_dir / f".{version}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    copy_version(good, staging, version)
    doc = _manifest(staging)
    for graph, factor in (("branch", 2.0), ("trunk", 3.0)):
        path = staging / doc["graphs"][graph]["file"]
        _scaled_graph(path, factor)
        doc["graphs"][graph]["sha256"] = _sha256(path)
    doc["description"] = f"chaos: version {version} = 6 x the pressure of the version it copies"
    _write_manifest(staging, doc)
    staging.rename(target)
    return target
