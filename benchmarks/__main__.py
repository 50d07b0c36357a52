"""`python -m benchmarks run --json out.json [--quick] [--cases A,B,...]`;
`python -m benchmarks chaos --json out.json [--quick | --scale S] [--scenarios a,b,...]`."""

from __future__ import annotations

import os

# The raw (in-process) side is the floor: numpy's OpenBLAS left multi-threaded turns the
# field's one matrix-vector product into a thread rendezvous that costs milliseconds on a
# busy 2-core machine (>= 8,000 rows: ~11 ms instead of ~0.06 ms). Set before numpy loads;
# the service under test does not inherit it (benchmarks.server), so it runs as deployed.
if "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["BENCHMARKS_SET_OPENBLAS"] = "1"

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import cases, machine, report, targets
from benchmarks import chaos as chaos_suite
from benchmarks.context import Context, Options


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the service, measure the cases, print and save")
    run.add_argument("--json", type=Path, help="write the results here")
    run.add_argument("--quick", action="store_true", help="few repetitions, short load (smoke)")
    run.add_argument("--cases", default=cases.CASES, help="e.g. A,B,D (default: all, A to H)")
    run.add_argument("--model-dir", type=Path, default=Path("models"), help="model repository")
    run.add_argument("--model", default="acoustics-room-3d", help="the acoustic model")
    run.add_argument("--geo-model", default="airfoil-enf2enf", help="the geometry model")
    run.add_argument(
        "--geo-dir",
        type=Path,
        default=Path("/tmp/geo_models"),
        help="where to take the geometry model from when --model-dir has none",
    )
    run.add_argument("--torch-run", type=Path, help="training run (checkpoint.pt) for torch eager")
    run.add_argument("--torch-threads", type=int, help="torch.set_num_threads (default: torch's)")
    run.add_argument("--duration", type=float, help="case F seconds per mode (20; quick 3)")
    run.add_argument("--clients", type=int, default=16, help="case F concurrency")
    run.add_argument(
        "--intra-op-threads",
        type=int,
        help="FIELDSERVE_INTRA_OP_THREADS for the service and the raw sessions (default: the "
        "service's default, 0 = one per core)",
    )
    run.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="FIELDSERVE_X=V",
        help="extra setting for the service (repeatable)",
    )
    run.add_argument("--max-reps", type=int, help="cap every latency mode's repetitions")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--keep", action="store_true", help="keep the work folder (server logs)")

    chaos = sub.add_parser(
        "chaos", help="the reliability suite: the service under faults, every answer checked"
    )
    chaos.add_argument("--json", type=Path, help="write the results here")
    chaos.add_argument(
        "--quick",
        action="store_true",
        help=f"the same scenarios small (--scale {chaos_suite.QUICK_SCALE})",
    )
    chaos.add_argument(
        "--scale", type=float, default=1.0, help="durations and counts (1: minutes in all)"
    )
    names = ",".join(chaos_suite.SCENARIOS)
    chaos.add_argument("--scenarios", default=names, help=f"from {names}")
    chaos.add_argument("--clients", type=int, default=16, help="concurrent clients under load")
    chaos.add_argument("--model-dir", type=Path, default=Path("models"), help="model repository")
    chaos.add_argument("--model", default="acoustics-room-2d", help="the acoustic model")
    chaos.add_argument("--seed", type=int, default=0)
    chaos.add_argument("--keep", action="store_true", help="keep the work folder (server logs)")
    return p


def _cases(spec: str) -> list[str]:
    chosen = [c.strip().upper() for c in spec.replace(" ", ",").split(",") if c.strip()]
    if len(chosen) == 1 and len(chosen[0]) > 1:
        chosen = list(chosen[0])
    bad = [c for c in chosen if c not in cases.CASES]
    if bad:
        raise SystemExit(f"unknown cases {bad}; choose from {','.join(cases.CASES)}")
    return sorted(set(chosen), key=cases.CASES.index)


def run(args: argparse.Namespace) -> int:
    chosen = _cases(args.cases)
    env = {}
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("FIELDSERVE_"):
            raise SystemExit(f"--server-env takes FIELDSERVE_NAME=VALUE, got {item!r}")
        env[key] = value
    workdir = Path(tempfile.mkdtemp(prefix="fieldserve-bench-"))
    duration = args.duration if args.duration is not None else (3.0 if args.quick else 20.0)
    opts = Options(
        quick=args.quick,
        model_dir=args.model_dir,
        model=args.model,
        geo_model=args.geo_model,
        geo_dir=args.geo_dir,
        torch_run=args.torch_run,
        torch_threads=args.torch_threads,
        duration=duration,
        clients=args.clients,
        intra_op_threads=args.intra_op_threads,
        server_env=env,
        seed=args.seed,
        max_reps=args.max_reps,
        workdir=workdir,
    )
    started = dt.datetime.now(dt.UTC)
    doc: dict[str, Any] = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "argv": sys.argv,
        "quick": args.quick,
        "machine": machine.describe(),
        "cases": {},
    }
    ctx = Context(opts)
    results: dict[str, dict[str, Any]] = doc["cases"]
    runners = {
        "A": cases.case_a,
        "B": cases.case_b,
        "C": cases.case_c,
        "D": cases.case_d,
        "E": cases.case_e,
        "F": cases.case_f,
        "G": cases.case_g,
        "H": cases.case_h,
    }
    try:
        for name in chosen:
            t0 = time.perf_counter()
            print(f"case {name} ...", file=sys.stderr, flush=True)
            try:
                results[name] = runners[name](ctx)
            except Exception as exc:  # one broken case must not lose the others
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
    finally:
        ctx.close()
    doc["machine"]["load_average_end"] = machine.load_average()
    doc["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    doc["model"] = {"name": ctx.work.name, "path": str(ctx.work.version_dir)}
    doc["geo_model"] = (
        {"name": ctx.geo.name, "path": str(ctx.geo.version_dir.resolve())} if ctx.geo else None
    )
    doc["service"] = {
        "provider": ctx.health.get("execution_provider"),
        "cache_backend": ctx.health.get("cache", {}).get("backend"),
        "settings": ctx.server_settings(),
        "models": [f"{m['name']}/{m['version']}" for m in ctx.served],
    }
    doc["raw_side"] = {
        "intra_op_threads": ctx.threads,
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "torch_threads": ctx.torch_threads,
    }
    doc["targets"] = targets.evaluate(results)
    doc["notes"] = [
        *ctx.notes,
        "HTTP times are client round trips (http.client, keep-alive, TCP_NODELAY) up to the "
        "last byte of the answer, without the client's decoding; the client shares the cores "
        "with the service, so the leanest one is timed and httpx rows show what a heavier "
        "client adds; 'in service' is the service's own request-duration histogram over the "
        "same calls",
    ]
    print(report.table(doc))
    if args.json:
        report.write(doc, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.keep:
        print(f"work folder (server logs): {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return run(args)
    if args.command == "chaos":
        return chaos_suite.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
