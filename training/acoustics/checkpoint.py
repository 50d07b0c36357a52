"""A training run's checkpoint, and the checkpointed model behind the numpy interface that
evaluation shares with the exported graphs (so evaluation need not import the trainer)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from training.acoustics.model import DeepONet, DeepONetConfig

if TYPE_CHECKING:
    from training.acoustics.pod import TorchPod
from training.common.config import from_dict

CHECKPOINT = "checkpoint.pt"


def read_checkpoint(run_dir: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    ckpt_path = Path(run_dir) / CHECKPOINT
    if not ckpt_path.exists():
        raise FileNotFoundError(f"no {CHECKPOINT} in {run_dir}: train first")
    ckpt: dict[str, Any] = torch.load(ckpt_path, map_location=device, weights_only=False)
    return ckpt


def deeponet_from(ckpt: dict[str, Any], best: bool = False) -> DeepONet:
    """The DeepONet of a loaded checkpoint: its latest weights (to resume), or with `best` the
    weights of its best validation so far (to evaluate and export)."""
    if ckpt.get("kind") == "pod":
        raise ValueError(
            "the run holds a POD-DeepONet (model.kind: pod), not a trained DeepONet: "
            "train with --fresh or another --out"
        )
    model = DeepONet(from_dict(DeepONetConfig, ckpt["model_config"], "model_config"))
    model.load_state_dict(ckpt.get("best_model", ckpt["model"]) if best else ckpt["model"])
    return model.eval()


def load_model(
    run_dir: str | Path, device: str | torch.device = "cpu", best: bool = False
) -> tuple[DeepONet, dict[str, Any]]:
    ckpt = read_checkpoint(run_dir, device)
    return deeponet_from(ckpt, best).to(device), ckpt


class TorchDeepONet:
    """A checkpointed model behind the same numpy interface as the exported graphs."""

    def __init__(
        self,
        run_dir: str | Path | None = None,
        model: DeepONet | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.dataset_config: dict[str, Any] = {}
        if model is None:
            model, ckpt = load_model(run_dir or ".", device, best=True)
            self.dataset_config = ckpt["dataset_config"]
        self.model, self.device = model, torch.device(device)

    @torch.no_grad()
    def coefficients(self, sources: np.ndarray) -> np.ndarray:
        src = torch.as_tensor(sources, dtype=torch.float32, device=self.device)
        return self.model.branch_coefficients(src).cpu().numpy()

    @torch.no_grad()
    def basis(self, points: np.ndarray) -> np.ndarray:
        pts = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        return self.model.trunk_basis(pts).cpu().numpy()


def load_run(run_dir: str | Path) -> tuple[TorchDeepONet | TorchPod, int, dict[str, Any]]:
    """A run of either kind behind the numpy interface, the bytes its graphs would hold
    (parameters and buffers: all constants once exported), and its checkpoint."""
    from training.acoustics.pod import TorchPod, pod_from

    ckpt = read_checkpoint(run_dir)
    if ckpt.get("kind") == "pod":
        fit = pod_from(ckpt)
        modules: list[torch.nn.Module] = [fit.branch, fit.trunk]
        model: TorchDeepONet | TorchPod = TorchPod(fit)
    else:
        net = deeponet_from(ckpt, best=True)
        modules, model = [net], TorchDeepONet(model=net)
    n_bytes = sum(t.numel() * t.element_size() for m in modules for t in m.state_dict().values())
    return model, n_bytes, ckpt
