"""`python -m training import ...`: bring outside datasets into the geometry-dataset format.

    python -m training import airfrans --src AIRFRANS_ROOT --out DATA_DIR [--task full]
        [--max-samples N] [--points N] [--box X0,X1,Y0,Y1] [--seed S]
    python -m training import vtk --src FOLDER --out DATA_DIR --fields p,u=U:0,v=U:1
        --conditions load,angle=aoa [--field-units Pa,m/s,m/s] [--condition-units N,deg]
        [--test-fraction 0.2] [--seed S] [--points N] [--boundary auto|lines]

See `airfrans_import` and `vtk_import` for what each reads. An import reads and checks every
sample before it writes anything, and writes all its splits or none: after any error the output
folder holds no `.partial` file and no split of this import.

`register(sub)` adds the subcommand to `training/cli.py`'s parser; each leaf sets `fn` to
`(args, argv) -> int`. A bad sample raises GeometryDataError, a bad option ConfigError, a
missing folder FileNotFoundError, an output split from another config FileExistsError (the CLI
prints each as one `error: ...` line naming the file and sample, and exits 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.common.config import ConfigError
from training.geometry_data.format import (
    Capacity,
    GeometryDataError,
    Sample,
    Schema,
    check_sample,
    existing,
    split_path,
    write_split,
)

log = logging.getLogger(__name__)

# One split as an importer hands it over: (split name, role, [(where, sample), ...]).
SplitSamples = tuple[str, str, list[tuple[str, Sample]]]


def fingerprint_of(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def capacity_of(splits: Sequence[SplitSamples]) -> Capacity:
    samples = [s for _, _, items in splits for _, s in items]
    return Capacity(
        max_polylines=max(len(s.polylines) for s in samples),
        max_vertices=max(len(p) for s in samples for p in s.polylines),
        max_points=max(len(s.points) for s in samples),
    )


def write_splits(
    out: str | Path,
    schema: Schema,
    splits: Sequence[SplitSamples],
    *,
    config: Mapping[str, Any],
    command: str,
) -> list[Path]:
    """Check every sample, then write every split; on any error remove what this call wrote.

    A split already there from the same config is kept (the import is idempotent); one from
    another config is refused before anything is written (FileExistsError).
    """
    splits = [s for s in splits if s[2]]
    if not splits:
        raise GeometryDataError(f"{out}: nothing to import (no samples)")
    fingerprint = fingerprint_of(config)
    todo = [s for s in splits if not existing(split_path(out, s[0]), fingerprint)]
    cap = capacity_of(splits)  # over all splits: train and test pad alike
    for _, _, items in todo:
        for where, sample in items:
            check_sample(sample, schema, cap, where)
    written: list[Path] = []
    try:
        for split, role, items in todo:
            written.append(
                write_split(
                    out,
                    split,
                    role,
                    schema,
                    items,
                    len(items),
                    cap,
                    fingerprint=fingerprint,
                    config=config,
                    command=command,
                )
            )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return [split_path(out, s[0]) for s in splits]


def subsample(n: int, keep: int | None, seed: int, name: str) -> NDArray[np.int64]:
    """Indices (sorted) of `keep` of n items, drawn without replacement by a generator seeded
    with (seed, the sample's name): the same sample gives the same points whatever the order."""
    if keep is None or keep >= n:
        return np.arange(n, dtype=np.int64)
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    rng = np.random.default_rng([seed, key])
    return np.sort(rng.choice(n, size=keep, replace=False)).astype(np.int64)


def _command(argv: Sequence[str]) -> str:
    return shlex.join(["python", "-m", "training", *argv])


def _parse_box(text: str) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        x0, x1, y0, y1 = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"--box {text!r}: expected X0,X1,Y0,Y1") from exc
    if not (x0 < x1 and y0 < y1):
        raise ConfigError(f"--box {text!r}: needs X0 < X1 and Y0 < Y1")
    return (x0, x1), (y0, y1)


def _report(paths: Sequence[Path]) -> None:
    for path in paths:
        print(f"{path.stem}: {path}")


def cmd_import_airfrans(args: argparse.Namespace, argv: list[str]) -> int:
    from training.geometry_data.airfrans_import import import_airfrans

    box = _parse_box(args.box)
    if args.points is not None and args.points < 1:
        raise ConfigError(f"--points must be at least 1, got {args.points}")
    if args.max_samples is not None and args.max_samples < 1:
        raise ConfigError(f"--max-samples must be at least 1, got {args.max_samples}")
    paths = import_airfrans(
        args.src, args.out, task=args.task, max_samples=args.max_samples,
        points=args.points, box=box, seed=args.seed, command=_command(argv),
    )  # fmt: skip
    _report(paths)
    return 0


def cmd_import_vtk(args: argparse.Namespace, argv: list[str]) -> int:
    from training.geometry_data.vtk_import import import_vtk, parse_conditions, parse_fields

    fields = parse_fields(args.fields, args.field_units)
    conditions = parse_conditions(args.conditions, args.condition_units)
    if not 0.0 <= args.test_fraction < 1.0:
        raise ConfigError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    if args.points is not None and args.points < 1:
        raise ConfigError(f"--points must be at least 1, got {args.points}")
    paths = import_vtk(
        args.src, args.out, fields=fields, conditions=conditions,
        test_fraction=args.test_fraction, seed=args.seed, points=args.points,
        boundary=args.boundary, problem=args.problem, solver=args.solver,
        length_unit=args.length_unit, command=_command(argv),
    )  # fmt: skip
    _report(paths)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `import airfrans` and `import vtk` to a CLI's subcommands."""
    from training.geometry_data import airfrans_import, vtk_import

    imp = sub.add_parser(
        "import",
        help="convert an outside dataset (AirfRANS, a folder of VTK files) into a data folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = imp.add_subparsers(dest="source", required=True)

    a = kinds.add_parser(
        "airfrans",
        help="AirfRANS simulations (RANS around NACA airfoils)",
        description=airfrans_import.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("--src", required=True, help="AirfRANS root (with manifest.json)")
    a.add_argument("--out", required=True, help="data folder to write train.h5 and test.h5 into")
    a.add_argument(
        "--task",
        choices=sorted(airfrans_import.TASK_SPLITS),
        default="full",
        help="which manifest splits: full (default), scarce, reynolds, aoa",
    )
    a.add_argument("--max-samples", type=int, help="at most N simulations per split")
    a.add_argument(
        "--points", type=int, help="field points per sample (default: every node in the box)"
    )
    a.add_argument(
        "--box",
        default=airfrans_import.DEFAULT_BOX_TEXT,
        metavar="X0,X1,Y0,Y1",
        help=f"region kept, in chords (default {airfrans_import.DEFAULT_BOX_TEXT})",
    )
    a.add_argument("--seed", type=int, default=0, help="seed of the point subsampling")
    a.set_defaults(fn=cmd_import_airfrans)

    v = kinds.add_parser(
        "vtk",
        help="a folder of VTU/VTK files, one 2-D sample per file",
        description=vtk_import.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("--src", required=True, help="folder of *.vtu / *.vtk files")
    v.add_argument("--out", required=True, help="data folder to write train.h5 (and test.h5)")
    v.add_argument(
        "--fields",
        required=True,
        help="comma list of NAME or NAME=ARRAY or NAME=ARRAY:COMPONENT (point data)",
    )
    v.add_argument("--field-units", help="comma list of units, one per field (default none)")
    v.add_argument(
        "--conditions",
        required=True,
        help="comma list of NAME or NAME=KEY: from <file>.json's 'conditions' when that file "
        "exists, else from the mesh's field data",
    )
    v.add_argument("--condition-units", help="comma list of units, one per condition")
    v.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share of files (seeded shuffle) in test.h5 (default 0.2; 0: train only)",
    )
    v.add_argument("--seed", type=int, default=0, help="seed of the split and subsampling")
    v.add_argument("--points", type=int, help="field points per sample (default: every node)")
    v.add_argument(
        "--boundary",
        choices=vtk_import.BOUNDARY_MODES,
        default="auto",
        help="auto: the 2-D cells' boundary loops (outer = domain, inner = bodies); "
        "lines: the mesh's line cells, chained into loops, are the bodies",
    )
    v.add_argument("--problem", help="problem name (default: the folder's name)")
    v.add_argument("--solver", default="unknown (imported VTK files)", help="solver attribute")
    v.add_argument("--length-unit", default="m", help="unit of the coordinates (default m)")
    v.set_defaults(fn=cmd_import_vtk)
