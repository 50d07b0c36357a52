"""Acoustic DeepONet (Borrel-Jensen et al., PNAS 2024): pressure from factored ONNX graphs.

    coefficients = branch(source)            (1, p+1), Pa
    basis        = trunk([x, y(, z), t])     (N, p+1)
    pressure[n]  = basis[n] . coefficients   (manifest "compose")

Each factor goes through the factor cache on its own: the branch output depends on the
source only, the trunk output on the space-time points only, so a moved source with the same
receivers reuses the trunk ("partial"). The same factors serve the domain route and the Open
Inference Protocol models (`<name>` end to end, `<name>.branch`, `<name>.trunk`), so they share
cache entries.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.errors import InvalidInputError, ManifestError, NotFoundError
from app.families.acoustic_domain import AcousticDomain, GridPoints
from app.families.base import (
    CacheState,
    Cost,
    Inference,
    Limits,
    Notice,
    PredictContext,
    Prediction,
    Signature,
    refuse_non_finite,
)
from app.families.impulse import ImpulseGrid
from app.manifest import Manifest, TensorSpec
from app.runtime import Graph, run_blocking
from app.schemas import AcousticRequest, ImpulseRequest, ReceiverGrid, TimeRange, validate_body

# Rows per session.run of either net: bounds the (rows, p+1) factor held at once and the arena
# onnxruntime keeps, while keeping each call long enough that the per-call overhead does not
# matter. Measured on 100k points: 8,192 rows ran the trunk 30% faster than 32,768 and grew
# onnxruntime's arena by 76 MB instead of 227 MB.
CHUNK_ROWS = 8_192
# Below this many multiply-adds the composition runs on the event loop (a thread hop costs more).
_INLINE_COMPOSE = 1 << 18

F32 = NDArray[np.float32]


class AcousticDeepONet:
    def __init__(
        self,
        branch: Graph,
        trunk: Graph,
        domain: AcousticDomain,
        signature: Signature,
        width: int,
        impulse: ImpulseGrid | None = None,
    ) -> None:
        self.branch = branch
        self.trunk = trunk
        self.domain = domain
        self._signature = signature
        self.width = width  # p + 1: columns of the basis and of the coefficients
        self.impulse = impulse  # None: the manifest has no time step or fmax, so no IR

    @classmethod
    def load(cls, manifest: Manifest, graphs: Mapping[str, Graph]) -> AcousticDeepONet:
        missing = {"branch", "trunk"} - set(graphs)
        if missing:
            raise ManifestError(
                f"a DeepONet needs graphs 'branch' and 'trunk'; missing {sorted(missing)}"
            )
        domain = AcousticDomain.from_manifest(manifest.domain)
        branch, trunk = manifest.graphs["branch"], manifest.graphs["trunk"]
        branch_in, trunk_in = branch.inputs[0].shape, trunk.inputs[0].shape
        if branch_in[-1:] != (domain.dim,) or trunk_in[-1:] != (domain.dim + 1,):
            raise ManifestError(
                f"graph inputs do not fit a {domain.dim}-D domain: branch {list(branch_in)}, "
                f"trunk {list(trunk_in)} (expected [-1, {domain.dim}] and [-1, {domain.dim + 1}])"
            )
        width = branch.outputs[0].shape[-1]
        one_input = len(branch.inputs) == 1 and len(trunk.inputs) == 1
        if not one_input or width < 1 or trunk.outputs[0].shape[-1] != width:
            raise ManifestError(
                "a DeepONet's branch and trunk take one input each and give outputs of one fixed "
                f"width; the manifest says branch -> {list(branch.outputs[0].shape)}, "
                f"trunk -> {list(trunk.outputs[0].shape)}"
            )
        signature = Signature(
            inputs=(branch.inputs[0], trunk.inputs[0]), outputs=(_pressure_spec(manifest),)
        )
        impulse = ImpulseGrid.from_domain(manifest.domain)
        return cls(graphs["branch"], graphs["trunk"], domain, signature, width, impulse)

    @property
    def signature(self) -> Signature:
        return self._signature

    async def predict(self, payload: Any, ctx: PredictContext) -> Prediction:
        limits = ctx.limits
        request = validate_body(AcousticRequest, payload)
        source = self._position(request.source, "source")
        notices: list[Notice] = self.domain.check_source(source)
        grid, receivers = self._receivers(request.receivers, limits)
        times = self._times(request.times, limits)
        n_points = receivers.shape[0] * times.size
        if n_points > limits.max_points:
            raise InvalidInputError(
                f"{receivers.shape[0]} receivers x {times.size} times = {n_points} space-time "
                f"points, more than the limit of {limits.max_points}; ask in several requests",
                "receivers",
            )
        notices += self.domain.check_times(times)
        n_rec = receivers.shape[0]
        gridded = n_rec * (self.domain.dim + 1) if grid is not None else 0  # points, index
        limits.check_answer(n_points, gridded + times.size, _larger(n_rec, times.size))

        points = space_time_points(receivers, times)
        pressure, cache = await self._field(source[None, :].astype(np.float32), points, ctx)
        # Source and receivers are inside the room: only the times can drive the trunk off.
        refuse_non_finite(pressure, "times", "the field")
        fields: dict[str, Any] = {
            "pressure": pressure[0].reshape(receivers.shape[0], times.size),
            "times": times,
        }
        if grid is not None:
            fields["receivers"] = grid.points
            fields["grid"] = {
                "counts": grid.counts,
                "lo": grid.lo,
                "hi": grid.hi,
                "index": grid.index,
            }
        return Prediction(fields, tuple(notices), cache)

    async def impulse_response(self, payload: Any, ctx: PredictContext) -> Prediction:
        """The pressure at the listener at the model's own times, the same points (and cache
        entries) as a /predict with that receiver and those times, and its 48 kHz resampling."""
        if self.impulse is None:
            raise NotFoundError(
                "this model's manifest records no trained_time_step or fmax in its domain: it "
                "answers no impulse responses (export it again)",
                "model",
            )
        request = validate_body(ImpulseRequest, payload)
        source = self._position(request.source, "source")
        listener = self._position(request.listener, "listener")
        notices = self.domain.check_source(source)
        self.domain.check_listener(listener)
        times = self.impulse.times
        if times.size > ctx.limits.max_points:
            raise InvalidInputError(
                f"this model's impulse response takes {times.size} space-time points, more "
                f"than the limit of {ctx.limits.max_points}",
                "listener",
            )
        points = space_time_points(listener[None, :], times)
        pressure, cache = await self._field(source[None, :].astype(np.float32), points, ctx)
        return Prediction(self.impulse.fields(pressure[0]), tuple(notices), cache)

    def cost(
        self, graph: str | None, inputs: Mapping[str, NDArray[Any]], ctx: PredictContext
    ) -> Cost:
        w = self.width
        if graph == "branch":
            b = len(inputs[self.branch.inputs[0]])
            return Cost({self.branch.outputs[0]: b * w}, 4 * b * w)
        if graph is not None:
            n = len(inputs[self.trunk.inputs[0]])
            return Cost({self.trunk.outputs[0]: n * w}, 4 * n * w)
        source_spec, points_spec = self._signature.inputs
        b, n = len(inputs[source_spec.name]), len(inputs[points_spec.name])
        # The basis is held whole only when it would be cached; else streamed chunk by chunk.
        basis = n * w if ctx.factors.fits(4 * n * w) else min(n, CHUNK_ROWS) * w
        return Cost({self._signature.outputs[0].name: b * n}, 4 * (b * w + basis + b * n))

    async def infer(self, inputs: Mapping[str, NDArray[Any]], ctx: PredictContext) -> Inference:
        """sources (B, dim) and space-time points (N, dim + 1) -> pressure (B, N)."""
        source_spec, points_spec = self._signature.inputs
        sources, points = inputs[source_spec.name], inputs[points_spec.name]
        n_out = sources.shape[0] * points.shape[0]
        if n_out > ctx.limits.max_points:
            raise InvalidInputError(
                f"{sources.shape[0]} sources x {points.shape[0]} points = {n_out} values, more "
                f"than the limit of {ctx.limits.max_points}",
                points_spec.name,
            )
        dim = self.domain.dim
        notices = self.domain.check_sources(sources.astype(np.float64), source_spec.name)
        self.domain.check_receivers(points[:, :dim].astype(np.float64), points_spec.name)
        notices += self.domain.check_times(points[:, dim].astype(np.float64), points_spec.name)
        pressure, cache = await self._field(sources, points, ctx)
        return Inference({self._signature.outputs[0].name: pressure}, cache, tuple(notices))

    async def infer_graph(
        self, graph: str, inputs: Mapping[str, NDArray[Any]], ctx: PredictContext
    ) -> Inference:
        if graph == "branch":
            coefficients, reused = await self._coefficients(inputs[self.branch.inputs[0]], ctx)
            return Inference({self.branch.outputs[0]: coefficients}, "hit" if reused else "miss")
        points = inputs[self.trunk.inputs[0]]
        name = self.trunk.outputs[0]
        if not ctx.factors.fits(points.shape[0] * self.width * 4):
            return Inference({name: await run_blocking(self.basis, points)})
        basis, reused = await self._basis(points, ctx)
        return Inference({name: basis}, "hit" if reused else "miss")

    # -- request -> arrays ------------------------------------------------------------------

    def _position(self, values: list[float], field: str) -> NDArray[np.float64]:
        if len(values) != self.domain.dim:
            raise InvalidInputError(
                f"{field} must have {self.domain.dim} coordinates, got {len(values)}", field
            )
        return np.asarray(values, dtype=np.float64)

    def _receivers(
        self, receivers: ReceiverGrid | NDArray[np.float64], limits: Limits
    ) -> tuple[GridPoints | None, NDArray[np.float64]]:
        dim = self.domain.dim
        if isinstance(receivers, ReceiverGrid):
            g = receivers.grid
            if (g.nz is not None) != (dim == 3):
                raise InvalidInputError(
                    f"a {dim}-D model's grid takes "
                    f"{'nx, ny and nz' if dim == 3 else 'nx and ny only'}",
                    "receivers",
                )
            counts = (g.nx, g.ny) if g.nz is None else (g.nx, g.ny, g.nz)
            total = math.prod(counts)
            # Checked before the grid is built: a huge nx must cost nothing.
            if total > limits.max_points:
                raise InvalidInputError(
                    f"a grid of {total} receivers is more than the limit of "
                    f"{limits.max_points} points",
                    "receivers",
                )
            grid = self.domain.grid(counts)
            if grid.points.shape[0] == 0:
                raise InvalidInputError(
                    "no point of this grid lies in the air; use a finer grid", "receivers"
                )
            return grid, grid.points
        if receivers.shape[1] != dim:
            raise InvalidInputError(
                f"every receiver must have {dim} coordinates, got {receivers.shape[1]}", "receivers"
            )
        self.domain.check_receivers(receivers)
        return None, receivers

    def _times(self, times: TimeRange | NDArray[np.float64], limits: Limits) -> NDArray[np.float64]:
        if isinstance(times, TimeRange):
            if times.stop < times.start:
                raise InvalidInputError(
                    f"times.stop ({times.stop}) is before times.start ({times.start})", "times"
                )
            if times.num > limits.max_points:
                raise InvalidInputError(
                    f"times.num = {times.num} is more than the limit of {limits.max_points} points",
                    "times",
                )
            with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                times = np.linspace(times.start, times.stop, times.num)
        elif times.size > limits.max_points:
            raise InvalidInputError(
                f"{times.size} times are more than the limit of {limits.max_points} points", "times"
            )
        # Finite in float64 yet not in the graphs' float32 (or a range too wide to step
        # through): the answer would be NaN, so refuse rather than warn.
        with np.errstate(over="ignore"):
            representable = np.isfinite(times.astype(np.float32)).all()
        if not representable:
            raise InvalidInputError("times must lie within the float32 range", "times")
        return times

    # -- factors (cached) and their composition ----------------------------------------------

    async def _coefficients(self, sources: F32, ctx: PredictContext) -> tuple[F32, bool]:
        name = self.branch.outputs[0]
        out, reused = await ctx.factors.get(
            "branch",
            self.branch.ident.sha256,
            [sources],
            lambda: {name: self.coefficients(sources)},
        )
        return out[name], reused

    async def _basis(self, points: F32, ctx: PredictContext) -> tuple[F32, bool]:
        out, reused = await ctx.factors.get(
            "trunk", self.trunk.ident.sha256, [points], lambda: {"basis": self.basis(points)}
        )
        return out["basis"], reused

    async def _field(
        self, sources: F32, points: F32, ctx: PredictContext
    ) -> tuple[F32, CacheState]:
        """(B, N) pressure, Pa, and whether a factor was reused."""
        if not ctx.factors.fits(points.shape[0] * self.width * 4):
            # A basis too big to cache is never held whole: streamed through the trunk.
            coefficients, branch_reused = await self._coefficients(sources, ctx)
            pressure = await run_blocking(self.streamed, coefficients, points)
            return pressure, "partial" if branch_reused else "miss"
        # Both factors at once: their cache lookups and graph runs overlap (two worker threads).
        (coefficients, branch_reused), (basis, trunk_reused) = await asyncio.gather(
            self._coefficients(sources, ctx), self._basis(points, ctx)
        )
        if basis.size * len(coefficients) <= _INLINE_COMPOSE:
            pressure = compose(basis, coefficients)
        else:
            pressure = await run_blocking(compose, basis, coefficients)
        return pressure, "partial" if branch_reused or trunk_reused else "miss"

    # -- inference (blocking: runs in a worker thread) ---------------------------------------

    def basis(self, points: F32) -> F32:
        """Trunk factor (N, p+1)."""
        return _chunked(self.trunk, points, self.width)

    def coefficients(self, sources: F32) -> F32:
        """Branch factor (B, p+1)."""
        return _chunked(self.branch, sources, self.width)

    def streamed(self, coefficients: F32, points: F32) -> F32:
        """(B, N) pressure without ever holding the whole basis."""
        out = np.empty((len(coefficients), points.shape[0]), dtype=np.float32)
        for rows, last in chunks(points.shape[0]):
            basis = self.trunk.run_one(points[rows], release=last)
            out[:, rows] = compose(basis, coefficients)
        return out


def _larger(n_receivers: int, n_times: int) -> str:
    """The request field that makes an answer big."""
    return "receivers" if n_receivers >= n_times else "times"


def chunks(n: int) -> Iterator[tuple[slice, bool]]:
    """(rows, is the last) in runs of CHUNK_ROWS: onnxruntime's arena grows to the largest
    run's activations and keeps them until released (each row depends on itself alone, so
    chunking changes no value)."""
    for start in range(0, n, CHUNK_ROWS):
        yield slice(start, start + CHUNK_ROWS), start + CHUNK_ROWS >= n


def _chunked(graph: Graph, rows: F32, width: int) -> F32:
    """(len(rows), width), CHUNK_ROWS rows per run."""
    if rows.shape[0] <= CHUNK_ROWS:
        return graph.run_one(rows)
    out = np.empty((rows.shape[0], width), dtype=np.float32)
    for part, last in chunks(rows.shape[0]):
        out[part] = graph.run_one(rows[part], release=last)
    return out


def compose(basis: F32, coefficients: F32) -> F32:
    """pressure[b, n] = basis[n] . coefficients[b]: one matrix-vector product per source, so a
    row's value does not depend on how many sources or points came with it."""
    out = np.empty((len(coefficients), basis.shape[0]), dtype=np.float32)
    for b, c in enumerate(coefficients):
        out[b] = basis @ c
    return out


def space_time_points(receivers: NDArray[np.float64], times: NDArray[np.float64]) -> F32:
    """Receiver-major rows [x, y(, z), t], so a (receivers, times) field is a reshape away."""
    n_rec, n_t, dim = receivers.shape[0], times.size, receivers.shape[1]
    points = np.empty((n_rec, n_t, dim + 1), dtype=np.float32)
    points[..., :dim] = receivers[:, None, :]
    points[..., dim] = times[None, :]
    return points.reshape(-1, dim + 1)


def _pressure_spec(manifest: Manifest) -> TensorSpec:
    """The manifest's end-to-end output ("outputs": [{"name": "pressure", ...}]) if it has one."""
    extra = manifest.model_extra or {}
    declared = extra.get("outputs")
    if isinstance(declared, list) and declared and isinstance(declared[0], dict):
        try:
            return TensorSpec.model_validate(declared[0])
        except ValueError:
            pass
    return TensorSpec(name="pressure", dtype="float32", shape=(-1, -1))
