"""Prediction calls for chaos load, each with a judge that checks the numbers.

A call asks one acoustic model for a pressure field by one of five ways (the domain route in
JSON or binary, a pinned version, the V2 end-to-end model, an impulse response at a listener)
and its judge reads the answer's
version, then compares the numbers with that version's in-process reference. An answer whose
version may not serve, or whose numbers are not its version's, is wrong; when the numbers are
another version's, the note says mixed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from benchmarks.client import ARRAYS, read_arrays
from benchmarks.reference import F64, Domain, Reference, close, space_time
from benchmarks.tally import CORRECT, REFUSED, Verdict
from benchmarks.traffic import Answer, Call, Judge, lost_or_none

Reader = Callable[[Answer], tuple[str, NDArray[Any]]]


def _read_json(answer: Answer) -> tuple[str, NDArray[Any]]:
    doc = orjson.loads(answer.body)
    return str(doc["version"]), np.asarray(doc["pressure"], dtype=np.float64)


def _read_bundle(answer: Answer) -> tuple[str, NDArray[Any]]:
    header, arrays = read_arrays(answer.body)
    return str(header["version"]), arrays["pressure"]


def _read_v2(answer: Answer) -> tuple[str, NDArray[Any]]:
    doc = orjson.loads(answer.body)
    (out,) = doc["outputs"]
    return str(doc["model_version"]), np.asarray(out["data"], dtype=np.float64)


def field_judge(
    source: tuple[float, ...],
    points: NDArray[np.float32],
    candidates: Mapping[str, Reference],
    read: Reader,
    refusals: frozenset[int] = frozenset(),
) -> Judge:
    """A 200 must come from one of `candidates` with that version's numbers; `refusals` are
    the statuses the design allows for this call (a pinned version that may be absent)."""

    def judge(answer: Answer) -> Verdict:
        early = lost_or_none(answer)
        if early is not None:
            return early
        if answer.status in refusals:
            return REFUSED
        if answer.status != 200:
            return Verdict("wrong", f"{answer.status} for a valid request: {answer.body[:160]!r}")
        try:
            version, values = read(answer)
        except Exception as exc:  # any unreadable 200 is a wrong answer, whatever broke
            return Verdict("wrong", f"unreadable 200: {type(exc).__name__}: {exc}")
        reference = candidates.get(version)
        if reference is None:
            return Verdict("wrong", f"answered by version {version}, which must not serve")
        got = values.reshape(-1)
        if close(got, reference.pressure(source, points)):
            return CORRECT
        mixed = [
            v
            for v, other in candidates.items()
            if v != version and close(got, other.pressure(source, points))
        ]
        if mixed:
            return Verdict("wrong", f"labelled version {version}, numbers of version {mixed[0]}")
        return Verdict("wrong", f"version {version}: numbers off its reference")

    return judge


def impulse_judge(
    source: tuple[float, ...], listener: tuple[float, ...], candidates: Mapping[str, Reference]
) -> Judge:
    """An impulse response's `pressure` is the field at the listener at the answer's own
    `times` (the model's trained steps): checked there against the answering version."""

    def judge(answer: Answer) -> Verdict:
        early = lost_or_none(answer)
        if early is not None:
            return early
        if answer.status != 200:
            return Verdict("wrong", f"{answer.status} for a valid request: {answer.body[:160]!r}")
        try:
            doc = orjson.loads(answer.body)
            version, times = str(doc["version"]), np.asarray(doc["times"], dtype=np.float64)
            got = np.asarray(doc["pressure"], dtype=np.float64)
        except Exception as exc:  # any unreadable 200 is a wrong answer, whatever broke
            return Verdict("wrong", f"unreadable 200: {type(exc).__name__}: {exc}")
        reference = candidates.get(version)
        if reference is None:
            return Verdict("wrong", f"answered by version {version}, which must not serve")
        points = space_time(np.asarray([listener]), times)
        if close(got, reference.pressure(source, points)):
            return CORRECT
        return Verdict("wrong", f"impulse response of version {version}: off its reference")

    return judge


@dataclass
class FieldTraffic:
    """Calls on one acoustic model: sources from a small pool (whole-answer hits) or a large
    one (factor hits and misses), receivers from a few fixed sets, a fixed time range."""

    name: str
    domain: Domain
    latest: dict[str, Reference]  # versions a latest-version call may be answered by
    # Pinned versions: their reference (None: must never answer) and the refusals allowed.
    pinned: dict[str, tuple[Reference | None, frozenset[int]]] = field(default_factory=dict)
    seed: int = 0
    n_times: int = 16
    pool: F64 = field(init=False)
    fresh: F64 = field(init=False)
    receiver_sets: list[F64] = field(init=False)
    times: F64 = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.pool = self.domain.sources(32, rng)
        self.fresh = self.domain.sources(20_000, rng)
        self.receiver_sets = [self.domain.receivers(n, rng) for n in (4, 32, 160)]
        self.times = np.linspace(0.0, 0.4 * self.domain.t_end, self.n_times)

    @classmethod
    def of(cls, reference: Reference, seed: int = 0) -> FieldTraffic:
        domain = Domain(reference.manifest)
        return cls(reference.name, domain, {reference.version: reference}, seed=seed)

    @property
    def inputs(self) -> tuple[str, str]:
        """The V2 end-to-end model's input names: the branch's and the trunk's."""
        return next(iter(self.latest.values())).inputs

    def _pick(self, rng: random.Random) -> tuple[tuple[float, ...], F64]:
        sources = self.pool if rng.random() < 0.55 else self.fresh
        source = tuple(float(v) for v in sources[rng.randrange(len(sources))])
        return source, self.receiver_sets[rng.randrange(len(self.receiver_sets))]

    def _domain_body(self, source: tuple[float, ...], receivers: F64) -> bytes:
        times = {"start": 0.0, "stop": float(self.times[-1]), "num": self.n_times}
        return orjson.dumps(
            {"source": list(source), "receivers": receivers, "times": times},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    def call(self, rng: random.Random) -> Call:
        """One call, drawn: mostly the domain route in JSON, some binary, V2, impulse responses
        and pinned versions."""
        source, receivers = self._pick(rng)
        points = space_time(receivers, self.times)
        draw = rng.random()
        if self.pinned and draw < 0.2:
            version = rng.choice(sorted(self.pinned))
            reference, refusals = self.pinned[version]
            return Call(
                f"predict v{version}",
                "POST",
                f"/v1/models/{self.name}/versions/{version}/predict",
                field_judge(
                    source, points, {version: reference} if reference else {}, _read_json, refusals
                ),
                self._domain_body(source, receivers),
            )
        if draw < 0.35:
            return Call(
                "predict binary",
                "POST",
                f"/v1/models/{self.name}/predict",
                field_judge(source, points, self.latest, _read_bundle),
                self._domain_body(source, receivers),
                {"Accept": ARRAYS},
            )
        if draw < 0.55:
            return self.v2_call(source, points)
        if draw < 0.65:
            listener = tuple(float(v) for v in receivers[rng.randrange(len(receivers))])
            body = orjson.dumps({"source": list(source), "listener": list(listener)})
            return Call(
                "impulse response",
                "POST",
                f"/v1/models/{self.name}/impulse-response",
                impulse_judge(source, listener, self.latest),
                body,
            )
        return Call(
            "predict",
            "POST",
            f"/v1/models/{self.name}/predict",
            field_judge(source, points, self.latest, _read_json),
            self._domain_body(source, receivers),
        )

    def v2_call(self, source: tuple[float, ...], points: NDArray[np.float32]) -> Call:
        dim = len(source)
        body = {
            "inputs": [
                {
                    "name": self.inputs[0],
                    "datatype": "FP32",
                    "shape": [1, dim],
                    "data": list(source),
                },
                {
                    "name": self.inputs[1],
                    "datatype": "FP32",
                    "shape": [len(points), dim + 1],
                    "data": points.reshape(-1),
                },
            ]
        }
        return Call(
            "v2 infer",
            "POST",
            f"/v2/models/{self.name}/infer",
            field_judge(source, points, self.latest, _read_v2),
            orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        )

    def one(self, rng: random.Random) -> Call:
        """A plain JSON call on the latest version (sequential checks between phases)."""
        source, receivers = self._pick(rng)
        points = space_time(receivers, self.times)
        return Call(
            "predict",
            "POST",
            f"/v1/models/{self.name}/predict",
            field_judge(source, points, self.latest, _read_json),
            self._domain_body(source, receivers),
        )
