"""`python -m training`: generate ground truth, train, evaluate and export operator models."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from training import promotion
from training.common.config import ConfigError, from_dict, load_yaml
from training.common.launch import Launch, is_main_process
from training.enf2enf import problems
from training.geometry_data.format import GeometryDataError

# Model family -> the package that trains it: train (TrainConfig, train), evaluate
# (evaluate_model_dir) and export (export).
FAMILIES = {"deeponet": "acoustics", "enf2enf": "enf2enf"}
# Problem -> the module that makes its data: DatasetConfig, SPLITS, generate_split. A config
# names its problem (`problem:`; acoustic configs are acoustics, enf2enf ones airfoils unless
# they say otherwise).
GENERATORS = {"acoustics": "training.acoustics.dataset", **problems.GENERATORS}
DEFAULT_PROBLEM = {"deeponet": "acoustics", "enf2enf": "airfoils"}


def _task_module(family: str, module: str) -> Any:
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    return importlib.import_module(f"training.{FAMILIES[family]}.{module}")


def _problem(cfg: dict[str, Any]) -> str:
    problem = str(cfg.get("problem", DEFAULT_PROBLEM[cfg["family"]]))
    if problem not in GENERATORS:
        raise ConfigError(
            f"problem {problem!r} has no generator (known: {sorted(GENERATORS)}); an imported "
            "dataset is trained with `train --data <folder>`"
        )
    return problem


def _dataset_module(cfg: dict[str, Any]) -> Any:
    return importlib.import_module(GENERATORS[_problem(cfg)])


def _family_of(path: str | Path) -> str:
    """Family of an exported version (manifest) or a training run (checkpoint)."""
    path = Path(path)
    if (path / "manifest.json").exists():
        return str(json.loads((path / "manifest.json").read_text())["family"])
    if (path / "checkpoint.pt").exists():
        import torch

        return str(
            torch.load(path / "checkpoint.pt", map_location="cpu", weights_only=False)["family"]
        )
    raise FileNotFoundError(f"{path} holds neither manifest.json nor checkpoint.pt")


def _command(argv: list[str]) -> str:
    return shlex.join(["python", "-m", "training", *argv])


def _load_config(path: str) -> dict[str, Any]:
    cfg = load_yaml(path)
    family = cfg.get("family")
    if family not in FAMILIES:
        raise ConfigError(f"{path}: 'family' must be one of {sorted(FAMILIES)}, got {family!r}")
    if "dataset" not in cfg:
        raise ConfigError(f"{path}: missing 'dataset' section")
    return cfg


def _override(cfg: dict[str, Any], item: str) -> None:
    """Apply `section.key=value` (value parsed as YAML) to the model or train section."""
    key, sep, raw = item.partition("=")
    section, dot, field = key.partition(".")
    if not sep or not dot or section not in ("model", "train"):
        raise ConfigError(f"--set {item!r}: expected model.KEY=VALUE or train.KEY=VALUE")
    cfg.setdefault(section, {})[field] = yaml.safe_load(raw)


def cmd_generate(args: argparse.Namespace, argv: list[str]) -> int:
    cfg = _load_config(args.config)
    if _problem(cfg) != args.task:
        raise ConfigError(f"{args.config} describes {_problem(cfg)} data, not {args.task}")
    dataset = _dataset_module(cfg)
    data_cfg = from_dict(dataset.DatasetConfig, cfg["dataset"], "dataset")
    out = Path(args.out or Path("data") / data_cfg.name)
    unknown = sorted(set(args.splits or ()) - set(dataset.SPLITS))
    if unknown:
        raise ConfigError(f"--splits {unknown}: {args.task} has splits {list(dataset.SPLITS)}")
    with _process_group(args.device):
        for split in args.splits or dataset.SPLITS:
            path = dataset.generate_split(
                data_cfg, out, split, device=args.device, command=_command(argv)
            )
            if is_main_process():
                print(f"{split}: {path}")
    return 0


def cmd_train(args: argparse.Namespace, argv: list[str]) -> int:
    cfg = _load_config(args.config)
    for item in args.set or []:
        _override(cfg, item)
    name = cfg["dataset"]["name"]
    trainer = _task_module(cfg["family"], "train")
    train_cfg = from_dict(trainer.TrainConfig, cfg.get("train", {}), "train")
    if args.steps is not None:
        train_cfg.steps = args.steps
    state = trainer.train(
        run_dir=args.out or Path("runs") / name,
        data_dir=args.data or Path("data") / name,
        model_cfg=cfg.get("model", {}),
        train_cfg=train_cfg,
        device=args.device,
        max_minutes=args.max_minutes,
        fresh=args.fresh,
        command=_command(argv),
    )
    if is_main_process():  # under torchrun, rank 0 holds the history and speaks for the run
        last = state.history[-1] if state.history else {}
        print(json.dumps({"step": state.step, **last}))
    return 0


def cmd_evaluate(args: argparse.Namespace, argv: list[str]) -> int:
    evaluator = _task_module(_family_of(args.model_dir), "evaluate")
    metrics = evaluator.evaluate_model_dir(args.model_dir, args.data, progress=not args.json)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>26}: {value}")
    return 0


def cmd_export(args: argparse.Namespace, argv: list[str]) -> int:
    exporter = _task_module(_family_of(args.run), "export")
    path = exporter.export(
        args.run,
        args.out,
        name=args.name,
        version=args.version,
        data_dir=args.data,
        command=_command(argv),
    )
    # On stderr: scripts read the version folder from the last line of stdout.
    print(promotion.state_of(Path(path)), file=sys.stderr)
    print(path)
    return 0


def cmd_promote(args: argparse.Namespace, argv: list[str]) -> int:
    act = promotion.demote if args.command == "demote" else promotion.promote
    try:
        print(act(args.version_dir, args.force, args.reason, _command(argv)))
    except promotion.RefusedError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except promotion.PromotionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


@contextmanager
def _process_group(device: str) -> Iterator[None]:
    """One torchrun process group for every stage of a command (none without torchrun)."""
    if not Launch.from_env().launched:
        yield
        return
    from training.common.distributed import distributed

    with distributed(device):
        yield


def cmd_pipeline(args: argparse.Namespace, argv: list[str]) -> int:
    from training.pipeline import check_budget, run_pipeline

    cfg = _load_config(args.config)
    for item in args.set or []:
        _override(cfg, item)
    if FAMILIES[cfg["family"]] != "acoustics" and Launch.from_env().world_size > 1:
        raise ConfigError(
            "under torchrun the pipeline shards acoustic data only: run `generate` once, "
            "then the pipeline (or `train`) under torchrun"
        )
    name = cfg["dataset"]["name"]
    budget = check_budget(args.budget_minutes, args.reserve_minutes)
    data = Path(args.data or Path("data") / name)
    run = Path(args.run or Path("runs") / name)
    # The data record the stand-alone `generate` that repeats them; training and export record
    # the pipeline command itself.
    config = ["--config", args.config]
    with _process_group(args.device):
        run_pipeline(
            cfg,
            dataset_module=_dataset_module(cfg),
            trainer=_task_module(cfg["family"], "train"),
            exporter=_task_module(cfg["family"], "export"),
            data_dir=data,
            run_dir=run,
            models_root=Path(args.out),
            name=args.name,
            version=args.version,
            device=args.device,
            budget=budget,
            fresh=args.fresh,
            commands={
                "generate": _command(["generate", _problem(cfg), *config, "--out", str(data)]),
                "train": _command(argv),
                "export": _command(argv),
            },
        )
    return 0


def cmd_export_triton(args: argparse.Namespace, argv: list[str]) -> int:
    from training.triton import export_triton

    written = export_triton(args.model, args.out)
    print(json.dumps(written, indent=1))
    return 0


def cmd_report(args: argparse.Namespace, argv: list[str]) -> int:
    from training.reports import make_report

    print(make_report(args.model_dir, args.data, args.cases, args.out, progress=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all cores)"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="make ground truth with a numerical solver")
    g.add_argument("task", choices=sorted(GENERATORS), help="the problem whose solver runs")
    g.add_argument("--config", required=True, help="YAML config (see configs/)")
    g.add_argument("--out", help="data folder (default data/<name>)")
    g.add_argument("--splits", nargs="+", help="which splits to make (default: all)")
    g.add_argument("--device", default="cpu", help="torch device for the solver (cpu, cuda)")
    g.set_defaults(fn=cmd_generate)

    t = sub.add_parser("train", help="train (resumes from runs/<name>/checkpoint.pt)")
    t.add_argument("--config", required=True)
    t.add_argument("--data", help="data folder (default data/<name>)")
    t.add_argument("--out", help="run folder (default runs/<name>)")
    t.add_argument("--steps", type=int, help="total steps (overrides the config)")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--max-minutes", type=float, help="checkpoint and stop after this long")
    t.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    t.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override a model or train setting, e.g. --set model.trunk_width=256",
    )
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("evaluate", help="accuracy against the solver on held-out sources")
    e.add_argument("model_dir", help="models/<name>/<version> or a run folder")
    e.add_argument("--data", help="data folder (default data/<name>; made if missing)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(fn=cmd_evaluate)

    x = sub.add_parser("export", help="write ONNX graphs + manifest into the model repository")
    x.add_argument("--run", required=True, help="run folder with checkpoint.pt")
    x.add_argument("--out", default="models", help="model repository root")
    x.add_argument("--name", help="model name (default: the dataset name)")
    x.add_argument("--version", help="version (default: next integer)")
    x.add_argument("--data", help="data folder for the evaluation (default data/<name>)")
    x.set_defaults(fn=cmd_export)

    pr = sub.add_parser(
        "promote",
        help="let an exported version answer as the model's latest, if its metrics are no worse",
    )
    pr.add_argument("version_dir", help="an exported version: models/<name>/<v>")
    pr.add_argument(
        "--force",
        action="store_true",
        help="promote even when its metric is worse than the promoted version's (or missing)",
    )
    pr.add_argument("--reason", default="", help="why, kept in the promotion record")
    pr.set_defaults(fn=cmd_promote)

    dm = sub.add_parser(
        "demote", help="take a version's promotion back (it stays served by its number)"
    )
    dm.add_argument("version_dir", help="a promoted version: models/<name>/<v>")
    dm.add_argument(
        "--force", action="store_true", help="even when it is the last promoted version"
    )
    dm.add_argument("--reason", default="", help="why, kept in the promotion record")
    dm.set_defaults(fn=cmd_promote)

    pl = sub.add_parser(
        "pipeline",
        help="generate, train, evaluate and export in one command, within a time budget",
    )
    pl.add_argument("--config", required=True, help="YAML config (see configs/)")
    pl.add_argument("--device", default="auto", help="auto, cpu or cuda (solver and training)")
    pl.add_argument("--budget-minutes", type=float, help="wall-clock budget for every stage")
    pl.add_argument(
        "--reserve-minutes",
        type=float,
        default=2.0,
        help="part of the budget kept from training for evaluation and export (default 2)",
    )
    pl.add_argument("--data", help="data folder (default data/<name>)")
    pl.add_argument("--run", help="run folder (default runs/<name>)")
    pl.add_argument("--out", default="models", help="model repository root")
    pl.add_argument("--name", help="model name (default: the dataset name)")
    pl.add_argument("--version", help="version (default: next integer)")
    pl.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    pl.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="as for train")
    pl.set_defaults(fn=cmd_pipeline)

    tr = sub.add_parser(
        "export-triton",
        help="write an NVIDIA Triton model repository for an exported version (no torch)",
    )
    tr.add_argument("--model", required=True, help="an exported version: models/<name>/<v>")
    tr.add_argument("--out", required=True, help="Triton model repository root (made if missing)")
    tr.set_defaults(fn=cmd_export_triton)

    rp = sub.add_parser(
        "report",
        help="write report.html into a version folder: loss curves, fields against the "
        "solver, metrics",
    )
    rp.add_argument("model_dir", help="an exported version: models/<name>/<v>")
    rp.add_argument("--data", help="dataset folder (default data/<name>; missing cases are solved)")
    rp.add_argument("--cases", type=int, default=3, help="held-out cases to show (default 3)")
    rp.add_argument("--out", help="where to write the page (default <model_dir>/report.html)")
    rp.set_defaults(fn=cmd_report)

    from training.geometry_data.importers import register as register_importers

    register_importers(sub)  # `import airfrans`, `import vtk`: datasets users already have
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # Under torchrun, acoustic generation and all training are sharded over the ranks; any
    # other command is rank 0's alone.
    sharded = args.command in ("train", "pipeline") or getattr(args, "task", "") == "acoustics"
    if not sharded and not is_main_process():
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return int(args.fn(args, argv))
    except (ConfigError, GeometryDataError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
