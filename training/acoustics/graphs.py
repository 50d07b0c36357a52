"""The two factor graphs every acoustic DeepONet exports, whatever computes them: `branch`
(`source` (B, dim) -> `coefficients` (B, p + 1)) and `trunk` (`points` (N, dim + 1) -> `basis`
(N, p + 1)), the names and dynamic axes the service and its V2 routes serve; and the
external data files that let a graph keep large tables beside it (each file listed with its
sha256 in the manifest, as the graph)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from onnx import external_data_helper
from torch import nn

OPSET = 17


def export_factors(
    branch: nn.Module, trunk: nn.Module, room_size: Sequence[float], out_dir: Path
) -> dict[str, Path]:
    """Trace both modules to `out_dir`/{branch,trunk}.onnx and check the files."""
    room = torch.tensor(tuple(room_size), dtype=torch.float32)
    dim = len(room)
    paths = {"branch": out_dir / "branch.onnx", "trunk": out_dir / "trunk.onnx"}
    examples = {
        "branch": torch.rand(2, dim) * room,  # (B, dim) sources in the room
        "trunk": torch.cat([torch.rand(5, dim) * room, torch.rand(5, 1) * 0.01], dim=1),
    }
    names = {
        "branch": (["source"], ["coefficients"], "batch"),
        "trunk": (["points"], ["basis"], "n"),
    }
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated but traces these MLP and gather graphs exactly.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        for key, module in (("branch", branch), ("trunk", trunk)):
            inputs, outputs, axis = names[key]
            torch.onnx.export(
                module.eval(),
                (examples[key],),
                str(paths[key]),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes={inputs[0]: {0: axis}, outputs[0]: {0: axis}},
                opset_version=OPSET,
                dynamo=False,
            )
    for path in paths.values():
        onnx.checker.check_model(str(path))
    return paths


def externalize(path: Path, min_bytes: int) -> list[str]:
    """Move every initializer of `path` holding >= `min_bytes` into its own file beside it,
    named `<graph>.<initializer>.bin`; returns those file names. A tracked file stays under
    the repository's size limit however large the whole table (see PodConfig.max_file_mb)."""
    model = onnx.load(str(path))
    files = []
    for tensor in model.graph.initializer:
        if len(tensor.raw_data) >= min_bytes:
            name = f"{path.stem}.{re.sub(r'[^A-Za-z0-9_]', '_', tensor.name)}.bin"
            (path.parent / name).unlink(missing_ok=True)  # the writer appends
            external_data_helper.set_external_data(tensor, location=name)
            files.append(name)
    if files:
        external_data_helper.write_external_data_tensors(model, str(path.parent))
        for name in files:  # the writer makes them private; they are served like the graph
            (path.parent / name).chmod(0o644)
        onnx.save_model(model, str(path))
        onnx.checker.check_model(str(path))
    return files


def external_files(path: Path) -> list[str]:
    """The external data files a saved graph refers to (empty for a self-contained one)."""
    model = onnx.load(str(path), load_external_data=False)
    return sorted(
        {
            entry.value
            for tensor in model.graph.initializer
            if external_data_helper.uses_external_data(tensor)
            for entry in tensor.external_data
            if entry.key == "location"
        }
    )
