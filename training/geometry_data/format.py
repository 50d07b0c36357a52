"""The on-disk format of "geometry -> fields" datasets, which every enf2enf model trains on.

A dataset is a folder with one HDF5 file per split (`train.h5`, `val.h5`, `test.h5`, ...). A
sample is a 2-D domain: a box, minus the inside of one or more closed polylines (airfoil
elements, a void in an elastic cell), global conditions (angle of attack and speed, a load),
and fields at points of the domain. Generators (the panel method, the FEM solver) and the
importers (AirfRANS, VTK folders) write it; `train` and `evaluate` read it with a config alone.

Arrays per split, S samples, padded to the split's capacity (NaN or 0 past each count; in
memory, `read` repeats each sample's first point there instead, so batched predictions stay
finite):

  polylines (S, E, V, 2) f8     closed boundary polylines (the last vertex may repeat the first)
  n_polylines (S,) i4, n_vertices (S, E) i4
  conditions (S, C) f4          global conditions, in `condition_names` order
  points (S, N, 2) f4           field points; n_points (S,) i4 of them are real
  sdf (S, N) f4                 signed distance to the nearest polyline: > 0 in the domain
  fields (S, N, F) f4           in `field_names` order
  encoder_points (S, M, 2) f4   the point set the geometry encoder fits, and its SDF:
  encoder_sdf (S, M) f4         geometry.polylines.encoder_points(polylines, M, box, seed=0)
  dense_points / dense_sdf / dense_fields / n_dense   optional: the same samples at a finer
                                resolution (more points, or a finer mesh), for the
                                super-resolution check
  done (S,) bool                a sample counts once all its arrays are written
  extra/<name> (S, ...)         optional problem-specific per-sample arrays (airfoil Cp, lift)

File attributes: `format` ("fieldserve-geometry"), `format_version`, `problem`, `split`,
`role` (train, val or test), `field_names`, `field_units`, `condition_names`,
`condition_units`, `length_unit`, `box` ([[x0, x1], [y0, y1]]), `box_is_domain` (true when the
box is the domain's outer boundary, so points outside it are invalid; false when it only
bounds the sampled region, as around an airfoil), `solver`, `config`, `fingerprint`, `command`,
and optionally `data_error` (JSON: the data against the same samples at a finer resolution).

Writing is resumable: a split is written as `<split>.h5.partial`, sample by sample, and renamed
once every sample is done; a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from geometry.polylines import encoder_points, signed_distance

log = logging.getLogger(__name__)

FORMAT = "fieldserve-geometry"
FORMAT_VERSION = 1
ROLES = ("train", "val", "test")
ENCODER_SEED = 0  # the seed serving uses too: one geometry always gives the same latents

F64 = NDArray[np.float64]


class GeometryDataError(ValueError):
    """A dataset (or a sample being written) breaks the format; the message names where."""


@dataclass(frozen=True)
class Schema:
    """What a dataset's samples hold, with names and units (the file's attributes)."""

    problem: str
    field_names: tuple[str, ...]
    field_units: tuple[str, ...]
    condition_names: tuple[str, ...]
    condition_units: tuple[str, ...]
    length_unit: str
    box: tuple[tuple[float, float], tuple[float, float]]
    box_is_domain: bool
    solver: str

    def __post_init__(self) -> None:
        if not self.field_names or len(self.field_units) != len(self.field_names):
            raise GeometryDataError("field_names and field_units must be non-empty and match")
        if len(self.condition_units) != len(self.condition_names):
            raise GeometryDataError("condition_names and condition_units must match")
        (x0, x1), (y0, y1) = self.box
        if not (x0 < x1 and y0 < y1):
            raise GeometryDataError(
                f"box must be [[x0, x1], [y0, y1]] with x0 < x1, y0 < y1: {self.box}"
            )

    def attrs(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "field_names": json.dumps(self.field_names),
            "field_units": json.dumps(self.field_units),
            "condition_names": json.dumps(self.condition_names),
            "condition_units": json.dumps(self.condition_units),
            "length_unit": self.length_unit,
            "box": json.dumps([list(r) for r in self.box]),
            "box_is_domain": bool(self.box_is_domain),
            "solver": self.solver,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], where: str) -> Schema:
        try:
            box = json.loads(attrs["box"])
            return cls(
                problem=str(attrs["problem"]),
                field_names=tuple(json.loads(attrs["field_names"])),
                field_units=tuple(json.loads(attrs["field_units"])),
                condition_names=tuple(json.loads(attrs["condition_names"])),
                condition_units=tuple(json.loads(attrs["condition_units"])),
                length_unit=str(attrs["length_unit"]),
                box=((float(box[0][0]), float(box[0][1])), (float(box[1][0]), float(box[1][1]))),
                box_is_domain=bool(attrs["box_is_domain"]),
                solver=str(attrs["solver"]),
            )
        except KeyError as exc:
            raise GeometryDataError(f"{where}: attribute {exc.args[0]!r} missing") from exc


@dataclass(frozen=True)
class Capacity:
    """Padded sizes of a split: every sample must fit."""

    max_polylines: int
    max_vertices: int
    max_points: int
    n_encoder: int = 1024
    max_dense: int = 0  # 0: the split has no dense point set


@dataclass
class Sample:
    """One sample as a generator or importer hands it to the writer (float64 is fine)."""

    polylines: list[F64]
    conditions: NDArray[Any]  # (C,)
    points: NDArray[Any]  # (N, 2)
    fields: NDArray[Any]  # (N, F)
    sdf: NDArray[Any] | None = None  # (N,): computed from the polylines when absent
    dense_points: NDArray[Any] | None = None
    dense_fields: NDArray[Any] | None = None
    dense_sdf: NDArray[Any] | None = None
    extra: dict[str, NDArray[Any]] = field(default_factory=dict)


def check_sample(sample: Sample, schema: Schema, cap: Capacity, where: str) -> None:
    """Refuse a sample that breaks the format, naming `where` (file and sample) and the array."""

    def fail(problem: str) -> GeometryDataError:
        return GeometryDataError(f"{where}: {problem}")

    if not sample.polylines:
        raise fail("no boundary polyline (every sample needs at least one closed polyline)")
    if len(sample.polylines) > cap.max_polylines:
        raise fail(
            f"{len(sample.polylines)} polylines, the split holds at most {cap.max_polylines}"
        )
    for e, poly in enumerate(sample.polylines):
        arr = np.asarray(poly)
        if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 4:
            raise fail(f"polyline {e} must be (V >= 4, 2) points, got shape {arr.shape}")
        if len(arr) > cap.max_vertices:
            raise fail(f"polyline {e} has {len(arr)} vertices, at most {cap.max_vertices} fit")
        if not np.isfinite(arr).all():
            raise fail(f"polyline {e} has non-finite coordinates")
    cond = np.asarray(sample.conditions)
    if cond.shape != (len(schema.condition_names),):
        raise fail(f"conditions must have shape ({len(schema.condition_names)},), got {cond.shape}")
    for prefix, pts, flds in (
        ("", sample.points, sample.fields),
        ("dense_", sample.dense_points, sample.dense_fields),
    ):
        if pts is None or flds is None:
            if prefix == "dense_" and cap.max_dense and (pts is None) != (flds is None):
                raise fail("dense_points and dense_fields come together")
            continue
        pts, flds = np.asarray(pts), np.asarray(flds)
        limit = cap.max_points if not prefix else cap.max_dense
        n_fields = len(schema.field_names)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
            raise fail(f"{prefix}points must be (N >= 1, 2), got shape {pts.shape}")
        if flds.shape != (len(pts), n_fields):
            raise fail(f"{prefix}fields must be ({len(pts)}, {n_fields}), got {flds.shape}")
        if len(pts) > limit:
            raise fail(f"{len(pts)} {prefix}points, the split holds at most {limit}")
        for name, arr in (
            (f"{prefix}points", pts),
            (f"{prefix}fields", flds),
            ("conditions", cond),
        ):
            bad = ~np.isfinite(arr)
            if bad.any():
                first = np.argwhere(bad)[0].tolist()
                raise fail(f"{name} holds NaN or infinity (first at index {first})")
    if cap.max_dense and sample.dense_points is None:
        raise fail("this split stores a dense point set, and the sample has none")


def split_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / f"{split}.h5"


class Writer:
    """Writes one split sample by sample, resumably; `finish` renames it into place.

    Use as a context manager; an exception leaves the `.partial` file to resume from.
    """

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        role: str,
        schema: Schema,
        n_samples: int,
        cap: Capacity,
        *,
        fingerprint: str,
        config: Mapping[str, Any] | None = None,
        command: str = "",
        extra: Mapping[str, tuple[tuple[int, ...], Any]] | None = None,
    ) -> None:
        if role not in ROLES:
            raise GeometryDataError(f"role must be one of {ROLES}, got {role!r}")
        if n_samples < 1:
            raise GeometryDataError(f"split {split!r} needs at least one sample")
        self.schema, self.cap, self.split = schema, cap, split
        self.final = split_path(data_dir, split)
        self.partial = self.final.with_suffix(".h5.partial")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._open(n_samples, role, fingerprint, config or {}, command, extra or {})

    # --- file set-up -----------------------------------------------------------------------
    def _open(
        self,
        n_samples: int,
        role: str,
        fingerprint: str,
        config: Mapping[str, Any],
        command: str,
        extra: Mapping[str, tuple[tuple[int, ...], Any]],
    ) -> h5py.File:
        if self.partial.exists():
            try:
                f = h5py.File(self.partial, "r+")
                if f.attrs.get("fingerprint") == fingerprint and len(f["done"]) == n_samples:
                    log.info(
                        "resuming %s: %d of %d samples done",
                        self.partial,
                        int(f["done"][...].sum()),
                        n_samples,
                    )
                    return f
                f.close()
            except (OSError, KeyError):
                log.warning(
                    "%s is unreadable (interrupted mid-write); starting again", self.partial
                )
            self.partial.unlink()
        f = h5py.File(self.partial, "w")
        try:
            for key, (shape, dtype) in self._shapes(extra).items():
                # One chunk per sample: a resumed run rewrites whole samples, readers take samples.
                f.create_dataset(
                    key,
                    shape=(n_samples, *shape),
                    dtype=dtype,
                    # (HDF5 refuses a zero-length chunk: a dataset without conditions.)
                    chunks=(1, *shape) if shape and all(shape) else None,
                    fillvalue=np.nan if np.dtype(dtype).kind == "f" else 0,
                )
            f.create_dataset("done", data=np.zeros(n_samples, dtype=bool))
            attrs = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "split": self.split,
                "role": role,
                "fingerprint": fingerprint,
                "config": json.dumps(config),
                "command": command,
                **self.schema.attrs(),
            }
            for key, value in attrs.items():
                f.attrs[key] = value
        except BaseException:
            f.close()
            self.partial.unlink(missing_ok=True)
            raise
        return f

    def _shapes(
        self, extra: Mapping[str, tuple[tuple[int, ...], Any]]
    ) -> dict[str, tuple[tuple[int, ...], Any]]:
        cap, nf, nc = self.cap, len(self.schema.field_names), len(self.schema.condition_names)
        shapes: dict[str, tuple[tuple[int, ...], Any]] = {
            "polylines": ((cap.max_polylines, cap.max_vertices, 2), np.float64),
            "n_polylines": ((), np.int32),
            "n_vertices": ((cap.max_polylines,), np.int32),
            "conditions": ((nc,), np.float32),
            "points": ((cap.max_points, 2), np.float32),
            "sdf": ((cap.max_points,), np.float32),
            "fields": ((cap.max_points, nf), np.float32),
            "n_points": ((), np.int32),
            "encoder_points": ((cap.n_encoder, 2), np.float32),
            "encoder_sdf": ((cap.n_encoder,), np.float32),
        }
        if cap.max_dense:
            shapes.update(
                dense_points=((cap.max_dense, 2), np.float32),
                dense_sdf=((cap.max_dense,), np.float32),
                dense_fields=((cap.max_dense, nf), np.float32),
                n_dense=((), np.int32),
            )
        shapes.update({f"extra/{k}": v for k, v in extra.items()})
        return shapes

    # --- writing ---------------------------------------------------------------------------
    @property
    def done(self) -> NDArray[np.bool_]:
        return np.asarray(self._file["done"][...])

    def set_attr(self, key: str, value: Any) -> None:
        self._file.attrs[key] = json.dumps(value) if isinstance(value, dict | list) else value

    def write(self, index: int, sample: Sample, where: str | None = None) -> None:
        where = where or f"{self.partial.name}: sample {index}"
        check_sample(sample, self.schema, self.cap, where)
        f, box = self._file, self.schema.box
        polylines = [np.asarray(p, dtype=np.float64) for p in sample.polylines]
        padded = np.full(f["polylines"].shape[1:], np.nan)
        n_vertices = np.zeros(self.cap.max_polylines, dtype=np.int32)
        for e, poly in enumerate(polylines):
            padded[e, : len(poly)] = poly
            n_vertices[e] = len(poly)
        enc, enc_sdf = encoder_points(polylines, self.cap.n_encoder, box, seed=ENCODER_SEED)
        arrays: dict[str, Any] = {
            "polylines": padded,
            "n_polylines": len(polylines),
            "n_vertices": n_vertices,
            "conditions": np.asarray(sample.conditions, dtype=np.float32),
            "encoder_points": enc,
            "encoder_sdf": enc_sdf,
        }
        sets: list[tuple[str, Any, Any, Any, str]] = [
            ("", sample.points, sample.fields, sample.sdf, "n_points")
        ]
        if self.cap.max_dense:
            sets.append(
                ("dense_", sample.dense_points, sample.dense_fields, sample.dense_sdf, "n_dense")
            )
        for prefix, pts, flds, sdf, count in sets:
            assert pts is not None and flds is not None  # check_sample made sure
            pts = np.asarray(pts, dtype=np.float64)
            sdf = signed_distance(pts, polylines) if sdf is None else np.asarray(sdf)
            n, size = len(pts), f[f"{prefix}points"].shape[1]
            arrays[f"{prefix}points"] = _pad(pts, size)
            arrays[f"{prefix}sdf"] = _pad(sdf, size)
            arrays[f"{prefix}fields"] = _pad(np.asarray(flds, dtype=np.float64), size)
            arrays[count] = n
        for key, value in sample.extra.items():
            if f"extra/{key}" not in f:
                raise GeometryDataError(f"{where}: extra array {key!r} was not declared")
            arrays[f"extra/{key}"] = value
        for key, value in arrays.items():
            f[key][index] = value
        f["done"][index] = True  # last: a sample counts only once all of it is written
        f.flush()

    def finish(self) -> Path:
        done = self.done
        if not done.all():
            missing = np.flatnonzero(~done)[:5].tolist()
            raise GeometryDataError(f"{self.partial}: samples {missing}... were never written")
        self._file.close()
        os.replace(self.partial, self.final)
        return self.final

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pad(values: NDArray[Any], size: int) -> NDArray[Any]:
    out = np.full((size, *values.shape[1:]), np.nan)
    out[: len(values)] = values
    return out


def existing(path: Path, fingerprint: str) -> bool:
    """True when `path` is a finished split made from the same config; raises if another's."""
    if not path.exists():
        return False
    with h5py.File(path, "r") as f:
        if f.attrs.get("fingerprint") == fingerprint:
            return True
    raise FileExistsError(
        f"{path} was made from a different config; delete it or choose another --out"
    )


@dataclass
class Split:
    """One split in memory: the arrays of the module docstring, plus the schema."""

    path: Path
    schema: Schema
    attrs: dict[str, Any]
    polylines_padded: NDArray[np.float64]
    n_polylines: NDArray[np.int32]
    n_vertices: NDArray[np.int32]
    conditions: NDArray[np.float32]
    points: NDArray[np.float32]
    sdf: NDArray[np.float32]
    fields: NDArray[np.float32]
    n_points: NDArray[np.int32]
    encoder_points: NDArray[np.float32]
    encoder_sdf: NDArray[np.float32]
    dense_points: NDArray[np.float32] | None = None
    dense_sdf: NDArray[np.float32] | None = None
    dense_fields: NDArray[np.float32] | None = None
    n_dense: NDArray[np.int32] | None = None
    extra: dict[str, NDArray[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.conditions)

    @property
    def name(self) -> str:
        return str(self.attrs.get("split", self.path.stem))

    @property
    def role(self) -> str:
        return str(self.attrs.get("role", "train"))

    @property
    def config(self) -> dict[str, Any]:
        return dict(json.loads(self.attrs.get("config", "{}")))

    @property
    def box(self) -> F64:
        return np.asarray(self.schema.box, dtype=np.float64)  # (2, 2)

    def polylines(self, index: int) -> list[F64]:
        """The closed polylines of one sample, padding dropped."""
        return [
            self.polylines_padded[index, e, : int(self.n_vertices[index, e])]
            for e in range(int(self.n_polylines[index]))
        ]

    def sample_points(self, index: int, dense: bool = False) -> tuple[NDArray[Any], ...]:
        """(points (n, 2), sdf (n,), fields (n, F)) of one sample, padding dropped."""
        if dense:
            if self.dense_points is None or self.dense_sdf is None or self.dense_fields is None:
                raise GeometryDataError(f"{self.path}: no dense point set")
            assert self.n_dense is not None
            n = int(self.n_dense[index])
            return (
                self.dense_points[index, :n],
                self.dense_sdf[index, :n],
                self.dense_fields[index, :n],
            )
        n = int(self.n_points[index])
        return self.points[index, :n], self.sdf[index, :n], self.fields[index, :n]


def load_split(data_dir: str | Path, split: str) -> Split:
    """Read a finished split, checking that it is in this format."""
    path = split_path(data_dir, split)
    if not path.exists():
        partial = path.with_suffix(".h5.partial")
        hint = " (a .partial file is there: finish it with `generate`)" if partial.exists() else ""
        raise FileNotFoundError(f"{path} not found{hint}")
    return read(path)


def read(path: Path) -> Split:
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise GeometryDataError(
                f"{path} is not a {FORMAT} dataset (format attribute {f.attrs.get('format')!r})"
            )
        if int(f.attrs.get("format_version", 0)) > FORMAT_VERSION:
            raise GeometryDataError(
                f"{path} is format version {f.attrs['format_version']}; this code reads up to "
                f"{FORMAT_VERSION}"
            )
        schema = Schema.from_attrs(f.attrs, str(path))
        if not bool(np.all(f["done"][...])):
            raise GeometryDataError(f"{path}: some samples were never written")
        arrays = {k: f[k][...] for k in f if isinstance(f[k], h5py.Dataset) and k != "done"}
        extra = {k: f["extra"][k][...] for k in f.get("extra", {})}
        arrays["polylines_padded"] = arrays.pop("polylines")
        attrs = dict(f.attrs)
    for prefix, count in (("", "n_points"), ("dense_", "n_dense")):
        if count in arrays:
            for key in ("points", "sdf", "fields"):
                _edge_pad(arrays[f"{prefix}{key}"], arrays[count])
    return Split(path=path, schema=schema, attrs=attrs, extra=extra, **arrays)


def _edge_pad(values: NDArray[Any], counts: NDArray[np.integer]) -> None:
    """Padding rows (NaN on disk) repeat the sample's first point in memory, so batched
    predictions stay finite; every measure and every sampler still reads the counts."""
    for i, n in enumerate(np.asarray(counts)):
        values[i, int(n) :] = values[i, 0]


def splits_with_role(data_dir: str | Path, role: str) -> list[str]:
    """Names of the finished splits in a folder that have this role, sorted."""
    out = []
    for path in sorted(Path(data_dir).glob("*.h5")):
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") == FORMAT and f.attrs.get("role") == role:
                out.append(path.stem)
    return out


def write_split(
    data_dir: str | Path,
    split: str,
    role: str,
    schema: Schema,
    samples: Iterable[tuple[str, Sample]],
    n_samples: int,
    cap: Capacity,
    *,
    fingerprint: str,
    config: Mapping[str, Any] | None = None,
    command: str = "",
) -> Path:
    """Write a whole split from (name, sample) pairs, as importers do: any bad sample aborts it,
    naming the sample, and removes the partial file (an import is not resumed)."""
    writer = Writer(
        data_dir, split, role, schema, n_samples, cap,
        fingerprint=fingerprint, config=config, command=command,
    )  # fmt: skip
    try:
        count = 0
        for i, (name, sample) in enumerate(samples):
            writer.write(i, sample, where=name)
            count += 1
        if count != n_samples:
            raise GeometryDataError(f"{split}: {count} samples given, {n_samples} announced")
        return writer.finish()
    except BaseException:
        writer.close()
        writer.partial.unlink(missing_ok=True)
        raise
