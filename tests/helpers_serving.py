"""Helpers for the serving tests: a real uvicorn server, metrics scraping, the graphs by hand.

Plain functions, imported by the test modules that need them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.server import config
from geometry import Box, Room, grid_points


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """uvicorn serving `app` on a free port in a thread; yields 'host:port'."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only then
    # (proto 0 leaves Nagle on, and every small round trip waits out a 40 ms delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    # The service's own server configuration (guarded protocol, timeouts), on this socket.
    server = uvicorn.Server(config(app, app.state.settings, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text page, keyed by (name, labels); raises if it does not
    parse."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def manifest_of(version_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((version_dir / "manifest.json").read_text())
    return doc


def by_hand(version_dir: Path, source: Any, receivers: Any, times: Any) -> np.ndarray:
    """pressure[r, t] = branch(source) . trunk(x_r, t), straight from onnxruntime."""
    cpu = ["CPUExecutionProvider"]
    branch = ort.InferenceSession(str(version_dir / "branch.onnx"), providers=cpu)
    trunk = ort.InferenceSession(str(version_dir / "trunk.onnx"), providers=cpu)
    coefficients = branch.run(None, {"source": np.asarray([source], np.float32)})[0][0]
    points = np.array([[*r, t] for r in receivers for t in times], dtype=np.float32)
    basis = trunk.run(None, {"points": points})[0]
    pressure = basis.astype(np.float64) @ coefficients.astype(np.float64)
    return pressure.reshape(len(receivers), len(times))


def assert_close(got: Any, want: np.ndarray) -> None:
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape
    assert np.all(np.isfinite(got)) and np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def air_receivers(manifest: dict[str, Any], n: int, seed: int = 0) -> np.ndarray:
    room = Room.from_spec(manifest["domain"]["room"])
    pts = np.random.default_rng(seed).uniform(0, 1, (20 * n, room.dim)) * np.asarray(room.size)
    return pts[room.wall_distance(pts) > 0.02][:n]


def sources_in_region(manifest: dict[str, Any], n: int) -> list[list[float]]:
    """n distinct sources in the trained region, those farthest from the walls first."""
    domain = manifest["domain"]
    room = Room.from_spec(domain["room"])
    region = Box.from_spec(domain["source_region"])
    candidates = grid_points(region.lo, region.hi, [7] * region.dim)
    order = np.argsort(-room.wall_distance(candidates), kind="stable")
    chosen = candidates[order[:n]]
    assert len(chosen) == n and (room.wall_distance(chosen) > 0).all()
    return [[float(v) for v in p] for p in chosen]


# -- airfoils (enf2enf) -----------------------------------------------------------------------


def flow_by_hand(
    version_dir: Path, polylines: Any, aoa_deg: float, speed: float, points: Any
) -> np.ndarray:
    """(N, 3) [u, v, cp]: geometry.airfoils for the encoder's inputs and the query SDF, then
    the encoder and decoder graphs straight from onnxruntime (the manifest's `compose`)."""
    from geometry.airfoils import encoder_points, signed_distance

    domain = manifest_of(version_dir)["domain"]
    cpu = ["CPUExecutionProvider"]
    encoder = ort.InferenceSession(str(version_dir / "encoder.onnx"), providers=cpu)
    decoder = ort.InferenceSession(str(version_dir / "decoder.onnx"), providers=cpu)
    enc_pts, enc_sdf = encoder_points(
        polylines, domain["n_encoder"], domain["box"], seed=domain["encoder_seed"]
    )
    latents = encoder.run(
        None, {"points": enc_pts.astype(np.float32), "sdf": enc_sdf.astype(np.float32)}
    )[0]
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    fields: np.ndarray = decoder.run(
        None,
        {
            "latents": latents,
            "conditions": np.array([aoa_deg, speed], np.float32),
            "points": pts.astype(np.float32),
            "sdf": signed_distance(pts, polylines).astype(np.float32),
        },
    )[0]
    return fields


def fluid_points(polylines: Any, n: int, seed: int = 0, margin: float = 0.02) -> np.ndarray:
    """n points in the trained box, at least `margin` chords from every body."""
    from geometry.airfoils import BOX, signed_distance

    rng = np.random.default_rng(seed)
    pts = rng.uniform([BOX[0][0], BOX[1][0]], [BOX[0][1], BOX[1][1]], (20 * n + 50, 2))
    kept = pts[signed_distance(pts, polylines) > margin][:n]
    assert len(kept) == n
    return kept


def flow_columns(body: dict[str, Any]) -> np.ndarray:
    """(N, 3) [u, v, cp] of a geometry answer."""
    f = body["fields"]
    return np.stack([np.asarray(f[k], dtype=np.float64) for k in ("u", "v", "cp")], axis=1)
