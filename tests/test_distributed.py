"""Data-parallel training under torchrun (gloo on CPU): the same run as one process.

Two ranks each take half of every global batch's sources; the loss is the global batch's
mean, DDP averages the gradients, so the losses, the validation and the final weights match
a single-process run with the same global batch, and only rank 0 writes anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import tiny_acoustic_config

from training.acoustics.model import DeepONet
from training.acoustics.train import load_model
from training.cli import main
from training.common.launch import Launch

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).with_name("torchrun_probe.py")
TWO_D = pytest.mark.parametrize("tiny_acoustic", [2], indirect=True, ids=["2d"])


def test_launch_environment() -> None:
    assert Launch.from_env({}) == Launch(0, 1, 0, launched=False)
    launched = Launch.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert launched == Launch(3, 4, 1, launched=True)
    assert not Launch.from_env({"RANK": "1", "WORLD_SIZE": "2"}).is_main
    with pytest.raises(SystemExit):
        Launch.from_env({"RANK": "2", "WORLD_SIZE": "2"})


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [4, 5, 7, 64])
def test_shards_cover_the_batch_once(world: int, n: int) -> None:
    from training.common.distributed import Distributed

    shares = [
        Distributed(Launch(r, world, r), torch.device("cpu"), "gloo").shard(n) for r in range(world)
    ]
    taken = [i for s in shares for i in range(n)[s]]
    assert taken == list(range(n))
    assert max(len(range(n)[s]) for s in shares) - min(len(range(n)[s]) for s in shares) <= 1


@TWO_D
def test_torchrun_two_ranks_equal_one_process(
    tiny_acoustic: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_acoustic_config(2)
    cfg["train"] = {**cfg["train"], "steps": 6, "val_every": 3, "checkpoint_every": 3}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    common = ["--config", str(config), "--data", str(tiny_acoustic.data), "--device", "cpu"]

    batches: list[list[list[float]]] = []
    real_forward = DeepONet.forward

    def recording_forward(self: DeepONet, source: torch.Tensor, points: torch.Tensor) -> Any:
        batches.append(source.tolist())
        return real_forward(self, source, points)

    threads = torch.get_num_threads()
    monkeypatch.setattr(DeepONet, "forward", recording_forward)
    try:
        assert main(["--threads", "1", "train", *common, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
        monkeypatch.undo()

    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    env = {
        **os.environ,
        "PROBE_DIR": str(probe_dir),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(PROBE), "--threads", "1", "train", *common, "--out", str(tmp_path / "two")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    # One answer for the run: rank 0 prints the result line, rank 1 nothing.
    printed = [json.loads(ln) for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert len(printed) == 1 and printed[0]["step"] == 6

    ranks = {r: json.loads((probe_dir / f"rank{r}.json").read_text()) for r in (0, 1)}
    assert all(ranks[r]["world_size"] == 2 and ranks[r]["code"] == 0 for r in ranks)
    assert all(ranks[r]["threads"] == 1 for r in ranks)
    # Sharded: each rank ran its share of every global batch's sources, and together exactly
    # the single-process batch. (The tiny set has 3 training sources, so the global batch is
    # 3 and the shares are uneven, 1 and 2: the loss weighting must hold for that too.)
    n = len(batches[0])
    assert len(batches) == 6 and n >= 2 and all(len(b) == n for b in batches)
    for step, batch in enumerate(batches):
        shares = [ranks[r]["batches"][step] for r in (0, 1)]
        assert [len(s) for s in shares] == [n // 2, n - n // 2]
        assert shares[0] + shares[1] == batch
    # Only rank 0 saves: the checkpoints at steps 3 and 6, into the one checkpoint file.
    assert len(ranks[0]["saves"]) == 2 and ranks[1]["saves"] == []
    assert len(ranks[0]["outputs"]) == 1 and ranks[1]["outputs"] == []
    two = tmp_path / "two"
    assert sorted(p.name for p in two.iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )
    assert [p.name for p in two.glob("*.pt")] == ["checkpoint.pt"]

    # The same run: losses and validation at every check, then the weights.
    one_history = json.loads((tmp_path / "one" / "history.json").read_text())
    two_history = json.loads((two / "history.json").read_text())
    assert [h["step"] for h in two_history] == [h["step"] for h in one_history] == [3, 6]
    for a, b in zip(one_history, two_history, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * max(1.0, abs(a["loss"])), (a, b)
        assert abs(a["val_rel_l2"] - b["val_rel_l2"]) <= 1e-5, (a, b)
    model_one, ckpt_one = load_model(tmp_path / "one")
    model_two, ckpt_two = load_model(two)
    assert ckpt_two["state"]["step"] == 6
    # Both drew the same batches: the generators are in the same state.
    assert torch.equal(ckpt_one["rng"]["batches"], ckpt_two["rng"]["batches"])
    for (name, a), b in zip(
        model_one.state_dict().items(), model_two.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
