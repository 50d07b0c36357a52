"""`python -m benchmarks.gpu_check`: the shipped models on the CUDA execution provider.

Where onnxruntime lists CUDAExecutionProvider and a session really gets it (onnxruntime-gpu
falls back to the CPU silently, so every session's providers are read back), every graph of
every model is loaded with CUDA, checked against the CPU on the same inputs, and cases A
(5 receivers x 100 times), B (10,000 and 100,000 points) and E (2,000 query points, new and
cached geometry) are timed with IOBinding (inputs copied in, outputs bound on the device and
copied out once), next to the CPU; case G puts the FDTD solver on the same GPU (torch).
Prints one JSON document. Without a usable GPU it prints a JSON saying why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app.providers import CPU, CUDA, preload_cuda, provider_entries
from benchmarks.machine import cpu_model
from benchmarks.stats import summary
from benchmarks.workloads import AcousticWorkload, AirfoilWorkload, latest_version, load_manifest

DEVICE = "cuda"  # where IOBinding leaves the outputs
PARITY_RTOL = 1e-4  # of the output's scale: float32 on both sides (TF32 off) agrees to ~1e-6


def _options() -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return opts


class Graph:
    """One ONNX graph with a CUDA and a CPU session; `run` through IOBinding on the GPU."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The service's CUDA options (full float32), so parity here is parity there.
        self.cuda = ort.InferenceSession(
            str(path), _options(), providers=provider_entries([CUDA, CPU])
        )
        self.cpu = ort.InferenceSession(str(path), _options(), providers=[CPU])
        self.provider = self.cuda.get_providers()[0]
        self.outputs = [o.name for o in self.cuda.get_outputs()]

    def run_gpu(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        binding = self.cuda.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.outputs:
            binding.bind_output(name, DEVICE)
        self.cuda.run_with_iobinding(binding)
        out: list[np.ndarray] = binding.copy_outputs_to_cpu()
        return out

    def run_cpu(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = self.cpu.run(None, feeds)
        return out


def _time(fn: Any, reps: int, warmup: int = 3) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summary(samples)


def _parity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))


def check_deeponet(version_dir: Path, quick: bool) -> dict[str, Any]:
    work = AcousticWorkload(version_dir, load_manifest(version_dir), seed=1)
    branch, trunk = Graph(version_dir / "branch.onnx"), Graph(version_dir / "trunk.onnx")
    out: dict[str, Any] = {"providers": {"branch": branch.provider, "trunk": trunk.provider}}
    if CUDA not in (branch.provider, trunk.provider):
        return out
    source = work.sources(1)[0][None, :].astype(np.float32)
    parity = {}
    for n_rec in (5, 1000):
        pts = work.space_time(work.receivers(n_rec))
        for name, g, feeds in (
            ("branch", branch, {"source": source}),
            ("trunk", trunk, {"points": pts}),
        ):
            parity[f"{name}/{len(next(iter(feeds.values())))}"] = _parity(
                g.run_gpu(feeds)[0], g.run_cpu(feeds)[0]
            )
    out["parity_max_rel"] = parity
    out["parity_ok"] = all(v <= PARITY_RTOL for v in parity.values())
    cases: dict[str, Any] = {}
    for case, n_rec in (("A", 5), ("B/10000", 100), ("B/100000", 1000)):
        pts = work.space_time(work.receivers(n_rec))
        reps = (5 if quick else 30) if n_rec >= 1000 else (20 if quick else 200)

        def gpu(p: np.ndarray = pts) -> np.ndarray:
            c = branch.run_gpu({"source": source})[0]
            return trunk.run_gpu({"points": p})[0] @ c[0]

        def cpu(p: np.ndarray = pts) -> np.ndarray:
            c = branch.run_cpu({"source": source})[0]
            return trunk.run_cpu({"points": p})[0] @ c[0]

        cases[case] = {
            "points": len(pts),
            "cuda_iobinding": _time(gpu, reps),
            "cpu": _time(cpu, max(3, reps // 4)),
            "field_parity_max_rel": _parity(gpu(), cpu()),
        }
    if work.dim == 3:
        cases["G"] = _fdtd_vs_surrogate(work, cases["B/100000"]["cuda_iobinding"]["p50_ms"])
    out["cases"] = cases
    return out


def _fdtd_vs_surrogate(work: AcousticWorkload, surrogate_p50_ms: float) -> dict[str, Any]:
    """Case G on the GPU: the FDTD solver (torch, CUDA) making case B's 100,000-point field
    against the surrogate's CUDA time for the same field size."""
    try:
        import torch

        from benchmarks.solvers import fdtd_field
    except ImportError as exc:
        return {"skipped": f"the solver needs torch and training/: {exc}"}
    if not torch.cuda.is_available():
        return {"skipped": "torch sees no CUDA device"}
    source, receivers = work.sources(1)[0], work.receivers(1000)
    fdtd_field(work, source, receivers, "cuda")  # warm-up: kernels, allocator
    runs = [fdtd_field(work, source, receivers, "cuda")[1] for _ in range(3)]
    fdtd_ms = float(np.median([r["seconds"] for r in runs])) * 1e3
    return {
        "points": 100_000,
        "fdtd_cuda_ms": round(fdtd_ms, 3),
        "fdtd": {k: v for k, v in runs[-1].items() if k != "seconds"},
        "surrogate_cuda_iobinding_ms": surrogate_p50_ms,
        "speedup": round(fdtd_ms / surrogate_p50_ms, 2),
    }


def check_enf2enf(version_dir: Path, quick: bool) -> dict[str, Any]:
    from geometry import encoder_points, signed_distance

    work = AirfoilWorkload(version_dir, load_manifest(version_dir), seed=1)
    enc, dec = Graph(version_dir / "encoder.onnx"), Graph(version_dir / "decoder.onnx")
    out: dict[str, Any] = {"providers": {"encoder": enc.provider, "decoder": dec.provider}}
    if CUDA not in (enc.provider, dec.provider):
        return out
    code = next(work.codes())
    polys = work.polylines(code)
    query = work.query(code)
    cond = np.asarray([work.conditions["aoa_deg"], work.conditions["speed"]], np.float32)

    def encoder_feeds() -> dict[str, np.ndarray]:
        pts, sdf = encoder_points(polys, work.n_encoder, work.box, seed=work.encoder_seed)
        return {"points": pts.astype(np.float32), "sdf": sdf.astype(np.float32)}

    def decoder_feeds(latents: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "latents": latents,
            "conditions": cond,
            "points": query.astype(np.float32),
            "sdf": signed_distance(query, polys).astype(np.float32),
        }

    feeds = encoder_feeds()
    lat_gpu, lat_cpu = enc.run_gpu(feeds)[0], enc.run_cpu(feeds)[0]
    dfeeds = decoder_feeds(lat_cpu)
    parity = {
        "encoder": _parity(lat_gpu, lat_cpu),
        "decoder": _parity(dec.run_gpu(dfeeds)[0], dec.run_cpu(dfeeds)[0]),
    }
    out["parity_max_rel"] = parity
    out["parity_ok"] = all(v <= PARITY_RTOL for v in parity.values())
    reps = 10 if quick else 50
    out["cases"] = {
        "E/new_geometry": {
            "points": len(query),
            "cuda_iobinding": _time(
                lambda: dec.run_gpu(decoder_feeds(enc.run_gpu(encoder_feeds())[0])), reps
            ),
            "cpu": _time(
                lambda: dec.run_cpu(decoder_feeds(enc.run_cpu(encoder_feeds())[0])),
                max(3, reps // 5),
            ),
        },
        "E/cached_geometry": {
            "points": len(query),
            "cuda_iobinding": _time(lambda: dec.run_gpu(decoder_feeds(lat_gpu)), reps),
            "cpu": _time(lambda: dec.run_cpu(decoder_feeds(lat_cpu)), max(3, reps // 5)),
        },
    }
    return out


def check_service(model_dir: Path, reps: int) -> dict[str, Any]:
    """The service itself (`python -m app`) with FIELDSERVE_DEVICE=cuda beside one on the CPU:
    the provider each reports, the same requests answered by both (binary answers, compared
    array by array) and case A over HTTP, every call a new source and new receivers."""
    import tempfile

    from benchmarks import client as http
    from benchmarks.server import ServerProcess

    out: dict[str, Any] = {}
    servers: dict[str, ServerProcess] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for device in ("cuda", "cpu"):
                settings = {"FIELDSERVE_DEVICE": device}
                servers[device] = ServerProcess(Path(tmp), model_dir, settings).start()
            clients = {d: http.LeanClient(s.port) for d, s in servers.items()}
            ready = {d: c.get("/health/ready").json() for d, c in clients.items()}
            out["providers"] = {d: r.get("execution_provider") for d, r in ready.items()}
            parity, a_work = _served_parity(clients, ready["cuda"].get("models", []), model_dir)
            out["parity_max_rel"] = parity
            out["parity_ok"] = all(v <= PARITY_RTOL for v in parity.values())
            if a_work is not None:
                out["A_model"] = a_work.name
                out["A_http_miss"] = {d: _time_a(c, a_work, reps) for d, c in clients.items()}
            for c in clients.values():
                c.close()
        finally:
            for server in servers.values():
                server.stop()
    return out


def _served_parity(
    clients: dict[str, Any], models: list[dict[str, Any]], model_dir: Path
) -> tuple[dict[str, float], AcousticWorkload | None]:
    """Every served model asked the same question on CUDA and on the CPU: the largest
    difference per float array of the answers, and the acoustic workload for case A."""
    from benchmarks import client as http

    parity: dict[str, float] = {}
    a_work: AcousticWorkload | None = None  # case A: the 3-D room where there is one
    for m in models:
        version_dir = latest_version(model_dir, m["name"])
        if version_dir is None:
            continue
        manifest = load_manifest(version_dir)
        if m["family"] == "deeponet":
            w = AcousticWorkload(version_dir, manifest, seed=2)
            request = w.request(w.sources(1)[0], w.receivers(1000))
            if w.dim == 3 or a_work is None:
                a_work = w
        else:
            g = AirfoilWorkload(version_dir, manifest, seed=2)
            code = next(g.codes())
            request = g.request({"naca": code}, g.query(code))
        url, body = f"/v1/models/{m['name']}/predict", http.body(request)
        answers = {
            d: http.decoded(c.post(url, content=body, headers=http.headers(True)))[1]
            for d, c in clients.items()
        }
        for name, want in answers["cpu"].items():
            if want.dtype.kind == "f" and name in answers["cuda"]:
                parity[f"{m['name']}/{name}"] = _parity(answers["cuda"][name], want)
    return parity, a_work


def _time_a(c: Any, w: AcousticWorkload, reps: int) -> dict[str, Any]:
    from benchmarks import client as http

    bodies = [http.body(w.request(s, w.receivers(5))) for s in w.sources(reps + 20)]
    url = f"/v1/models/{w.name}/predict"
    calls = iter(bodies)
    return _time(lambda: c.post(url, content=next(calls)).raise_for_status(), reps, warmup=20)


def _cuda_usable() -> str | None:
    """None when a session really gets CUDA, else why not."""
    available = ort.get_available_providers()
    if CUDA not in available:
        return (
            f"onnxruntime {ort.__version__} lists no {CUDA} (available: {', '.join(available)}); "
            "install onnxruntime-gpu on a machine with an NVIDIA GPU (deploy/Dockerfile.gpu)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    p.add_argument("--model-dir", type=Path, default=Path("models"))
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--service",
        action="store_true",
        help="also start the service with FIELDSERVE_DEVICE=cuda beside one on the CPU and "
        "compare their answers (needs the service's dependencies)",
    )
    args = p.parse_args(argv)
    doc: dict[str, Any] = {
        "onnxruntime": ort.__version__,
        "available_providers": list(ort.get_available_providers()),
        "cpu_model": cpu_model(),
    }
    if CUDA in ort.get_available_providers():
        said = preload_cuda()  # as the service does
        if said:
            doc["preload_cuda"] = said
    why = _cuda_usable()
    if why is not None:
        doc.update(gpu=False, reason=why)
        print(json.dumps(doc, indent=2))
        return 0
    models: dict[str, Any] = {}
    for entry in sorted(args.model_dir.iterdir()) if args.model_dir.is_dir() else []:
        version_dir = latest_version(args.model_dir, entry.name)
        if version_dir is None:
            continue
        family = load_manifest(version_dir).get("family")
        try:
            if family == "deeponet":
                models[entry.name] = check_deeponet(version_dir, args.quick)
            elif family == "enf2enf":
                models[entry.name] = check_enf2enf(version_dir, args.quick)
            else:
                models[entry.name] = {"skipped": f"family {family!r}"}
        except Exception as exc:  # report the model, keep checking the others
            models[entry.name] = {"error": f"{type(exc).__name__}: {exc}"}
    got_cuda = [name for name, m in models.items() if CUDA in m.get("providers", {}).values()]
    doc["models"] = models
    doc["gpu"] = bool(got_cuda)
    if not got_cuda:
        doc["reason"] = (
            f"{CUDA} is listed but no session got it (CUDA or cuDNN libraries missing, or no "
            "device): onnxruntime fell back to the CPU"
        )
        print(json.dumps(doc, indent=2))
        return 0
    try:
        import subprocess

        doc["device"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        doc["device"] = None
    if args.service:
        try:
            doc["service"] = check_service(args.model_dir, 50 if args.quick else 300)
        except Exception as exc:  # report it beside the graph checks
            doc["service"] = {"error": f"{type(exc).__name__}: {exc}", "parity_ok": False}
    checks = [*models.values(), doc.get("service", {})]
    doc["parity_ok"] = all(m.get("parity_ok", True) for m in checks)
    print(json.dumps(doc, indent=2))
    return 0 if doc["parity_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
