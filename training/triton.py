"""Export a model version as an NVIDIA Triton Inference Server model repository (no torch).

    python -m training export-triton --model models/acoustics-room-2d/1 --out triton/
    tritonserver --model-repository=triton/

Every graph of the manifest becomes one Triton model, `<name>_<graph>`, served by the ONNX
Runtime backend: `<model>/config.pbtxt` and `<model>/<version>/model.onnx` (the graph file,
copied after its sha256 is checked against the manifest). The inputs and outputs in each
config (names, data types, dims with -1 for free axes) are read from the ONNX graph itself and
cross-checked against the manifest (an axis the graph leaves symbolic but the manifest fixes,
such as the branch's coefficient width, gets the manifest's size); `max_batch_size: 0`, so the
dims are the graphs' full shapes and their free first axis is the batch.

For a DeepONet (family "deeponet") an ensemble named like the model itself runs it end to end,
as the service's V2 route `<name>` does: `source` -> branch -> coefficients (B, K),
`points` -> trunk -> basis (N, K), and a third graph, `<name>_compose` (one Gemm, written here
with onnx.helper), gives pressure (B, N) = coefficients @ basis.T, the matrix product an
ensemble cannot do by itself. Other families (enf2enf's encoder and decoder) get their graphs
as Triton models, to be chained by the client.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from training.common.config import ConfigError
from training.common.files import atomic_path, sha256_file

PLATFORM = "onnxruntime_onnx"

# ONNX element type -> Triton data type (model_config.proto's DataType).
TRITON_TYPES: dict[int, str] = {
    TensorProto.BOOL: "TYPE_BOOL",
    TensorProto.UINT8: "TYPE_UINT8",
    TensorProto.UINT16: "TYPE_UINT16",
    TensorProto.UINT32: "TYPE_UINT32",
    TensorProto.UINT64: "TYPE_UINT64",
    TensorProto.INT8: "TYPE_INT8",
    TensorProto.INT16: "TYPE_INT16",
    TensorProto.INT32: "TYPE_INT32",
    TensorProto.INT64: "TYPE_INT64",
    TensorProto.FLOAT16: "TYPE_FP16",
    TensorProto.FLOAT: "TYPE_FP32",
    TensorProto.DOUBLE: "TYPE_FP64",
    TensorProto.STRING: "TYPE_STRING",
    TensorProto.BFLOAT16: "TYPE_BF16",
}


@dataclass(frozen=True)
class Tensor:
    name: str
    elem_type: int  # onnx.TensorProto element type
    dims: tuple[int, ...]  # -1 for a free (symbolic or unknown) axis

    @property
    def triton_type(self) -> str:
        try:
            return TRITON_TYPES[self.elem_type]
        except KeyError:
            kind = TensorProto.DataType.Name(self.elem_type)
            raise ConfigError(f"tensor {self.name!r}: Triton has no type for {kind}") from None

    def pbtxt(self, indent: str = "  ") -> str:
        dims = ", ".join(str(d) for d in self.dims)
        return (
            f"{indent}{{\n"
            f'{indent}  name: "{self.name}"\n'
            f"{indent}  data_type: {self.triton_type}\n"
            f"{indent}  dims: [ {dims} ]\n"
            f"{indent}}}"
        )


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


def triton_name(*parts: str) -> str:
    """A Triton model name (a folder name) from the model and graph names: `a-b_branch`."""
    name = "_".join(re.sub(r"[^A-Za-z0-9_-]", "_", p) for p in parts)
    if not name:
        raise ConfigError(f"cannot make a Triton model name from {parts!r}")
    return name


def _tensor(value: onnx.ValueInfoProto) -> Tensor:
    ttype = value.type.tensor_type
    dims = tuple(
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in ttype.shape.dim
    )
    return Tensor(value.name, ttype.elem_type, dims)


def graph_signature(model: onnx.ModelProto) -> Signature:
    """Inputs (initializers left out) and outputs of an ONNX graph, as the graph declares them."""
    weights = {init.name for init in model.graph.initializer}
    inputs = tuple(_tensor(v) for v in model.graph.input if v.name not in weights)
    return Signature(inputs, tuple(_tensor(v) for v in model.graph.output))


def refine(graph: str, got: Iterable[Tensor], want: list[dict[str, Any]]) -> tuple[Tensor, ...]:
    """The graph's tensors checked against the manifest: same names, dtypes and ranks, and the
    same size on every axis the graph fixes. An axis the graph leaves free (the torch exporter
    cannot always infer one, e.g. the branch's coefficient width) takes the manifest's size,
    which Triton accepts for a dynamic model axis."""
    got = list(got)
    names = [t.name for t in got]
    if names != [w["name"] for w in want]:
        raise ConfigError(
            f"graph {graph!r}: the ONNX graph has tensors {names}, the manifest "
            f"{[w['name'] for w in want]}"
        )
    refined = []
    for tensor, spec in zip(got, want, strict=True):
        where = f"graph {graph!r}, tensor {tensor.name!r}"
        onnx_type = helper.np_dtype_to_tensor_dtype(np.dtype(spec["dtype"]))
        if tensor.elem_type != onnx_type:
            raise ConfigError(
                f"{where}: the ONNX graph says "
                f"{TensorProto.DataType.Name(tensor.elem_type)}, the manifest {spec['dtype']}"
            )
        shape = [int(d) for d in spec["shape"]]
        compatible = len(shape) == len(tensor.dims) and all(
            g == -1 or g == m for g, m in zip(tensor.dims, shape, strict=True)
        )
        if not compatible:
            raise ConfigError(
                f"{where}: the ONNX graph has dims {list(tensor.dims)}, the manifest {shape}"
            )
        refined.append(Tensor(tensor.name, tensor.elem_type, tuple(shape)))
    return tuple(refined)


def model_config(name: str, signature: Signature, platform: str = PLATFORM) -> str:
    """config.pbtxt text of one ONNX Runtime model."""
    inputs = ",\n".join(t.pbtxt() for t in signature.inputs)
    outputs = ",\n".join(t.pbtxt() for t in signature.outputs)
    return (
        f'name: "{name}"\n'
        f'platform: "{platform}"\n'
        "max_batch_size: 0\n"
        f"input [\n{inputs}\n]\n"
        f"output [\n{outputs}\n]\n"
    )


def compose_graph(width: int, opset: int, ir_version: int, output: str = "pressure") -> bytes:
    """pressure (B, N) = coefficients (B, K) @ basis (N, K).T, one Gemm with transB=1."""
    node = helper.make_node("Gemm", ["coefficients", "basis"], [output], transB=1, name="compose")
    graph = helper.make_graph(
        [node],
        "deeponet_compose",
        [
            helper.make_tensor_value_info("coefficients", TensorProto.FLOAT, ["batch", width]),
            helper.make_tensor_value_info("basis", TensorProto.FLOAT, ["n", width]),
        ],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", "n"])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="fieldserve",
        doc_string="DeepONet composition: pressure = coefficients @ basis.T",
    )
    # The IR version of the exported graphs, so whatever runtime reads them reads this one too.
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _ensemble_config(
    name: str,
    inputs: tuple[Tensor, ...],
    outputs: tuple[Tensor, ...],
    steps: list[tuple[str, dict[str, str], dict[str, str]]],
) -> str:
    def maps(kind: str, mapping: dict[str, str]) -> str:
        return "".join(f'      {kind} {{ key: "{k}" value: "{v}" }}\n' for k, v in mapping.items())

    body = ",\n".join(
        "    {\n"
        f'      model_name: "{model}"\n'
        "      model_version: -1\n"
        f"{maps('input_map', ins)}{maps('output_map', outs)}"
        "    }"
        for model, ins, outs in steps
    )
    head = model_config(name, Signature(inputs, outputs), platform="ensemble")
    return f"{head}ensemble_scheduling {{\n  step [\n{body}\n  ]\n}}\n"


def _write(path: Path, data: bytes | str) -> None:
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)


def export_triton(model_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the Triton models of one exported version under `out`; returns what was written.

    The Triton version folder is the model version when it is an integer (so versions 1 and
    2 exported into one repository sit side by side), else 1.
    """
    model_dir, out = Path(model_dir), Path(out)
    manifest_path = model_dir / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{model_dir} has no manifest.json: export the model first")
    manifest = json.loads(manifest_path.read_text())
    name = str(manifest["name"])
    version = str(manifest["version"])
    tversion = version if version.isdigit() and int(version) > 0 else "1"

    signatures: dict[str, Signature] = {}
    models: dict[str, str] = {}
    onnx_models: dict[str, onnx.ModelProto] = {}
    for graph, spec in manifest["graphs"].items():
        path = model_dir / spec["file"]
        for file, sha in {spec["file"]: spec.get("sha256"), **spec.get("data", {})}.items():
            if sha256_file(model_dir / file) != sha:
                raise ConfigError(
                    f"{model_dir / file}: sha256 does not match the manifest; refusing to export"
                )
        proto = onnx.load(str(path))
        declared = graph_signature(proto)
        sig = Signature(
            refine(graph, declared.inputs, spec["inputs"]),
            refine(graph, declared.outputs, spec["outputs"]),
        )
        signatures[graph], onnx_models[graph] = sig, proto
        models[graph] = triton_name(name, graph)

    # Everything checked: now write.
    for graph, tname in models.items():
        folder = out / tname
        (folder / tversion).mkdir(parents=True, exist_ok=True)
        spec = manifest["graphs"][graph]
        # External data files keep their names: the graph refers to them by name, beside it.
        for file in spec.get("data", {}):
            with atomic_path(folder / tversion / file) as tmp:
                shutil.copyfile(model_dir / file, tmp)
        with atomic_path(folder / tversion / "model.onnx") as tmp:
            shutil.copyfile(model_dir / spec["file"], tmp)
        _write(folder / "config.pbtxt", model_config(tname, signatures[graph]))
    written: dict[str, Any] = {
        "model": name,
        "version": version,
        "triton_version": int(tversion),
        "repository": str(out),
        "models": dict(models),
    }
    if manifest.get("family") == "deeponet":
        written["ensemble"] = _export_deeponet_ensemble(
            manifest, signatures, onnx_models, models, out, tversion
        )
    return written


def _export_deeponet_ensemble(
    manifest: dict[str, Any],
    signatures: dict[str, Signature],
    onnx_models: dict[str, onnx.ModelProto],
    models: dict[str, str],
    out: Path,
    tversion: str,
) -> dict[str, Any]:
    if set(signatures) != {"branch", "trunk"}:
        raise ConfigError(f"a DeepONet has graphs branch and trunk, not {sorted(signatures)}")
    branch, trunk = signatures["branch"], signatures["trunk"]
    if len(branch.inputs) != 1 or len(trunk.inputs) != 1:
        raise ConfigError("a DeepONet's branch and trunk take one input each")
    coeff, basis = branch.outputs[0], trunk.outputs[0]
    width = coeff.dims[-1]
    if width < 1 or basis.dims[-1] != width or len(coeff.dims) != 2 or len(basis.dims) != 2:
        raise ConfigError(
            f"branch -> {list(coeff.dims)} and trunk -> {list(basis.dims)} do not compose"
        )
    declared = manifest.get("outputs") or [{"name": "pressure"}]
    output = str(declared[0]["name"])
    name = str(manifest["name"])
    opset = max(
        (o.version for o in onnx_models["branch"].opset_import if o.domain in ("", "ai.onnx")),
        default=17,
    )
    ir_version = onnx_models["branch"].ir_version

    compose = triton_name(name, "compose")
    compose_sig = Signature(
        (Tensor("coefficients", TensorProto.FLOAT, (-1, width)),
         Tensor("basis", TensorProto.FLOAT, (-1, width))),
        (Tensor(output, TensorProto.FLOAT, (-1, -1)),),
    )  # fmt: skip
    (out / compose / tversion).mkdir(parents=True, exist_ok=True)
    _write(out / compose / tversion / "model.onnx", compose_graph(width, opset, ir_version, output))
    _write(out / compose / "config.pbtxt", model_config(compose, compose_sig))

    ensemble = triton_name(name)
    src, pts = branch.inputs[0], trunk.inputs[0]
    steps = [
        (models["branch"], {src.name: src.name}, {coeff.name: "_coefficients"}),
        (models["trunk"], {pts.name: pts.name}, {basis.name: "_basis"}),
        (compose, {"coefficients": "_coefficients", "basis": "_basis"}, {output: output}),
    ]
    (out / ensemble / tversion).mkdir(parents=True, exist_ok=True)  # Triton wants the folder
    _write(
        out / ensemble / "config.pbtxt",
        _ensemble_config(ensemble, (src, pts), compose_sig.outputs, steps),
    )
    return {"name": ensemble, "compose": compose, "inputs": [src.name, pts.name]}
