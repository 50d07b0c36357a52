"""What the cases ask for: sources, receivers and times for an acoustic model, NACA sections
and query points for a geometry model, all drawn from the manifest's trained domain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geometry import AirRegion, Box, Room, field_points, naca4, scene_from_spec
from geometry.airfoils import NEAR_WALL_OFFSETS

F64 = NDArray[np.float64]
N_TIMES = 100  # every acoustic case asks for 100 time steps (the paper's timing case)


def load_manifest(version_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((version_dir / "manifest.json").read_text())
    return doc


def latest_version(model_dir: Path, name: str) -> Path | None:
    """models/<name>/<highest integer version>, or None."""
    root = model_dir / name
    if not root.is_dir():
        return None
    versions = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, key=lambda p: int(p.name)) if versions else None


@dataclass
class AcousticWorkload:
    """Requests for one acoustic DeepONet: the domain and a seeded random stream."""

    version_dir: Path
    manifest: dict[str, Any]
    seed: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        domain = self.manifest["domain"]
        self.room: AirRegion = (
            scene_from_spec(domain["scene"])
            if "scene" in domain
            else Room.from_spec(domain["room"])
        )
        self.region = Box.from_spec(domain["source_region"])
        self.margin = float(domain["wall_margin"])
        t0, t1 = (float(t) for t in domain["time_window"])
        # 100 steps ending at the end of the trained window, evenly spaced from one step in:
        # for the shipped models (0.5 ms data, 50 ms window) exactly the solver's output grid.
        self.times: F64 = t0 + (t1 - t0) * np.arange(1, N_TIMES + 1) / N_TIMES
        self.output_dt = (t1 - t0) / N_TIMES

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def dim(self) -> int:
        return self.room.dim

    @property
    def times_spec(self) -> dict[str, float | int]:
        return {"start": float(self.times[0]), "stop": float(self.times[-1]), "num": N_TIMES}

    def sources(self, n: int) -> F64:
        """n distinct sources in the trained region, at least the trained margin from walls."""
        lo, hi = np.asarray(self.region.lo), np.asarray(self.region.hi)
        out: list[F64] = []
        while sum(len(o) for o in out) < n:
            cand = self.rng.uniform(lo, hi, (4 * n + 16, self.dim))
            out.append(cand[self.room.wall_distance(cand) >= self.margin])
        return np.concatenate(out)[:n]

    def receivers(self, n: int) -> F64:
        """n receivers in the air, at least 2 cm from any wall (the solver interpolates)."""
        size = np.asarray(self.room.size)
        out: list[F64] = []
        while sum(len(o) for o in out) < n:
            cand = self.rng.uniform(0.0, 1.0, (2 * n + 16, self.dim)) * size
            out.append(cand[self.room.wall_distance(cand) > 0.02])
        return np.concatenate(out)[:n]

    def request(self, source: F64, receivers: F64) -> dict[str, Any]:
        return {
            "source": [float(v) for v in source],
            "receivers": receivers,
            "times": self.times_spec,
        }

    def space_time(self, receivers: F64) -> NDArray[np.float32]:
        """Receiver-major (x, y[, z], t) rows: what the trunk sees for these receivers."""
        n_rec, n_t = len(receivers), self.times.size
        pts = np.empty((n_rec, n_t, self.dim + 1), dtype=np.float32)
        pts[..., : self.dim] = receivers[:, None, :]
        pts[..., self.dim] = self.times[None, :]
        return pts.reshape(-1, self.dim + 1)


# NACA 4-digit codes inside the trained ranges of m, p and t (fractions of the chord).
def naca_codes(domain: dict[str, Any], seed: int = 0) -> list[str]:
    ranges = domain.get("naca", {})
    m_lo, m_hi = ranges.get("m", [0.0, 0.06])
    p_lo, p_hi = ranges.get("p", [0.2, 0.6])
    t_lo, t_hi = ranges.get("t", [0.08, 0.2])
    codes = []
    for t in range(round(100 * t_lo), round(100 * t_hi) + 1):
        codes.append(f"00{t:02d}")
        for m in range(max(1, round(100 * m_lo)), round(100 * m_hi) + 1):
            for p in range(max(1, round(10 * p_lo)), round(10 * p_hi) + 1):
                codes.append(f"{m}{p}{t:02d}")
    np.random.default_rng(seed).shuffle(codes)
    return codes


class PinnedVersion:
    """A model version the benchmarks time: requests go to it, which may not be the promoted
    one, so that HTTP rows and raw rows time the same graphs."""

    version_dir: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def predict_url(self) -> str:
        return f"/v1/models/{self.name}/versions/{self.version_dir.name}/predict"


@dataclass
class AirfoilWorkload(PinnedVersion):
    """Requests for one enf2enf geometry model: distinct NACA codes and query sets."""

    version_dir: Path
    manifest: dict[str, Any]
    n_query: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        domain = self.manifest["domain"]
        self.box = domain.get("box", [[-0.5, 1.5], [-0.75, 0.75]])
        self.panels = int(domain.get("panels_per_element", 160))
        self.n_encoder = int(domain.get("n_encoder", 1024))
        self.encoder_seed = int(domain.get("encoder_seed", 0))
        self.conditions = {"aoa_deg": 4.0, "speed": 1.0}
        self.rng = np.random.default_rng(self.seed)
        self._codes = naca_codes(domain, self.seed)

    def codes(self) -> Iterator[str]:
        """Distinct codes (then again from the start, should a run ask for more than exist)."""
        while True:
            yield from self._codes

    def polylines(self, code: str) -> list[F64]:
        return [naca4(code, self.panels)]

    def query(self, code: str) -> F64:
        return field_points(
            self.polylines(code), self.n_query, self.box, NEAR_WALL_OFFSETS, rng=self.rng
        )

    def request(self, geometry: dict[str, Any], query: F64) -> dict[str, Any]:
        return {"geometry": geometry, "conditions": self.conditions, "query": {"points": query}}


# The elasticity data draws sample i of a split from default_rng([seed, split, i]) (splits 0-2)
# and its capacity probes from default_rng([seed, 1000]): this stream is neither.
ELASTICITY_STREAM = 7919
ELASTICITY_TASK = "geometry-fields"


@dataclass
class ElasticityWorkload(PinnedVersion):
    """Requests for one elasticity enf2enf (task geometry-fields): new voids from the void
    generator the dataset uses (training.elasticity.voids) on a seeded stream of their own, so
    never a training or test sample; one load in the trained range; and as query points the
    vertices of the FEM mesh of each void, which is where the solver answers."""

    version_dir: Path
    manifest: dict[str, Any]
    seed: int = 0

    def __post_init__(self) -> None:
        # training.elasticity imports scikit-fem and gmsh: only when an elasticity model is here
        from training.common.config import from_dict
        from training.elasticity.dataset import DatasetConfig

        self.cfg = from_dict(DatasetConfig, self.manifest["training"]["dataset"], "dataset")
        self.void_params = self.cfg.void_params()
        self.mesh_params = self.cfg.mesh_params()
        domain = self.manifest["domain"]
        names = [str(c["name"]) for c in domain["conditions"]]
        if names != ["load"]:
            raise ValueError(f"{self.name}: conditions {names}, not the elastic cell's [load]")
        trained = domain["conditions"][0].get("range") or self.cfg.load
        self.load = 0.5 * (float(trained[0]) + float(trained[1]))
        self.conditions = {"load": self.load}
        self.rng = np.random.default_rng([self.cfg.seed, ELASTICITY_STREAM, self.seed])

    def voids(self, n: int) -> list[F64]:
        """n new voids: (n_void_points, 2) counter-clockwise, first point not repeated."""
        from training.elasticity.voids import random_void

        return [random_void(self.void_params, self.rng) for _ in range(n)]

    def polylines(self, void: F64) -> list[F64]:
        """The void closed explicitly, as the service reads a curve."""
        from geometry.polylines import check_polylines

        return check_polylines([void])

    def mesh_vertices(self, void: F64) -> F64:
        """The vertices of the FEM mesh of this void (the mesh is deterministic: the same the
        solver builds)."""
        from training.elasticity.mesh import mesh_cell

        return np.asarray(mesh_cell(void, self.mesh_params).vertices, dtype=np.float64)

    def kept(self, void: F64, vertices: F64) -> NDArray[np.bool_]:
        """The vertices the service answers: boundary vertices a rounding error inside the void
        (signed distance ~ -1e-17) are refused as points inside a body, so left out."""
        from geometry.polylines import signed_distance

        return np.asarray(signed_distance(vertices, self.polylines(void)) >= 0.0)

    def query(self, void: F64) -> F64:
        vertices = self.mesh_vertices(void)
        return vertices[self.kept(void, vertices)]

    def request(self, void: F64, query: F64) -> dict[str, Any]:
        return {
            "geometry": {"curves": [void]},
            "conditions": self.conditions,
            "query": {"points": query},
        }
