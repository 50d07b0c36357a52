"""`python -m training export-triton`: a Triton model repository for an exported version.

Each config.pbtxt is parsed with Triton's own ModelConfig schema (shipped with tritonclient)
and checked against the ONNX graph it serves; the ensemble is executed step by step with
onnxruntime as Triton would run it, and must give the service's field.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient
from google.protobuf import text_format
from onnx import TensorProto, helper

from tests.helpers_serving import air_receivers, by_hand, manifest_of, sources_in_region
from training.cli import main
from training.common.files import sha256_file, write_json

ROOT = Path(__file__).resolve().parents[1]

_spec = importlib.util.spec_from_file_location(
    "triton_model_config_pb2", Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
)
assert _spec is not None and _spec.loader is not None
model_config_pb2: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(model_config_pb2)

FP32 = model_config_pb2.DataType.Value("TYPE_FP32")


def parse_config(path: Path) -> Any:
    """config.pbtxt through Triton's schema: an unknown field or a bad enum fails here."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def onnx_io(path: Path) -> tuple[list[Any], list[Any]]:
    model = onnx.load(str(path))
    weights = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in weights], list(model.graph.output)


def onnx_dims(value: Any) -> list[int]:
    return [
        d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim
    ]


@pytest.fixture
def repo(tiny_acoustic: Any, tmp_path: Path) -> Path:
    out = tmp_path / "triton"
    assert (
        main(["export-triton", "--model", str(tiny_acoustic.version_dir), "--out", str(out)]) == 0
    )
    return out


def models_of(repo: Path) -> dict[str, Any]:
    return {p.name: parse_config(p / "config.pbtxt") for p in repo.iterdir() if p.is_dir()}


def test_one_model_per_graph_plus_compose_and_ensemble(repo: Path, tiny_acoustic: Any) -> None:
    name = tiny_acoustic.name
    configs = models_of(repo)
    assert set(configs) == {name, f"{name}_branch", f"{name}_trunk", f"{name}_compose"}
    manifest = manifest_of(tiny_acoustic.version_dir)
    for graph, spec in manifest["graphs"].items():
        copied = repo / f"{name}_{graph}" / "1" / "model.onnx"
        assert sha256_file(copied) == spec["sha256"]  # the served graph, byte for byte
    assert (repo / f"{name}_compose" / "1" / "model.onnx").is_file()
    assert (repo / name / "1").is_dir() and not any((repo / name / "1").iterdir())
    for model_name, config in configs.items():
        assert config.name == model_name and config.max_batch_size == 0
        want = "ensemble" if model_name == name else "onnxruntime_onnx"
        assert config.platform == want


def test_configs_match_the_onnx_graphs(repo: Path, tiny_acoustic: Any) -> None:
    manifest = manifest_of(tiny_acoustic.version_dir)
    for model_dir in repo.iterdir():
        config = parse_config(model_dir / "config.pbtxt")
        if config.platform == "ensemble":
            continue
        inputs, outputs = onnx_io(model_dir / "1" / "model.onnx")
        graph = model_dir.name.rpartition("_")[2]
        declared = manifest["graphs"].get(graph)
        for tensors, entries, side in (
            (inputs, config.input, "inputs"),
            (outputs, config.output, "outputs"),
        ):
            assert [e.name for e in entries] == [t.name for t in tensors]
            for tensor, entry in zip(tensors, entries, strict=True):
                assert tensor.type.tensor_type.elem_type == TensorProto.FLOAT
                assert entry.data_type == FP32
                graph_dims, dims = onnx_dims(tensor), list(entry.dims)
                assert len(dims) == len(graph_dims) and dims[0] == -1  # the free batch axis
                # Equal where the graph fixes a size; where the graph leaves it symbolic, the
                # manifest's size (Triton accepts a fixed config size for a dynamic axis).
                assert all(g in (-1, d) for g, d in zip(graph_dims, dims, strict=True))
                if declared is not None:
                    spec = next(s for s in declared[side] if s["name"] == entry.name)
                    assert dims == spec["shape"]
        # What onnxruntime gives for inputs of the config's shapes has the config's shapes.
        session = ort.InferenceSession(
            str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        rng = np.random.default_rng(0)
        feeds = {
            e.name: rng.uniform(
                0, 0.5, [d if d > 0 else 3 + i for i, d in enumerate(e.dims)]
            ).astype(np.float32)
            for e in config.input
        }
        if model_dir.name.endswith("_compose"):  # its two inputs share the width, not N
            feeds["basis"] = rng.uniform(0, 1, (7, config.input[1].dims[1])).astype(np.float32)
        for entry, value in zip(config.output, session.run(None, feeds), strict=True):
            assert value.dtype == np.float32
            assert all(d in (-1, n) for d, n in zip(entry.dims, value.shape, strict=True))


def test_compose_graph_is_the_deeponet_product(repo: Path, tiny_acoustic: Any) -> None:
    compose = repo / f"{tiny_acoustic.name}_compose" / "1" / "model.onnx"
    onnx.checker.check_model(str(compose))
    model = onnx.load(str(compose))
    branch = onnx.load(str(tiny_acoustic.version_dir / "branch.onnx"))
    assert model.ir_version == branch.ir_version  # readable by whatever reads the graphs
    width = parse_config(compose.parents[1] / "config.pbtxt").input[0].dims[1]
    rng = np.random.default_rng(1)
    coefficients = rng.normal(size=(3, width)).astype(np.float32)
    basis = rng.normal(size=(11, width)).astype(np.float32)
    session = ort.InferenceSession(str(compose), providers=["CPUExecutionProvider"])
    (pressure,) = session.run(None, {"coefficients": coefficients, "basis": basis})
    want = coefficients.astype(np.float64) @ basis.astype(np.float64).T
    assert pressure.shape == (3, 11)
    np.testing.assert_allclose(pressure, want, rtol=1e-5, atol=1e-5)


def run_ensemble(repo: Path, name: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Execute an ensemble as Triton schedules it: a step runs when its inputs exist."""
    config = parse_config(repo / name / "config.pbtxt")
    tensors = dict(feeds)
    pending = list(config.ensemble_scheduling.step)
    while pending:
        ready = [s for s in pending if all(v in tensors for v in s.input_map.values())]
        assert ready, f"steps waiting on tensors nobody makes: {[s.model_name for s in pending]}"
        for step in ready:
            session = ort.InferenceSession(
                str(repo / step.model_name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
            )
            inputs = {key: tensors[value] for key, value in step.input_map.items()}
            names = [o.name for o in session.get_outputs()]
            for out_name, value in zip(names, session.run(None, inputs), strict=True):
                if out_name in step.output_map:
                    tensors[step.output_map[out_name]] = value
            pending.remove(step)
    return {o.name: tensors[o.name] for o in config.output}


def test_ensemble_wiring_is_consistent_and_gives_the_services_field(
    repo: Path, tiny_acoustic: Any
) -> None:
    name = tiny_acoustic.name
    configs = models_of(repo)
    ensemble = configs[name]
    steps = list(ensemble.ensemble_scheduling.step)
    assert [s.model_name for s in steps] == [f"{name}_branch", f"{name}_trunk", f"{name}_compose"]
    # Every tensor has one producer (an ensemble input or a step output) with the same type
    # and compatible dims as each consumer; every step maps only its model's tensors.
    produced = {i.name: (i.data_type, list(i.dims)) for i in ensemble.input}
    for step in steps:
        model = configs[step.model_name]
        assert step.model_version == -1
        model_inputs = {i.name: i for i in model.input}
        assert set(step.input_map) == set(model_inputs)
        for key, value in step.input_map.items():
            dtype, dims = produced[value]
            assert dtype == model_inputs[key].data_type
            want = list(model_inputs[key].dims)
            assert all(a in (-1, b) or b == -1 for a, b in zip(dims, want, strict=True))
        model_outputs = {o.name: o for o in model.output}
        assert set(step.output_map) <= set(model_outputs)
        for key, value in step.output_map.items():
            assert value not in produced, f"{value} made twice"
            produced[value] = (model_outputs[key].data_type, list(model_outputs[key].dims))
    consumed = {v for s in steps for v in s.input_map.values()}
    internal = {v for s in steps for v in s.output_map.values()} - {o.name for o in ensemble.output}
    assert internal <= consumed  # nothing computed for nobody
    assert [o.name for o in ensemble.output] == ["pressure"]
    assert produced["pressure"][0] == FP32
    # The ensemble's inputs are the branch's and the trunk's, as the service's V2 model has.
    assert [i.name for i in ensemble.input] == ["source", "points"]
    assert list(ensemble.input[0].dims) == list(configs[f"{name}_branch"].input[0].dims)
    assert list(ensemble.input[1].dims) == list(configs[f"{name}_trunk"].input[0].dims)

    manifest = manifest_of(tiny_acoustic.version_dir)
    sources = sources_in_region(manifest, 2)
    receivers = air_receivers(manifest, 5, seed=3)
    times = np.linspace(0.0, 0.004, 6)
    points = np.array([[*r, t] for r in receivers for t in times], dtype=np.float32)
    out = run_ensemble(repo, name, {"source": np.asarray(sources, np.float32), "points": points})
    assert out["pressure"].shape == (2, len(points))
    for s, source in enumerate(sources):
        want = by_hand(tiny_acoustic.version_dir, source, receivers, times).reshape(-1)
        np.testing.assert_allclose(
            out["pressure"][s], want, rtol=1e-5, atol=1e-5 * np.abs(want).max()
        )


def test_export_triton_needs_no_torch(tiny_acoustic: Any, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from training.cli import main\n"
        f"rc = main(['export-triton', '--model', {str(tiny_acoustic.version_dir)!r}, "
        f"'--out', {str(tmp_path / 'triton')!r}])\n"
        "assert rc == 0, rc\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] == 'torch')\n"
        "print('LEAKED', leaked)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "LEAKED []" in done.stdout


def tampered_copy(tiny_acoustic: Any, tmp_path: Path) -> Path:
    copy = tmp_path / "models" / tiny_acoustic.name / "1"
    shutil.copytree(tiny_acoustic.version_dir, copy)
    return copy


def test_a_graph_that_is_not_the_manifests_is_refused(
    tiny_acoustic: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = tampered_copy(tiny_acoustic, tmp_path)
    with open(version / "trunk.onnx", "ab") as f:
        f.write(b"\0")
    out = tmp_path / "triton"
    assert main(["export-triton", "--model", str(version), "--out", str(out)]) == 2
    assert "sha256" in capsys.readouterr().err
    assert not out.exists()  # checked before anything is written


def test_a_manifest_that_disagrees_with_its_graph_is_refused(
    tiny_acoustic: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = tampered_copy(tiny_acoustic, tmp_path)
    manifest = manifest_of(version)
    manifest["graphs"]["trunk"]["inputs"][0]["shape"] = [-1, tiny_acoustic.dim + 5]
    write_json(version / "manifest.json", manifest)
    out = tmp_path / "triton"
    assert main(["export-triton", "--model", str(version), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'trunk'" in err and "points" in err and "dims" in err
    assert not out.exists()


def identity_graph(path: Path, inputs: dict[str, list[Any]], outputs: dict[str, str]) -> None:
    """A small ONNX graph: each output an Identity of the named input."""
    nodes = [helper.make_node("Identity", [src], [dst]) for dst, src in outputs.items()]
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [
            helper.make_tensor_value_info(d, TensorProto.FLOAT, inputs[s])
            for d, s in outputs.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_other_families_get_every_graph_and_no_ensemble(tmp_path: Path) -> None:
    """An enf2enf version (encoder + decoder): one Triton model per graph, nothing composed."""
    version = tmp_path / "models" / "airfoil-enf2enf" / "3"
    version.mkdir(parents=True)
    shapes = {
        "encoder": ({"curves": ["n", 2]}, {"latents": "curves"}),
        "decoder": ({"latents": ["m", 2], "query": ["q", 2]}, {"fields": "query"}),
    }
    graphs = {}
    for graph, (inputs, outputs) in shapes.items():
        identity_graph(version / f"{graph}.onnx", inputs, outputs)
        graphs[graph] = {
            "file": f"{graph}.onnx",
            "sha256": hashlib.sha256((version / f"{graph}.onnx").read_bytes()).hexdigest(),
            "inputs": [{"name": n, "dtype": "float32", "shape": [-1, 2]} for n in inputs],
            "outputs": [{"name": n, "dtype": "float32", "shape": [-1, 2]} for n in outputs],
        }
    manifest = {"name": "airfoil-enf2enf", "version": "3", "family": "enf2enf",
                "task": "airfoil", "graphs": graphs}  # fmt: skip
    (version / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "triton"
    assert main(["export-triton", "--model", str(version), "--out", str(out)]) == 0
    configs = models_of(out)
    assert set(configs) == {"airfoil-enf2enf_encoder", "airfoil-enf2enf_decoder"}
    decoder = configs["airfoil-enf2enf_decoder"]
    assert [i.name for i in decoder.input] == ["latents", "query"]
    assert [list(i.dims) for i in decoder.input] == [[-1, 2], [-1, 2]]
    # Triton's version folder is the model version.
    assert (out / "airfoil-enf2enf_decoder" / "3" / "model.onnx").is_file()
