"""Acoustic DeepONet (Borrel-Jensen et al., PNAS 2024): pressure from factored ONNX graphs.

    coefficients = branch(source)            (1, p+1), Pa
    basis        = trunk([x, y(, z), t])     (N, p+1)
    pressure[n]  = basis[n] . coefficients   (manifest "compose")

The two factors are separate steps (`coefficients`, `pressure`) so that a cache can sit on
either: the branch output depends on the source only, the trunk output on the space-time
points only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.errors import InvalidInputError, ManifestError
from app.families.acoustic_domain import AcousticDomain, GridPoints
from app.families.base import Limits, Notice, Prediction
from app.manifest import Manifest
from app.runtime import Graph, run_blocking
from app.schemas import AcousticRequest, ReceiverGrid, TimeRange, validate_body

# Trunk rows per session.run: bounds the (rows, p+1) basis held at once (~8 MiB for p=64)
# while keeping each call long enough that the per-call overhead does not matter.
TRUNK_CHUNK = 32_768


class AcousticDeepONet:
    def __init__(self, branch: Graph, trunk: Graph, domain: AcousticDomain) -> None:
        self.branch = branch
        self.trunk = trunk
        self.domain = domain

    @classmethod
    def load(cls, manifest: Manifest, graphs: Mapping[str, Graph]) -> AcousticDeepONet:
        missing = {"branch", "trunk"} - set(graphs)
        if missing:
            raise ManifestError(
                f"a DeepONet needs graphs 'branch' and 'trunk'; missing {sorted(missing)}"
            )
        domain = AcousticDomain.from_manifest(manifest.domain)
        branch_in = manifest.graphs["branch"].inputs[0].shape
        trunk_in = manifest.graphs["trunk"].inputs[0].shape
        if branch_in[-1:] != (domain.dim,) or trunk_in[-1:] != (domain.dim + 1,):
            raise ManifestError(
                f"graph inputs do not fit a {domain.dim}-D domain: branch {list(branch_in)}, "
                f"trunk {list(trunk_in)} (expected [-1, {domain.dim}] and [-1, {domain.dim + 1}])"
            )
        return cls(graphs["branch"], graphs["trunk"], domain)

    async def predict(self, payload: Any, limits: Limits) -> Prediction:
        request = validate_body(AcousticRequest, payload)
        source = self._source(request.source)
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

        pressure = await run_blocking(self.field, source, receivers, times)
        fields: dict[str, Any] = {"pressure": pressure, "times": times}
        if grid is not None:
            fields["receivers"] = grid.points
            fields["grid"] = {
                "counts": grid.counts,
                "lo": grid.lo,
                "hi": grid.hi,
                "index": grid.index,
            }
        return Prediction(fields, tuple(notices))

    # -- request -> arrays ------------------------------------------------------------------

    def _source(self, source: list[float]) -> NDArray[np.float64]:
        if len(source) != self.domain.dim:
            raise InvalidInputError(
                f"source must have {self.domain.dim} coordinates, got {len(source)}",
                "source",
            )
        return np.asarray(source, dtype=np.float64)

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

    # -- inference (blocking: runs in a worker thread) ---------------------------------------

    def coefficients(self, source: NDArray[np.float64]) -> NDArray[np.float32]:
        """Branch factor for one source: (p+1,), Pa."""
        return self.branch.run_one(source[None, :].astype(np.float32))[0]

    def pressure(
        self,
        coefficients: NDArray[np.float32],
        receivers: NDArray[np.float64],
        times: NDArray[np.float64],
    ) -> NDArray[np.float32]:
        """(receivers, times) pressure, Pa, with the trunk evaluated chunk by chunk."""
        n_rec, n_t, dim = receivers.shape[0], times.size, self.domain.dim
        # Receiver-major rows so the result reshapes straight to (receivers, times).
        points = np.empty((n_rec, n_t, dim + 1), dtype=np.float32)
        points[..., :dim] = receivers[:, None, :]
        points[..., dim] = times[None, :]
        flat = points.reshape(-1, dim + 1)
        out = np.empty(flat.shape[0], dtype=np.float32)
        for start in range(0, flat.shape[0], TRUNK_CHUNK):
            rows = slice(start, start + TRUNK_CHUNK)
            out[rows] = self.trunk.run_one(flat[rows]) @ coefficients
        return out.reshape(n_rec, n_t)

    def field(
        self,
        source: NDArray[np.float64],
        receivers: NDArray[np.float64],
        times: NDArray[np.float64],
    ) -> NDArray[np.float32]:
        return self.pressure(self.coefficients(source), receivers, times)
