"""The in-process reference a chaos scenario checks answers against: an acoustic DeepONet
version's own graphs, run with onnxruntime here, outside the service.

    pressure[r, t] = branch(source) . trunk([x_r, t])   (the manifest's "compose")

Factors are memoised: the clients ask for the same sources and receivers again and again,
and the reference must not take the cores from the service it checks.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from geometry import Box, Room

F64 = NDArray[np.float64]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the service under test has the cores
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Reference:
    """One acoustic DeepONet version (a folder with manifest.json, branch and trunk)."""

    def __init__(self, version_dir: Path) -> None:
        self.version_dir = version_dir
        self.manifest: dict[str, Any] = json.loads((version_dir / "manifest.json").read_text())
        if self.manifest.get("family") != "deeponet":
            raise ValueError(f"{version_dir}: the chaos reference needs an acoustic DeepONet")
        graphs = self.manifest["graphs"]
        self._branch = _session(version_dir / graphs["branch"]["file"])
        self._trunk = _session(version_dir / graphs["trunk"]["file"])
        self._branch_in = graphs["branch"]["inputs"][0]["name"]
        self._trunk_in = graphs["trunk"]["inputs"][0]["name"]
        self._coefficients: dict[tuple[float, ...], F64] = {}
        self._basis: dict[bytes, F64] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def inputs(self) -> tuple[str, str]:
        return self._branch_in, self._trunk_in

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    def coefficients(self, source: tuple[float, ...]) -> F64:
        found = self._coefficients.get(source)
        if found is None:
            x = np.asarray([source], dtype=np.float32)
            found = self._branch.run(None, {self._branch_in: x})[0][0].astype(np.float64)
            with self._lock:
                self._coefficients[source] = found
        return found

    def basis(self, points: NDArray[np.float32]) -> F64:
        key = points.tobytes()
        found = self._basis.get(key)
        if found is None:
            found = self._trunk.run(None, {self._trunk_in: points})[0].astype(np.float64)
            with self._lock:
                if len(self._basis) > 64:  # receiver sets are few; fresh ones are not kept
                    self._basis.clear()
                self._basis[key] = found
        return found

    def pressure(self, source: tuple[float, ...], points: NDArray[np.float32]) -> F64:
        """(N,) pressure at space-time points (N, dim + 1), Pa."""
        return self.basis(points) @ self.coefficients(source)


def space_time(receivers: F64, times: F64) -> NDArray[np.float32]:
    """Receiver-major rows [x, y(, z), t] in float32, as the service builds them."""
    n_rec, dim = receivers.shape
    points = np.empty((n_rec, times.size, dim + 1), dtype=np.float32)
    points[..., :dim] = receivers[:, None, :]
    points[..., dim] = times[None, :]
    return points.reshape(-1, dim + 1)


def close(got: NDArray[Any], want: F64) -> bool:
    """Float32 graphs and a float32 composition against float64 composition: agreement to a
    part in 10^4 of the field's scale; a wrong or mixed answer is off by far more."""
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape or not np.isfinite(got).all():
        return False
    scale = max(float(np.abs(want).max()), 1e-30)
    return bool(np.all(np.abs(got - want) <= 1e-4 * scale + 1e-4 * np.abs(want)))


class Domain:
    """Where sources and receivers of a version may go: in the air, away from the walls."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        domain = manifest["domain"]
        self.room = Room.from_spec(domain["room"])
        self.region = Box.from_spec(domain["source_region"])
        self.margin = float(domain.get("wall_margin", 0.0))
        self.t_end = float(domain["time_window"][1])
        self.dim = self.room.dim

    def sources(self, n: int, rng: np.random.Generator) -> F64:
        lo, hi = np.asarray(self.region.lo), np.asarray(self.region.hi)
        out = np.empty((0, self.dim))
        while len(out) < n:
            pts = rng.uniform(lo, hi, (4 * n + 8, self.dim))
            out = np.concatenate([out, pts[self.room.wall_distance(pts) > self.margin]])
        return out[:n]

    def receivers(self, n: int, rng: np.random.Generator) -> F64:
        size = np.asarray(self.room.size)
        out = np.empty((0, self.dim))
        while len(out) < n:
            pts = rng.uniform(0, 1, (4 * n + 8, self.dim)) * size
            out = np.concatenate([out, pts[self.room.wall_distance(pts) > 0.05]])
        return out[:n]
