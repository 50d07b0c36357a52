"""`python -m training` for torchrun, recording what each rank writes (tests/test_distributed.py).

torchrun starts this script once per rank; it runs the training CLI unchanged and, on the
way out, writes `rank<R>.json` into $PROBE_DIR: the sources of every training forward this
rank ran, the files it passed to torch.save and how many times it wrote the run's outputs
(history, plots).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

import training.acoustics.train as trainer
from training.acoustics.model import DeepONet
from training.cli import main

batches: list[list[list[float]]] = []
saves: list[str] = []
outputs: list[str] = []
real_save = torch.save
real_write_outputs = trainer._write_outputs
real_forward = DeepONet.forward


def recording_forward(self: DeepONet, source: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    batches.append(source.tolist())
    return real_forward(self, source, points)


def recording_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    saves.append(str(f))
    real_save(obj, f, *args, **kwargs)


def recording_write_outputs(run_dir: Path, *args: Any, **kwargs: Any) -> None:
    outputs.append(str(run_dir))
    real_write_outputs(run_dir, *args, **kwargs)


torch.save = recording_save  # type: ignore[assignment]
trainer._write_outputs = recording_write_outputs  # type: ignore[assignment]
DeepONet.forward = recording_forward  # type: ignore[method-assign]

if __name__ == "__main__":
    code = main(sys.argv[1:])
    record = {
        "rank": int(os.environ["RANK"]),
        "world_size": int(os.environ["WORLD_SIZE"]),
        "code": code,
        "batches": batches,
        "saves": saves,
        "outputs": outputs,
        "threads": torch.get_num_threads(),
    }
    Path(os.environ["PROBE_DIR"], f"rank{os.environ['RANK']}.json").write_text(json.dumps(record))
    sys.exit(code)
