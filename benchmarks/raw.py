"""The floor: the same graphs called in-process with onnxruntime (no HTTP, no cache), and the
acoustic model in torch eager from its training checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from geometry import encoder_points, signed_distance

F32 = NDArray[np.float32]
CPU = ["CPUExecutionProvider"]


def session_options(intra_op_threads: int = 0, spinning: bool = True) -> ort.SessionOptions:
    """onnxruntime's defaults, as a user would have them, with the service's thread count.
    `spinning=False` is the service's own choice (app/runtime.py): idle workers sleep."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def session(
    path: Path,
    intra_op_threads: int = 0,
    providers: list[Any] | None = None,
    spinning: bool = True,
) -> Any:
    return ort.InferenceSession(
        str(path), session_options(intra_op_threads, spinning), providers=providers or CPU
    )


class RawDeepONet:
    """branch(source) . trunk(points), as a user with onnxruntime and no service would."""

    def __init__(self, version_dir: Path, intra_op_threads: int = 0, spinning: bool = True) -> None:
        self.branch = session(version_dir / "branch.onnx", intra_op_threads, spinning=spinning)
        self.trunk = session(version_dir / "trunk.onnx", intra_op_threads, spinning=spinning)

    def coefficients(self, source: NDArray[Any]) -> F32:
        src = np.asarray(source, dtype=np.float32).reshape(1, -1)
        out: F32 = self.branch.run(None, {"source": src})[0]
        return out

    def basis(self, points: F32) -> F32:
        out: F32 = self.trunk.run(None, {"points": points})[0]
        return out

    def field(self, source: NDArray[Any], points: F32) -> F32:
        """Pressure (N,) at the space-time points."""
        return self.basis(points) @ self.coefficients(source)[0]


class RawEnf2Enf:
    """encoder(geometry) then decoder(latents, conditions, query, sdf(query))."""

    def __init__(self, version_dir: Path, manifest: dict[str, Any], threads: int = 0) -> None:
        self.encoder = session(version_dir / "encoder.onnx", threads)
        self.decoder = session(version_dir / "decoder.onnx", threads)
        domain = manifest["domain"]
        self.box = domain.get("box", [[-0.5, 1.5], [-0.75, 0.75]])
        self.n_encoder = int(domain.get("n_encoder", 1024))
        self.seed = int(domain.get("encoder_seed", 0))

    def encode(self, polylines: list[NDArray[np.float64]]) -> F32:
        pts, sdf = encoder_points(polylines, self.n_encoder, self.box, seed=self.seed)
        feeds = {"points": pts.astype(np.float32), "sdf": sdf.astype(np.float32)}
        out: F32 = self.encoder.run(None, feeds)[0]
        return out

    def decoder_feeds(
        self,
        latents: F32,
        conditions: dict[str, float],
        query: NDArray[np.float64],
        polylines: list[NDArray[np.float64]],
    ) -> dict[str, NDArray[Any]]:
        return {
            "latents": latents,
            "conditions": np.asarray(
                [conditions["aoa_deg"], conditions["speed"]], dtype=np.float32
            ),
            "points": query.astype(np.float32),
            "sdf": signed_distance(query, polylines).astype(np.float32),
        }

    def decode(
        self,
        latents: F32,
        conditions: dict[str, float],
        query: NDArray[np.float64],
        polylines: list[NDArray[np.float64]],
    ) -> F32:
        feeds = self.decoder_feeds(latents, conditions, query, polylines)
        out: F32 = self.decoder.run(None, feeds)[0]
        return out


class TorchDeepONet:
    """The training checkpoint in torch eager (imports torch: only when a run is given)."""

    def __init__(self, run_dir: Path, threads: int | None = None) -> None:
        import torch

        from training.acoustics.train import load_model

        self.torch = torch
        if threads is not None:
            torch.set_num_threads(threads)
        self.model, _ = load_model(run_dir, "cpu")
        self.threads = torch.get_num_threads()

    def field(self, source: NDArray[Any], points: F32) -> F32:
        torch = self.torch
        with torch.inference_mode():
            src = torch.as_tensor(np.asarray(source, dtype=np.float32).reshape(1, -1))
            coefficients = self.model.branch_coefficients(src)[0]
            basis = self.model.trunk_basis(torch.from_numpy(points))
            out: F32 = (basis @ coefficients).numpy()
        return out
