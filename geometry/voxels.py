"""VoxelScene: a room as a voxel mask with a material on every wall face.

Made from a triangle mesh by `training.acoustics.meshes` (trimesh lives there, not here) and
rebuilt from its spec with numpy alone, so the service checks points against a mesh room
without trimesh. It follows the same protocol as `geometry.scenes.Scene`.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geometry.rooms import Box, Room
from geometry.scenes import (
    _MASK_ENCODING,
    _cell_boxes,
    _check_keys,
    _check_region,
    _fail,
    _get,
    _materials,
    _region,
    _region_spec,
    _vector,
)


def encode_mask(mask: NDArray[np.bool_]) -> str:
    return base64.b64encode(zlib.compress(np.packbits(mask.ravel()).tobytes(), 9)).decode()


def decode_mask(text: str, shape: tuple[int, ...], key: str) -> NDArray[np.bool_]:
    try:
        raw = zlib.decompress(base64.b64decode(text.encode(), validate=True))
    except (ValueError, zlib.error) as exc:
        raise _fail(key, f"is not {_MASK_ENCODING} data: {exc}") from None
    n = int(np.prod(shape))
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if len(bits) < n or len(bits) - n >= 8:
        raise _fail(key, f"holds {len(raw)} bytes, not the {(n + 7) // 8} of a {shape} grid")
    return bits[:n].astype(bool).reshape(shape)


def _encode_labels(labels: NDArray[np.uint8]) -> str:
    return base64.b64encode(zlib.compress(labels.tobytes(), 9)).decode()


def _decode_labels(text: str, shape: tuple[int, ...], key: str) -> NDArray[np.uint8]:
    try:
        raw = zlib.decompress(base64.b64decode(text.encode(), validate=True))
    except (ValueError, zlib.error) as exc:
        raise _fail(key, f"is not zlib+base64 data: {exc}") from None
    if len(raw) != int(np.prod(shape)):
        raise _fail(key, f"holds {len(raw)} labels, not the {int(np.prod(shape))} of {shape}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()


def wall_faces(air: NDArray[np.bool_], axis: int) -> NDArray[np.bool_]:
    """Faces normal to `axis` between an air cell and a solid or outside one: shape of `air`
    with one more along `axis` (face k lies between cells k - 1 and k)."""
    pad = [(0, 0)] * air.ndim
    pad[axis] = (1, 1)
    padded = np.pad(air, pad, constant_values=False)
    n = padded.shape[axis]
    lo = np.take(padded, np.arange(n - 1), axis=axis)
    hi = np.take(padded, np.arange(1, n), axis=axis)
    out: NDArray[np.bool_] = lo != hi
    return out


@dataclass(frozen=True, eq=False)
class VoxelScene:
    """Air = the cells of `air_mask` (cell-centred grid over [0, size]), closed solids elsewhere.

    `face_labels[a]` holds, for every face normal to axis a (see `wall_faces`), 0 where it is
    no wall and k where it is a wall of material `face_materials[k - 1]`. `origin` is where
    this scene's 0 lies in the mesh's own coordinates.
    """

    name: str
    size: tuple[float, ...]
    air_mask: NDArray[np.bool_]
    materials: Mapping[str, float]
    face_materials: tuple[str, ...]
    face_labels: tuple[NDArray[np.uint8], ...]
    fmax: float | None = None
    source_region: Box | None = None
    wall_margin: float | None = None
    origin: tuple[float, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.size) not in (2, 3) or self.air_mask.ndim != len(self.size):
            raise _fail("counts", f"a {list(self.size)} scene needs a mask of that dimension")
        if any(s <= 0 for s in self.size):
            raise _fail("size", f"must be positive, got {list(self.size)}")
        if not self.air_mask.any():
            raise _fail("air", f"the scene has no air cell on its {self.counts} grid")
        _materials(self.materials)
        for i, m in enumerate(self.face_materials):
            if m not in self.materials:
                raise _fail(f"face_materials[{i}]", f"{m!r} is not in materials")
        if len(self.face_labels) != self.dim:
            raise _fail("faces", f"needs one label array per axis, got {len(self.face_labels)}")
        for a, labels in enumerate(self.face_labels):
            expect = tuple(n + (b == a) for b, n in enumerate(self.counts))
            if labels.shape != expect:
                raise _fail(f"faces[{a}]", f"has shape {labels.shape}, expected {expect}")
            if int(labels.max(initial=0)) > len(self.face_materials):
                raise _fail(f"faces[{a}]", "labels a material beyond face_materials")
            if (labels[wall_faces(self.air_mask, a)] == 0).any():
                raise _fail(f"faces[{a}]", "leaves a wall face without a material")
        _check_region(self, self.source_region, self.wall_margin, self.fmax)

    @property
    def dim(self) -> int:
        return len(self.size)

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.air_mask.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(s / n for s, n in zip(self.size, self.counts, strict=True))

    @property
    def bounds(self) -> Box:
        return Box((0.0,) * self.dim, tuple(self.size))

    def grid_planes(self) -> tuple[NDArray[np.float64], ...]:
        """Every voxel face plane per axis: a solver aligning its grid to them runs on this
        grid or a multiple of it, where the mask and the face labels are exact. Voxelise at
        the solver's dx: a mask much finer than dx has no aligned grid near dx."""
        return tuple(
            np.arange(n + 1, dtype=np.float64) * (s / n)
            for s, n in zip(self.size, self.counts, strict=True)
        )

    @cached_property
    def room(self) -> Room:
        """The solid cells merged into boxes, for an exact distance to the voxelised walls."""
        return Room(
            size=tuple(self.size),
            solids=_cell_boxes(~self.air_mask, self.grid_planes()),
            name=self.name,
        )

    def is_air(self, points: ArrayLike) -> NDArray[np.bool_]:
        """True where every cell whose closed box holds the point is air: a point on a wall
        face, like one on a Room's wall, is not in the air. Cost: 2^dim lookups a point."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape[-1] != self.dim:
            raise ValueError(f"points must have {self.dim} coordinates, got shape {pts.shape}")
        flat = pts.reshape(-1, self.dim)
        u = flat / np.asarray(self.spacing)  # in cells
        # A point within round-off of a face plane is on it (0.6 / 0.05 is 11.999...): it
        # touches the cells on both sides, like a point on a Room's wall.
        nearest = np.rint(u)
        on_face = np.abs(u - nearest) < 1e-9 * np.maximum(1.0, np.abs(u))
        hi = np.where(on_face, nearest, np.floor(u)).astype(np.int64)
        lo = np.where(on_face, nearest - 1, hi).astype(np.int64)
        counts = np.asarray(self.counts)
        ok = np.all((lo >= 0) & (hi < counts) & np.isfinite(u), axis=1)
        hi, lo = np.clip(hi, 0, counts - 1), np.clip(lo, 0, counts - 1)
        for corner in np.ndindex(*([2] * self.dim)):
            idx = tuple(np.where(c, hi[:, a], lo[:, a]) for a, c in enumerate(corner))
            ok &= self.air_mask[idx]
        return ok.reshape(pts.shape[:-1])

    def wall_distance(self, points: ArrayLike) -> NDArray[np.float64]:
        return self.room.wall_distance(points)

    def wall_taper(self, points: ArrayLike, width: float) -> NDArray[np.float64]:
        return self.room.wall_taper(points, width)

    def air_volume(self) -> float:
        return float(self.air_mask.sum() * np.prod(self.spacing))

    def describe(self, point: ArrayLike) -> str:
        p = np.asarray(point, dtype=np.float64).reshape(self.dim)
        return "inside a wall" if bool(self.bounds.contains(p)) else "outside the room"

    def surface_absorption(self, points: ArrayLike, axis: int, side: int) -> NDArray[np.float64]:
        """Absorption of wall faces centred at `points`, normal along `axis` (see Scene).

        On this scene's own grid each point is a labelled face. On another grid (the solver
        chose a refinement) a point may fall between labelled faces: it takes the nearest
        labelled face of the same row along `axis` on the solid's side, else on either side.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, self.dim)
        if axis not in range(self.dim) or side not in (-1, 1):
            raise ValueError(f"axis must be in 0..{self.dim - 1} and side +-1, got {axis}, {side}")
        h = np.asarray(self.spacing)
        labels = self.face_labels[axis]
        idx = np.clip(np.floor(pts / h).astype(np.int64), 0, np.asarray(self.counts) - 1)
        idx[:, axis] = np.clip(np.rint(pts[:, axis] / h[axis]), 0, labels.shape[axis] - 1)
        found = labels[tuple(idx.T)].astype(np.int64)
        for i in np.flatnonzero(found == 0):
            found[i] = self._nearest_label(idx[i], axis, side)
        alphas = np.asarray(
            [0.0, *(self.materials[m] for m in self.face_materials)], dtype=np.float64
        )
        return alphas[found]

    def _nearest_label(self, index: NDArray[np.int64], axis: int, side: int) -> int:
        row_index = tuple(slice(None) if a == axis else int(i) for a, i in enumerate(index))
        row = self.face_labels[axis][row_index]
        k = int(index[axis])
        ahead = np.flatnonzero(row[k:] if side > 0 else row[: k + 1][::-1])
        if ahead.size:
            return int(row[k + ahead[0]] if side > 0 else row[k - ahead[0]])
        labelled = np.flatnonzero(row)
        if labelled.size:
            return int(row[labelled[np.argmin(np.abs(labelled - k))]])
        # A row with no wall at all holds no air either; name the commonest material.
        every = np.concatenate([lab[lab > 0] for lab in self.face_labels])
        return int(np.bincount(every).argmax()) if every.size else 1

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "kind": "voxels",
            "name": self.name,
            "size": list(self.size),
            "counts": list(self.counts),
            "encoding": _MASK_ENCODING,
            "air": encode_mask(self.air_mask),
            "materials": dict(self.materials),
            "face_materials": list(self.face_materials),
            "faces": [_encode_labels(lab) for lab in self.face_labels],
            **_region_spec(self.source_region, self.wall_margin, self.fmax),
        }
        if self.origin:
            spec["origin"] = list(self.origin)
        if self.source:
            spec["source"] = self.source
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> VoxelScene:
        _check_keys(
            spec,
            {
                "kind",
                "name",
                "size",
                "counts",
                "encoding",
                "air",
                "materials",
                "face_materials",
                "faces",
                "fmax",
                "source_region",
                "wall_margin",
                "origin",
                "source",
            },
            "",
        )
        if spec.get("kind") != "voxels":
            raise _fail("kind", f"expected 'voxels', got {spec.get('kind')!r}")
        if spec.get("encoding", _MASK_ENCODING) != _MASK_ENCODING:
            raise _fail("encoding", f"must be {_MASK_ENCODING!r}, got {spec['encoding']!r}")
        size = _vector(_get(spec, "size"), "size")
        dim = len(size)
        counts_f = _vector(_get(spec, "counts"), "counts", dim)
        if any(c < 1 or c != int(c) for c in counts_f):
            raise _fail("counts", f"must be positive integers, got {list(counts_f)}")
        counts = tuple(int(c) for c in counts_f)
        air = _get(spec, "air")
        if not isinstance(air, str):
            raise _fail("air", "must be a string of packed bits")
        faces = _get(spec, "faces")
        if not isinstance(faces, Sequence) or len(faces) != dim:
            raise _fail("faces", f"must be a list of {dim} strings, one per axis")
        labels = tuple(
            _decode_labels(
                str(text), tuple(n + (b == a) for b, n in enumerate(counts)), f"faces[{a}]"
            )
            for a, text in enumerate(faces)
        )
        face_materials = _get(spec, "face_materials")
        if not isinstance(face_materials, Sequence) or isinstance(face_materials, str):
            raise _fail("face_materials", "must be a list of material names")
        region, margin, fmax = _region(spec, dim)
        return cls(
            name=str(spec.get("name", "scene")),
            size=size,
            air_mask=decode_mask(air, counts, "air"),
            materials=_materials(_get(spec, "materials")),
            face_materials=tuple(str(m) for m in face_materials),
            face_labels=labels,
            fmax=fmax,
            source_region=region,
            wall_margin=margin,
            origin=_vector(spec["origin"], "origin", dim) if "origin" in spec else (),
            source=str(spec.get("source", "")),
        )
