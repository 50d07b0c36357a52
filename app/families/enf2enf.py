"""enf2enf (Catalani et al., 2025): steady fields around a geometry from a geometry encoder and a
decoder conditioned on global parameters.

    points, sdf = encoder_points(polylines, n_encoder, box, seed)   geometry.polylines
    latents     = encoder(points, sdf)                               (L, C) latent point cloud
    fields      = decoder(latents, conditions, query, signed_distance(query, polylines))

One class serves every task: airfoil flow (task airfoil-flow: conditions [aoa_deg, speed], NACA
sections, fields u, v, cp) and any other geometry model (task geometry-fields: the conditions,
fields and domain its manifest names, e.g. a hyperelastic unit cell with a void: [load] ->
von_mises, ux, uy). What differs lives in the domain (app/families/geometry_domain.py).

The latents depend on the geometry only, so they go through the factor cache (kind `encoder`)
keyed by the polylines: a second set of query points or other conditions on a known geometry
skip the encoder ("partial"). The polylines themselves are kept under their geometry id (kind
`geometry`), which is what `{"geometry_id": ...}` requests and `POST .../geometries` use.
The Open Inference Protocol models are `<name>.encoder`, `<name>.decoder` and `<name>` end to
end (encoder points and their SDF, conditions, query points and their SDF -> fields).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.bundle import Bundle
from app.errors import InvalidInputError, ManifestError, NotFoundError
from app.families.base import (
    CacheState,
    Cost,
    Inference,
    Notice,
    PredictContext,
    Prediction,
    Signature,
    refuse_non_finite,
)
from app.families.geometry_domain import (
    AIRFOIL_TASK,
    F64,
    GeometryDomain,
    geometry_id,
    refuse_points,
)
from app.manifest import Manifest
from app.runtime import Graph, run_blocking
from app.schemas import (
    FieldsRequest,
    FlowRequest,
    GeometryRef,
    GeometryRequest,
    NacaGeometry,
    PointsQuery,
    validate_body,
)
from geometry.polylines import encoder_points

log = logging.getLogger("fieldserve.enf2enf")

F32 = NDArray[np.float32]

ENCODER = "encoder"  # cache kind of the latents
GEOMETRY = "geometry"  # cache kind of the polylines, under their geometry id
# Decoder rows per session.run: bounds onnxruntime's activations for any number of points
# (each query attends over every latent). Measured on the shipped decoder, one thread: 16,384
# rows peaked at 951 MB resident, 4,096 at 286 MB, at the same 88-92 us a row.
DECODER_CHUNK = 4_096
_ENCODER_INPUTS = ("points", "sdf")
_DECODER_INPUTS = ("latents", "conditions", "points", "sdf")
# A decoder may also take the surface's curvature and outward normal at each query's nearest
# surface point (geometry.polylines.surface_features), as its fifth input.
SHAPE = "shape"
_DEFAULT_FIELDS = ("u", "v", "cp")


@dataclass(frozen=True)
class Geometry:
    id: str
    polylines: tuple[F64, ...]
    notices: tuple[Notice, ...]


class Enf2Enf:
    def __init__(
        self,
        encoder: Graph,
        decoder: Graph,
        domain: GeometryDomain,
        signature: Signature,
        field_names: tuple[str, ...],
        encoder_output_shape: tuple[int, ...] = (),
        task: str = AIRFOIL_TASK,
    ) -> None:
        self.task = task
        # An airfoil request names aoa_deg and speed in its schema; any other task takes the
        # conditions its manifest names, checked by the domain.
        self._request: type[FlowRequest] | type[FieldsRequest] = (
            FlowRequest if task == AIRFOIL_TASK else FieldsRequest
        )
        self.encoder = encoder
        self.encoder_output_shape = encoder_output_shape
        self.decoder = decoder
        self.domain = domain
        self._signature = signature
        self.field_names = field_names
        self.surface_shape = len(decoder.inputs) == len(_DECODER_INPUTS) + 1
        box = ",".join(f"{v!r}" for axis in domain.box for v in axis)
        # What the latents of a polyline set depend on besides the polylines.
        self._latent_salt = (
            f"{encoder.ident.sha256}:polylines:{domain.n_encoder}:{domain.encoder_seed}:{box}"
        )

    @classmethod
    def load(cls, manifest: Manifest, graphs: Mapping[str, Graph]) -> Enf2Enf:
        missing = {"encoder", "decoder"} - set(graphs)
        if missing:
            raise ManifestError(
                f"an enf2enf model needs graphs 'encoder' and 'decoder'; missing {sorted(missing)}"
            )
        domain = GeometryDomain.from_manifest(manifest.domain, manifest.task)
        enc, dec = manifest.graphs["encoder"], manifest.graphs["decoder"]
        enc_in = tuple(t.name for t in enc.inputs)
        dec_in = tuple(t.name for t in dec.inputs)
        known = (_DECODER_INPUTS, (*_DECODER_INPUTS, SHAPE))
        if enc_in != _ENCODER_INPUTS or dec_in not in known or len(dec.outputs) != 1:
            raise ManifestError(
                f"an enf2enf encoder takes {list(_ENCODER_INPUTS)} and its decoder "
                f"{list(_DECODER_INPUTS)} (and optionally '{SHAPE}') -> one output; the manifest "
                f"says {list(enc_in)} and "
                f"{list(dec_in)} -> {[t.name for t in dec.outputs]}"
            )
        m = domain.n_encoder
        if enc.inputs[0].shape != (m, 2) or enc.inputs[1].shape != (m,):
            raise ManifestError(
                f"encoder inputs {list(enc.inputs[0].shape)}, {list(enc.inputs[1].shape)} do not "
                f"fit domain.n_encoder = {m} (expected [{m}, 2] and [{m}])"
            )
        if len(enc.outputs) != 1 or enc.outputs[0].shape != dec.inputs[0].shape:
            raise ManifestError(
                f"encoder output {[list(t.shape) for t in enc.outputs]} is not the decoder's "
                f"latents {list(dec.inputs[0].shape)}"
            )
        n_conditions = len(domain.conditions)
        if dec.inputs[1].shape != (n_conditions,) or dec.inputs[2].shape[-1:] != (2,):
            raise ManifestError(
                f"decoder conditions must be [{n_conditions}] (domain.conditions "
                f"{list(domain.condition_names)}) and points [-1, 2]; the manifest says "
                f"{list(dec.inputs[1].shape)} and {list(dec.inputs[2].shape)}"
            )
        if len(dec.inputs) > len(_DECODER_INPUTS) and dec.inputs[4].shape != (-1, 3):
            raise ManifestError(
                f"decoder input '{SHAPE}' must be [-1, 3] (curvature, normal x, normal y); the "
                f"manifest says {list(dec.inputs[4].shape)}"
            )
        names = _field_names(manifest)
        if dec.outputs[0].shape[-1:] != (len(names),):
            raise ManifestError(
                f"decoder output {list(dec.outputs[0].shape)} does not have one column per field "
                f"{list(names)}"
            )
        signature = Signature(
            inputs=(
                enc.inputs[0].model_copy(update={"name": "encoder_points"}),
                enc.inputs[1].model_copy(update={"name": "encoder_sdf"}),
                *dec.inputs[1:],
            ),
            outputs=(dec.outputs[0],),
        )
        return cls(
            graphs["encoder"],
            graphs["decoder"],
            domain,
            signature,
            names,
            enc.outputs[0].shape,
            manifest.task,
        )

    @property
    def signature(self) -> Signature:
        return self._signature

    # -- domain routes -----------------------------------------------------------------------

    async def predict(self, payload: Any, ctx: PredictContext) -> Prediction:
        request = validate_body(self._request, payload)
        c = request.conditions
        values = c if isinstance(c, dict) else {"aoa_deg": c.aoa_deg, "speed": c.speed}
        conditions, notices = self.domain.condition_values(values)
        query = request.query
        max_points = ctx.limits.max_points
        if isinstance(query, PointsQuery):
            points = query.points
            if points.shape[1] != 2:
                raise InvalidInputError(
                    f"query.points: every point must have 2 coordinates [x, y], got "
                    f"{points.shape[1]}",
                    "query",
                )
            if len(points) > max_points:
                raise InvalidInputError(
                    f"query.points: {len(points)} points, more than the limit of {max_points}",
                    "query",
                )
            ctx.limits.check_answer(len(points) * len(self.field_names), 0, "query")
        else:
            n = query.grid.nx * query.grid.ny
            self.domain.grid_counts(query.grid.nx, query.grid.ny, max_points)
            # Each kept grid point also comes back with its coordinates and its index.
            ctx.limits.check_answer(n * len(self.field_names), 3 * n, "query")

        geometry = await self._geometry(request.geometry, ctx)
        notices += geometry.notices
        extra: dict[str, Any] = {}
        if isinstance(query, PointsQuery):
            placed = await run_blocking(
                self.domain.place,
                query.points,
                geometry.polylines,
                None,
                "query",
                self.surface_shape,
            )
            points, sdf, shape = placed.points, placed.sdf, placed.shape
            notices += placed.notices
        else:
            g = query.grid
            grid, sdf, shape = await run_blocking(
                self.domain.grid, g.nx, g.ny, g.bounds, geometry.polylines, self.surface_shape
            )
            points = grid.points
            notices += self.domain.check_points(points, sdf)
            extra["points"] = grid.points
            extra["grid"] = {
                "counts": grid.counts,
                "lo": grid.lo,
                "hi": grid.hi,
                "index": grid.index,
            }

        latents, reused = await self._latents(geometry, ctx)
        f32 = np.float32
        out = await run_blocking(
            self.decode,
            latents,
            conditions,
            points.astype(f32),
            sdf.astype(f32),
            None if shape is None else shape.astype(f32),
        )
        refuse_non_finite(out, "query", "the fields")
        fields = {
            "fields": {
                name: np.ascontiguousarray(out[:, k]) for k, name in enumerate(self.field_names)
            },
            "geometry_id": geometry.id,
            **extra,
        }
        return Prediction(fields, tuple(notices), "partial" if reused else "miss")

    async def encode_geometry(self, payload: Any, ctx: PredictContext) -> Prediction:
        request = validate_body(GeometryRequest, payload)
        geometry = await self._geometry(request.geometry, ctx)
        _, reused = await self._latents(geometry, ctx)
        cache: CacheState = "hit" if reused else "miss"
        return Prediction({"geometry_id": geometry.id}, geometry.notices, cache)

    # -- Open Inference Protocol -------------------------------------------------------------

    def cost(
        self, graph: str | None, inputs: Mapping[str, NDArray[Any]], ctx: PredictContext
    ) -> Cost:
        # The latents' shape is fixed by the manifest (checked on load); the fields grow with
        # the query points, decoded DECODER_CHUNK rows per run.
        latents = math.prod(max(d, 1) for d in self.encoder_output_shape)
        if graph == "encoder":
            return Cost({self.encoder.outputs[0]: latents}, 4 * latents)
        n = len(inputs[self.decoder.inputs[2]] if graph else inputs[self._signature.inputs[3].name])
        fields = n * len(self.field_names)
        name = self.decoder.outputs[0] if graph else self._signature.outputs[0].name
        return Cost({name: fields}, 4 * (latents + fields))

    async def infer(self, inputs: Mapping[str, NDArray[Any]], ctx: PredictContext) -> Inference:
        """encoder_points (M, 2), encoder_sdf (M,), conditions (C,), points (N, 2), sdf (N,)
        [, shape (N, 3)] -> fields (N, F); the same policy as the domain route."""
        enc_points, enc_sdf, cond, points, *per_point = (
            inputs[s.name] for s in self._signature.inputs
        )
        _same_rows(points, dict(zip(self.decoder.inputs[3:], per_point, strict=True)))
        sdf = per_point[0]
        conditions, notices = self.domain.condition_vector(cond, "inputs.conditions")
        refuse_points(
            sdf < 0.0,
            "point(s) have a negative signed distance (inside a body)",
            lambda i: f"points[{i}]",
            "inputs.sdf",
        )
        self.domain.refuse_outside(points.astype(np.float64), "inputs.points")
        notices += self.domain.check_points(
            points.astype(np.float64), sdf.astype(np.float64), "inputs.points"
        )
        latents, reused = await self._encoded(enc_points, enc_sdf, ctx)
        out = await run_blocking(self.decode, latents, conditions, points, *per_point)
        name = self._signature.outputs[0].name
        return Inference({name: out}, "partial" if reused else "miss", tuple(notices))

    async def infer_graph(
        self, graph: str, inputs: Mapping[str, NDArray[Any]], ctx: PredictContext
    ) -> Inference:
        if graph == "encoder":
            points, sdf = (inputs[n] for n in self.encoder.inputs)
            latents, reused = await self._encoded(points, sdf, ctx)
            return Inference({self.encoder.outputs[0]: latents}, "hit" if reused else "miss")
        latents, conditions, points, *per_point = (inputs[n] for n in self.decoder.inputs)
        _same_rows(points, dict(zip(self.decoder.inputs[3:], per_point, strict=True)))
        out = await run_blocking(self.decode, latents, conditions, points, *per_point)
        return Inference({self.decoder.outputs[0]: out})

    # -- geometries and latents (cached) ------------------------------------------------------

    async def _geometry(self, spec: Any, ctx: PredictContext) -> Geometry:
        if isinstance(spec, GeometryRef):
            bundle = await ctx.factors.recall(GEOMETRY, spec.geometry_id)
            found = self._stored(spec.geometry_id, bundle) if bundle is not None else None
            if found is None:
                down = "" if ctx.factors.up() else " (the cache is down right now)"
                raise NotFoundError(
                    f"geometry_id {spec.geometry_id} is unknown to {ctx.factors.model} version "
                    f"{ctx.factors.version} or has expired{down}; send the geometry itself (or "
                    "POST it to /geometries) again",
                    "geometry",
                )
            return found
        if isinstance(spec, NacaGeometry):
            polylines, notices = await run_blocking(self.domain.naca_geometry, spec.naca)
        else:
            polylines, notices = await run_blocking(self.domain.curve_geometry, spec.curves)
        geometry = Geometry(geometry_id(polylines), tuple(polylines), tuple(notices))
        # Kept under its id so the answer's geometry_id can be used on its own later; stored
        # again each time the geometry itself is sent, so its TTL starts over.
        value = Bundle(
            {"warnings": [asdict(n) for n in notices]},
            {f"element{i}": p for i, p in enumerate(polylines)},
        )
        await ctx.factors.store(GEOMETRY, geometry.id, value)
        return geometry

    def _stored(self, ident: str, bundle: Bundle) -> Geometry | None:
        """The geometry kept under ident, checked: a shared cache may hold anything."""
        try:
            polylines = tuple(
                np.asarray(bundle.arrays[f"element{i}"], dtype=np.float64)
                for i in range(len(bundle.arrays))
            )
            ok = 1 <= len(polylines) <= self.domain.max_elements and all(
                p.ndim == 2 and p.shape[1] == 2 and len(p) >= 4 for p in polylines
            )
            if not ok or geometry_id(polylines) != ident:
                raise ValueError("polylines do not match the id")
            notices = tuple(Notice(**w) for w in bundle.meta.get("warnings", ()))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("cached geometry %s is unusable (%r); treated as unknown", ident, exc)
            return None
        return Geometry(ident, polylines, notices)

    async def _latents(self, geometry: Geometry, ctx: PredictContext) -> tuple[F32, bool]:
        name = self.encoder.outputs[0]
        out, reused = await ctx.factors.get(
            ENCODER,
            self._latent_salt,
            geometry.polylines,
            lambda: {name: self.encode(geometry.polylines)},
        )
        refuse_non_finite(out[name], "geometry", "the geometry's encoding")
        return out[name], reused

    async def _encoded(self, points: F32, sdf: F32, ctx: PredictContext) -> tuple[F32, bool]:
        """Latents of the encoder's own inputs (the V2 models), through the factor cache."""
        name = self.encoder.outputs[0]
        feeds = dict(zip(self.encoder.inputs, (points, sdf), strict=True))
        out, reused = await ctx.factors.get(
            ENCODER,
            self.encoder.ident.sha256,
            [points, sdf],
            lambda: {name: self.encoder.run(feeds)[0]},
        )
        return out[name], reused

    # -- inference (blocking: runs in a worker thread) ---------------------------------------

    def encode(self, polylines: Sequence[F64]) -> F32:
        d = self.domain
        points, sdf = encoder_points(polylines, d.n_encoder, d.box, seed=d.encoder_seed)
        feeds = dict(
            zip(
                self.encoder.inputs,
                (points.astype(np.float32), sdf.astype(np.float32)),
                strict=True,
            )
        )
        out: F32 = self.encoder.run(feeds)[0]
        return out

    def decode(
        self, latents: F32, conditions: F32, points: F32, sdf: F32, shape: F32 | None = None
    ) -> F32:
        """(N, F) fields, DECODER_CHUNK rows per run (each row depends on its point alone)."""
        per_point = (points, sdf) + (() if shape is None else (shape,))

        def run(rows: slice, release: bool | None = None) -> F32:
            values = (latents, conditions, *(a[rows] for a in per_point))
            feeds = dict(zip(self.decoder.inputs, values, strict=True))
            out: F32 = self.decoder.run(feeds, release)[0]
            return out

        n = points.shape[0]
        if n <= DECODER_CHUNK:
            return run(slice(0, n))
        out = np.empty((n, len(self.field_names)), dtype=np.float32)
        for start in range(0, n, DECODER_CHUNK):
            rows = slice(start, start + DECODER_CHUNK)
            # The arena is reused from chunk to chunk and handed back after the last.
            out[rows] = run(rows, release=start + DECODER_CHUNK >= n)
        return out


def _same_rows(points: NDArray[Any], per_point: Mapping[str, NDArray[Any]]) -> None:
    """A 422 naming the first per-point input whose row count is not the points'."""
    for name, array in per_point.items():
        if array.shape[:1] != points.shape[:1]:
            raise InvalidInputError(
                f"input {name!r} has {array.shape[0]} rows but 'points' has {points.shape[0]}: "
                "one row per query point",
                f"inputs.{name}",
            )


def _field_names(manifest: Manifest) -> tuple[str, ...]:
    """The manifest's "fields" (["u", "v", "cp"]) when it has them."""
    declared = (manifest.model_extra or {}).get("fields")
    if (
        isinstance(declared, list)
        and declared
        and all(isinstance(n, str) and n for n in declared)
        and len(set(declared)) == len(declared)
    ):
        return tuple(declared)
    return _DEFAULT_FIELDS
