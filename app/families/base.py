"""What a model family supplies to the service: a loader and a predictor.

The predict routes know nothing about acoustics or airfoils: they look up the version, hand
the decoded body to its predictor and serialise what comes back. A new family is a module
with a `load(manifest, graphs) -> Predictor` registered in app/families/__init__.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from app.bundle import Bundle
from app.errors import InvalidInputError
from app.manifest import Manifest, TensorSpec
from app.runtime import Graph

# hit: the whole answer came from the cache (or from an identical request in flight);
# partial: at least one factor was reused and the rest computed; miss: all computed.
CacheState = Literal["hit", "partial", "miss"]


# Bytes a value takes as JSON text: at most 16 for a float32 ("-3.4028235e+38,"); 24 for the
# float64 coordinates and times an answer echoes (about 20 written, an index fewer).
JSON_FLOAT32_BYTES = 16
JSON_FLOAT64_BYTES = 24


@dataclass(frozen=True)
class Limits:
    """Per-request limits from the settings, passed in so predictors stay settings-free."""

    max_points: int
    max_response_bytes: int = 64 * 1024 * 1024
    max_work_bytes: int = 256 * 1024 * 1024
    binary: bool = False  # the answer goes out as raw arrays (else JSON text)

    def check_answer(self, float32: int, float64: int, field: str) -> None:
        """422 naming `field`, before anything is computed, when an answer of this many values
        would pass max_response_bytes as it will be sent (raw arrays, or JSON text)."""
        size = (
            4 * float32 + 8 * float64
            if self.binary
            else JSON_FLOAT32_BYTES * float32 + JSON_FLOAT64_BYTES * float64
        )
        if size > self.max_response_bytes:
            raise InvalidInputError(
                f"the answer would take up to {size / 1e6:.1f} MB "
                f"({'binary' if self.binary else 'JSON'}), more than the limit of "
                f"{self.max_response_bytes / 1e6:.1f} MB (FIELDSERVE_MAX_RESPONSE_BYTES); "
                "ask for fewer points"
                + ("" if self.binary else " or for the binary answer (Accept, see README)"),
                field,
            )


@dataclass(frozen=True)
class Cost:
    """What a tensor-level call will hold, known from its input shapes before any graph runs:
    the elements of each output, and the bytes of every array held at once (factors, outputs;
    not the inputs, which the body limit bounds)."""

    values: Mapping[str, int]
    work_bytes: int


Arrays = Mapping[str, NDArray[Any]]


class Factors(Protocol):
    """The factor cache as a family sees it, bound to one model version (app.cache.factors
    implements it; the families do not import the cache, the cache does not know them)."""

    model: str
    version: str

    def fits(self, nbytes: int) -> bool:
        """Whether a factor of this size would be stored (else compute it the cheap way)."""
        ...

    def up(self) -> bool:
        """Whether the shared store answers (a remembered geometry may live only there)."""
        ...

    async def get(
        self,
        kind: str,
        graph_sha256: str,
        inputs: Sequence[NDArray[Any]],
        compute: Callable[[], Arrays],
    ) -> tuple[Arrays, bool]:
        """The factor `kind` of these graph inputs, cached or computed: (arrays, reused)."""
        ...

    async def recall(self, kind: str, ident: str) -> Bundle | None:
        """The entry stored under a known digest, or None: nothing computed."""
        ...

    async def store(self, kind: str, ident: str, value: Bundle) -> None:
        """Store `value` under a known digest."""
        ...


@dataclass(frozen=True)
class PredictContext:
    """What a request hands a predictor besides its body: limits and the factor cache."""

    limits: Limits
    factors: Factors


def refuse_non_finite(array: NDArray[Any], field: str, what: str) -> None:
    """422 naming `field` rather than an answer holding NaN or infinity (JSON would carry them
    as null): inputs finite in float32 can still overflow a graph's arithmetic (times or query
    points near 3e38)."""
    if not np.isfinite(array).all():
        raise InvalidInputError(
            f"{what} is not finite for these inputs: {field} lies outside what the model can "
            "compute (see its trained domain in GET /v1/models/{name})",
            field,
        )


@dataclass(frozen=True)
class Notice:
    """A request that is answered but may be answered badly (out of the trained domain...)."""

    field: str
    code: str
    message: str


@dataclass(frozen=True)
class Prediction:
    """Family-specific response fields (numpy arrays stay numpy) plus what every answer has."""

    fields: Mapping[str, Any]
    warnings: tuple[Notice, ...] = ()
    cache: CacheState = "miss"


@dataclass(frozen=True)
class Inference:
    """Tensors out of a tensor-level (Open Inference Protocol) call."""

    outputs: Mapping[str, NDArray[Any]]
    cache: CacheState = "miss"
    warnings: tuple[Notice, ...] = ()


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class Predictor(Protocol):
    async def predict(self, payload: Any, ctx: PredictContext) -> Prediction:
        """Validate the decoded JSON body, run the graphs off the event loop, compose.

        Raises app.errors.FieldserveError subclasses for anything wrong with the request.
        """
        ...

    @property
    def signature(self) -> Signature:
        """Tensors of the end-to-end model (the V2 model named like the model itself)."""
        ...

    def cost(
        self, graph: str | None, inputs: Mapping[str, NDArray[Any]], ctx: PredictContext
    ) -> Cost:
        """What `infer` (graph None) or `infer_graph(graph)` would hold for these inputs."""
        ...

    async def infer(self, inputs: Mapping[str, NDArray[Any]], ctx: PredictContext) -> Inference:
        """End-to-end from tensors that already match `signature` (names, dtypes, ranks)."""
        ...

    async def infer_graph(
        self, graph: str, inputs: Mapping[str, NDArray[Any]], ctx: PredictContext
    ) -> Inference:
        """One graph alone (the V2 model `<model>.<graph>`), through the factor cache."""
        ...


@runtime_checkable
class GeometryEncoder(Protocol):
    """A predictor that encodes geometries once (`POST /v1/models/{name}/geometries`)."""

    async def encode_geometry(self, payload: Any, ctx: PredictContext) -> Prediction:
        """Validate `{"geometry": ...}`, encode it through the factor cache and answer its
        `geometry_id` (fields) with cache "hit" when it was encoded before."""
        ...


FamilyLoader = Callable[[Manifest, Mapping[str, Graph]], Predictor]


@dataclass(frozen=True)
class Family:
    name: str
    tasks: Mapping[str, FamilyLoader] = field(default_factory=dict)
