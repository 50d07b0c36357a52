"""What every case shares: options, the workloads, the raw sessions and the running servers."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from benchmarks import client as http
from benchmarks.modes import Mode, interleave
from benchmarks.raw import RawDeepONet, RawEnf2Enf, TorchDeepONet
from benchmarks.server import RedisProcess, ServerProcess
from benchmarks.workloads import (
    ELASTICITY_TASK,
    AcousticWorkload,
    AirfoilWorkload,
    ElasticityWorkload,
    latest_version,
    load_manifest,
)

F64 = np.ndarray
Inputs = Sequence[tuple[np.ndarray, np.ndarray]]  # (source, receivers) per call


@dataclass
class Options:
    quick: bool = False
    model_dir: Path = Path("models")
    model: str = "acoustics-room-3d"
    geo_model: str = "airfoil-enf2enf"
    geo_dir: Path | None = Path("/tmp/geo_models")
    torch_run: Path | None = None
    torch_threads: int | None = None
    duration: float = 20.0
    clients: int = 16
    intra_op_threads: int | None = None
    server_env: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    max_reps: int | None = None
    workdir: Path = Path(".")


class Context:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.notes: list[str] = []
        version_dir = latest_version(opts.model_dir, opts.model)
        if version_dir is None:
            raise SystemExit(f"no model {opts.model!r} under {opts.model_dir}")
        self.work = AcousticWorkload(version_dir, load_manifest(version_dir), opts.seed)
        self.threads = opts.intra_op_threads or 0
        self.raw = RawDeepONet(version_dir, self.threads)
        # The same graphs with the service's session options: what its own runs cost.
        self.raw_service_options = RawDeepONet(version_dir, self.threads, spinning=False)
        self.serve_dir = self._serve_dir()
        self.geo: AirfoilWorkload | None = None
        geo_dir = latest_version(self.serve_dir, opts.geo_model)
        if geo_dir is not None:
            self.geo = AirfoilWorkload(geo_dir, load_manifest(geo_dir), seed=opts.seed)
        self._raw_geo: RawEnf2Enf | None = None
        # The elasticity model is found by its task, whatever its name, beside the airfoil one.
        self.elastic: ElasticityWorkload | None = self._find_elastic()
        self._raw_elastic: RawEnf2Enf | None = None
        self._torch: TorchDeepONet | None = None
        self._server: ServerProcess | None = None
        self.rss_warm: dict[str, float] = {}
        self.served: list[dict[str, Any]] = []
        self.health: dict[str, Any] = {}

    # -- sizes -------------------------------------------------------------------------------

    def reps(self, full: int, quick: int) -> int:
        n = quick if self.opts.quick else full
        return n if self.opts.max_reps is None else max(3, min(n, self.opts.max_reps))

    @property
    def budget_s(self) -> float:
        """Most seconds one measured mode may take (it stops early, keeping >= 3 samples)."""
        return 8.0 if self.opts.quick else 90.0

    # -- the model folder the service reads --------------------------------------------------

    def _serve_dir(self) -> Path:
        """Every model of --model-dir, plus the geometry model from --geo-dir when the model
        folder has none, as symlinks in one folder (the service reads one folder)."""
        out = self.opts.workdir / "models"
        out.mkdir(parents=True, exist_ok=True)
        for entry in sorted(self.opts.model_dir.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                (out / entry.name).symlink_to(entry.resolve(), target_is_directory=True)
        geo = self.opts.geo_model
        if not (out / geo).exists() and self.opts.geo_dir is not None:
            found = self.opts.geo_dir / geo
            if latest_version(self.opts.geo_dir, geo) is not None:
                (out / geo).symlink_to(found.resolve(), target_is_directory=True)
                self.notes.append(f"{geo} is not in {self.opts.model_dir}: served from {found}")
        return out

    def _find_elastic(self) -> ElasticityWorkload | None:
        """The served enf2enf of task geometry-fields built from an elasticity dataset (its
        manifest's training.dataset): elasticity-enf2enf first, else the first by name."""
        found = []
        for entry in sorted(self.serve_dir.iterdir()):
            version_dir = latest_version(self.serve_dir, entry.name)
            if version_dir is None or not (version_dir / "manifest.json").is_file():
                continue
            manifest = load_manifest(version_dir)
            if manifest.get("family") != "enf2enf" or manifest.get("task") != ELASTICITY_TASK:
                continue
            try:
                work = ElasticityWorkload(version_dir, manifest, seed=self.opts.seed)
            except Exception as exc:  # another geometry-fields problem: not this case's
                self.notes.append(f"{entry.name} ({ELASTICITY_TASK}) is no elasticity model "
                                  f"the FEM can solve: {type(exc).__name__}: {exc}")  # fmt: skip
                continue
            found.append(work)
        found.sort(key=lambda w: (w.name != "elasticity-enf2enf", w.name))
        return found[0] if found else None

    # -- lazily built ------------------------------------------------------------------------

    @property
    def raw_geo(self) -> RawEnf2Enf:
        if self._raw_geo is None:
            assert self.geo is not None
            self._raw_geo = RawEnf2Enf(self.geo.version_dir, self.geo.manifest, self.threads)
        return self._raw_geo

    @property
    def raw_elastic(self) -> RawEnf2Enf:
        if self._raw_elastic is None:
            assert self.elastic is not None
            e = self.elastic
            self._raw_elastic = RawEnf2Enf(e.version_dir, e.manifest, self.threads)
        return self._raw_elastic

    def torch_model(self) -> TorchDeepONet | None:
        if self.opts.torch_run is None:
            return None
        if self._torch is None:
            self._torch = TorchDeepONet(self.opts.torch_run, self.opts.torch_threads)
        return self._torch

    @property
    def torch_threads(self) -> int | None:
        return self._torch.threads if self._torch is not None else None

    def server_settings(self, **extra: str) -> dict[str, str]:
        env = dict(self.opts.server_env)
        if self.opts.intra_op_threads is not None:
            env.setdefault("FIELDSERVE_INTRA_OP_THREADS", str(self.opts.intra_op_threads))
        env.update(extra)
        return env

    def server(self) -> ServerProcess:
        """The service with its default (in-process) cache, started and warmed once."""
        if self._server is None:
            self._server = ServerProcess(
                self.opts.workdir, self.serve_dir, self.server_settings()
            ).start()
            with http.client(self._server.base_url) as c:
                self.health = c.get("/health/ready").json()
                self.served = c.get("/v1/models").json()["models"]
                self._warm_all(c)
            self.rss_warm = self._server.rss()
        return self._server

    def _warm_all(self, c: httpx.Client) -> None:
        """One answer from every served model, so every session has run once."""
        for m in self.served:
            version_dir = latest_version(self.serve_dir, m["name"])
            if version_dir is None:
                continue
            if m["family"] == "deeponet":
                w = AcousticWorkload(version_dir, load_manifest(version_dir), seed=99)
                for _ in range(3):
                    body = w.request(w.sources(1)[0], w.receivers(5))
                    r = c.post(f"/v1/models/{m['name']}/predict", content=http.body(body))
                    r.raise_for_status()
            elif self.elastic is not None and version_dir == self.elastic.version_dir:
                e = self.elastic
                voids = ElasticityWorkload(version_dir, e.manifest, seed=99).voids(2)
                for void in voids:  # case G checks that it answers, and says why not
                    request = http.body(e.request(void, e.query(void)))
                    c.post(f"/v1/models/{m['name']}/predict", content=request)
            elif m["family"] == "enf2enf":
                g = AirfoilWorkload(version_dir, load_manifest(version_dir), n_query=64, seed=99)
                for code in ("0012", "2412"):
                    body = g.request({"naca": code}, g.query(code))
                    c.post(f"/v1/models/{m['name']}/predict", content=http.body(body))

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    # -- measuring ---------------------------------------------------------------------------

    def run_modes(self, modes: list[Mode], reps: int, warmup: int, block: int) -> dict[str, Any]:
        return interleave(modes, reps, warmup, block, self.budget_s)

    def http_mode(
        self,
        c: http.Client,
        key: str,
        label: str,
        inputs: Inputs,
        *,
        binary: bool,
        expect: str | None,
        warmup: int,
        check: bool = True,
        n_points: int | None = None,
    ) -> Mode:
        """POST case inputs[k] on the k-th call (bodies are made here, before any timing).
        The row gets the cache states the answers report, the time the service itself spent
        (its request-duration histogram around each block) and, with `check`, how far the
        last answer is from raw onnxruntime on the same inputs."""
        w = self.work
        bodies = [http.body(w.request(s, r)) for s, r in inputs]
        url = f"/v1/models/{w.name}/predict"
        hdrs = http.headers(binary)
        states: Counter[str] = Counter()
        server = [0.0, 0.0]  # requests, seconds inside the service
        mark = [0.0, 0.0]
        last: dict[str, Any] = {}

        def call(k: int) -> None:
            r = c.post(url, content=bodies[k], headers=hdrs)
            if r.status_code != 200:
                raise RuntimeError(f"{label}: HTTP {r.status_code}: {r.text[:500]}")
            if k >= warmup:
                states[http.cache_state(r)] += 1
            last["k"], last["r"] = k, r

        def before() -> None:
            mark[:] = http.server_seconds(c)

        def after() -> None:
            n, s = http.server_seconds(c)
            server[0] += n - mark[0]
            server[1] += s - mark[1]

        def extra() -> dict[str, Any]:
            response = last["r"]
            row: dict[str, Any] = {
                "server_mean_ms": round(server[1] / server[0] * 1e3, 4) if server[0] else None,
                "cache": dict(states),
                "expected_cache": expect,
                "cache_ok": expect is None or set(states) == {expect},
                "response_bytes": len(response.content),
                "format": "binary" if binary else "json",
            }
            if n_points is not None:
                row["points"] = n_points
            if check:
                row["max_rel_err_vs_raw"] = self.pressure_error(response, *inputs[last["k"]])
            return row

        return Mode(key, label, call, before, after, extra)

    def pressure_error(self, response: Any, source: F64, receivers: F64) -> float:
        """Max |HTTP - raw onnxruntime| / max |raw| on the same inputs."""
        fields, arrays = http.decoded(response)
        got = arrays.get("pressure")
        if got is None:
            got = np.asarray(fields["pressure"], dtype=np.float64)
        want = self.raw.field(source, self.work.space_time(receivers)).reshape(got.shape)
        scale = float(np.abs(want).max()) or 1.0
        return float(np.abs(got - want).max() / scale)

    def floor_mode(
        self, c: http.Client, key: str = "http_floor", client: str = "http.client"
    ) -> Mode:
        def call(_: int) -> None:
            c.get("/health/live").raise_for_status()

        return Mode(key, f"HTTP floor: GET /health/live ({client})", call)


def dumps(doc: Any) -> bytes:
    return orjson.dumps(
        doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    )


def redis_pair(ctx: Context) -> tuple[RedisProcess, ServerProcess]:
    redis = RedisProcess(ctx.opts.workdir).start()
    try:
        server = ServerProcess(
            ctx.opts.workdir, ctx.serve_dir, ctx.server_settings(FIELDSERVE_REDIS_URL=redis.url)
        ).start()
    except BaseException:
        redis.stop()
        raise
    return redis, server


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))
