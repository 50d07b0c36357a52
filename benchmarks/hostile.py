"""Hostile requests, each cheap to send: what a fuzzer or an attacker throws at the service.

Every one must be answered, and answered 4xx, or (where the input is odd but legal) 200 with a
right answer; never 5xx, never a dropped connection, never `null` where a number belongs.
Requests whose danger is their size (memory, answer bytes) are in benchmarks.oversized.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import orjson

from benchmarks.field_calls import FieldTraffic, field_judge
from benchmarks.reference import space_time
from benchmarks.tally import CORRECT, REFUSED, Verdict
from benchmarks.traffic import Answer, Call, Judge, lost_or_none

V2_BINARY = "application/octet-stream"
Headers = dict[str, str]
Tensor = tuple[str, str, list[Any], bytes]  # name, datatype, shape, bytes


def dumps(doc: Any) -> bytes:
    """JSON bytes; integers past 64 bits (which orjson refuses to write) by the stdlib."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return json.dumps(doc).encode()


def refusal(answer: Answer) -> Verdict:
    """The design: a 4xx (in the error shape); a 2xx answered what should have been refused."""
    early = lost_or_none(answer)
    if early is not None:
        return early
    if 400 <= answer.status < 500:
        return REFUSED
    return Verdict("wrong", f"{answer.status} where a refusal was designed: {answer.body[:120]!r}")


def _has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    if isinstance(value, dict):
        return any(_has_null(v) for k, v in value.items() if k not in ("field", "id"))
    return False


def refusal_or_finite(answer: Answer) -> Verdict:
    """Odd input with no reference: a 4xx, or a 200 whose numbers are all numbers."""
    early = lost_or_none(answer)
    if early is not None:
        return early
    if 400 <= answer.status < 500:
        return REFUSED
    if answer.status != 200:
        return Verdict("wrong", f"{answer.status}: {answer.body[:120]!r}")
    try:
        doc = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return CORRECT  # a binary answer: its bytes are numbers by construction
    if _has_null(doc):
        return Verdict("wrong", "200 with null where a number belongs (a non-finite value)")
    return CORRECT


def refusal_or(judge: Judge) -> Judge:
    """Odd but legal input: a 4xx, or a 200 that `judge` finds right."""

    def either(answer: Answer) -> Verdict:
        if answer.answered and 400 <= answer.status < 500:
            return REFUSED
        return judge(answer)

    return either


def not_5xx(answer: Answer) -> Verdict:
    early = lost_or_none(answer)
    if early is not None:
        return early
    return REFUSED if answer.status >= 400 else CORRECT


def v2_binary(
    tensors: list[Tensor], declared: Sequence[int | None] | None = None
) -> tuple[bytes, Headers]:
    """A V2 request with the binary-data extension: JSON header, then the tensors' bytes;
    `declared` overrides each tensor's binary_data_size (None: its true size)."""
    inputs = []
    for i, (name, datatype, shape, data) in enumerate(tensors):
        size = len(data) if declared is None or declared[i] is None else declared[i]
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": shape,
                "parameters": {"binary_data_size": size},
            }
        )
    header = dumps({"inputs": inputs})
    body = header + b"".join(t[3] for t in tensors)
    return body, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": V2_BINARY,
    }


def _compressed_zeros(n_bytes: int, wbits: int) -> bytes:
    """A decompression bomb: n_bytes of zeros, deflated (about 1000:1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = bytes(1 << 20)
    parts = [packer.compress(chunk) for _ in range(n_bytes >> 20)]
    parts.append(packer.flush())
    return b"".join(parts)


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _deep_object(n: int) -> bytes:
    return b'{"a":' * n + b"1" + b"}" * n


# Group -> the method that makes its calls.
GROUPS = {
    "versions": "versions",
    "v2 shapes": "v2_shapes",
    "v2 bodies": "v2_bodies",
    "numbers": "numbers",
    "non-finite answers": "non_finite",
    "bodies": "bodies",
    "encodings": "encodings",
    "routes and headers": "routes_and_headers",
    "impulse response": "impulse",
    "airfoil": "airfoil_calls",
}


class Hostile:
    """The hostile calls on one acoustic model (and an airfoil model when one is served)."""

    def __init__(
        self,
        traffic: FieldTraffic,
        airfoil: str | None = None,
        bomb_bytes: int = 1 << 30,
    ) -> None:
        self.t = traffic
        self.m = traffic.name
        self.airfoil = airfoil
        self.bomb_bytes = bomb_bytes
        self.source = tuple(float(v) for v in traffic.pool[0])
        self.receivers = traffic.receiver_sets[0]
        self.points = space_time(self.receivers, traffic.times)
        self.dim = len(self.source)

    # -- building blocks --------------------------------------------------------------------

    def _valid(self, **override: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "source": list(self.source),
            "receivers": self.receivers.tolist(),
            "times": {"start": 0.0, "stop": float(self.t.times[-1]), "num": self.t.n_times},
        }
        body.update(override)
        return body

    def _right(self, source: tuple[float, ...] | None = None) -> Judge:
        """The valid request's answer, checked against the reference."""
        return field_judge(
            source or self.source,
            self.points,
            self.t.latest,
            lambda a: (
                str(orjson.loads(a.body)["version"]),
                np.asarray(orjson.loads(a.body)["pressure"], dtype=np.float64),
            ),
        )

    def _predict(
        self, label: str, body: bytes, judge: Judge = refusal, headers: Headers | None = None
    ) -> Call:
        return Call(label, "POST", f"/v1/models/{self.m}/predict", judge, body, headers or {})

    def _v2_json(self, inputs: list[dict[str, Any]], **extra: Any) -> bytes:
        return dumps({"inputs": inputs, **extra})

    def _v2_good(self) -> list[dict[str, Any]]:
        s_in, p_in = self.t.inputs
        return [
            {"name": s_in, "datatype": "FP32", "shape": [1, self.dim], "data": list(self.source)},
            {
                "name": p_in,
                "datatype": "FP32",
                "shape": list(self.points.shape),
                "data": self.points.reshape(-1),
            },
        ]

    def _v2_right(self) -> Judge:
        return field_judge(
            self.source,
            self.points,
            self.t.latest,
            lambda a: (
                str(orjson.loads(a.body)["model_version"]),
                np.asarray(orjson.loads(a.body)["outputs"][0]["data"], dtype=np.float64),
            ),
        )

    def _infer(
        self,
        label: str,
        body: bytes,
        judge: Judge = refusal,
        model: str = "",
        headers: Headers | None = None,
    ) -> Call:
        path = f"/v2/models/{model or self.m}/infer"
        return Call(label, "POST", path, judge, body, headers or {})

    # -- the cases ----------------------------------------------------------------------------

    def calls(self, groups: Sequence[str] | None = None) -> list[Call]:
        """The calls of the named groups (all when None)."""
        chosen = GROUPS if groups is None else groups
        return [call for group in chosen for call in getattr(self, GROUPS[group])()]

    def versions(self) -> Iterator[Call]:
        """Version path segments: 5,000 digits (Python's int-string limit is 4,300), past
        int64, and spellings of 1 that are not its canonical one."""
        body = orjson.dumps(self._valid())
        v2 = self._v2_json(self._v2_good())
        for label, version in [
            ("5,000 digits", "9" * 5000),
            ("4,301 digits", "1" * 4301),
            ("past int64", "9" * 19),
            ("negative", "-1"),
            ("leading zero", "01"),
            ("decimal", "1.0"),
            ("exponent", "1e0"),
            ("hex", "0x1"),
            ("fullwidth digit", "%EF%BC%91"),
            ("empty-ish", "%20"),
        ]:
            yield self._predict_at(f"version {label}: predict", version, body)
            yield Call(
                f"version {label}: v2 infer",
                "POST",
                f"/v2/models/{self.m}/versions/{version}/infer",
                refusal,
                v2,
            )
            yield Call(
                f"version {label}: v2 metadata",
                "GET",
                f"/v2/models/{self.m}/versions/{version}",
                refusal,
            )
            yield Call(
                f"version {label}: v2 ready",
                "GET",
                f"/v2/models/{self.m}/versions/{version}/ready",
                refusal,
            )
        yield Call(
            "version 5,000 digits: geometries",
            "POST",
            f"/v1/models/{self.m}/versions/{'9' * 5000}/geometries",
            refusal,
            b'{"geometry": {"naca": "2412"}}',
        )

    def _predict_at(self, label: str, version: str, body: bytes) -> Call:
        return Call(label, "POST", f"/v1/models/{self.m}/versions/{version}/predict", refusal, body)

    def v2_shapes(self) -> Iterator[Call]:
        """V2 binary shapes that no array can have, and sizes that do not add up."""
        s_in, p_in = self.t.inputs
        trunk = f"{self.m}.trunk"
        src = np.asarray([self.source], np.float32).tobytes()
        shapes: list[tuple[str, list[Any]]] = [
            ("[0, 2^62, 3]", [0, 4611686018427387904, 3]),
            ("[2^62, 0]", [4611686018427387904, 0]),
            ("[0, 2^63, 3]", [0, 2**63, 3]),
            ("[0, 2^64 + 1, 3]", [0, 2**64 + 1, 3]),
            ("[2^31, 2^31, 2^31]", [2**31, 2**31, 2**31]),
            ("negative", [-1, 3]),
            ("nine dimensions", [1] * 9),
            ("float dimension", [1.5, 3]),
            ("bool dimension", [True, 3]),
            ("scalar", []),
        ]
        for label, shape in shapes:
            body, headers = v2_binary([(p_in, "FP32", shape, b"")])
            yield self._infer(
                f"v2 binary shape {label} (.trunk)", body, model=trunk, headers=headers
            )
            body, headers = v2_binary(
                [(s_in, "FP32", [1, self.dim], src), (p_in, "FP32", shape, b"")]
            )
            yield self._infer(f"v2 binary shape {label}", body, headers=headers)
            body = self._v2_json([{"name": p_in, "datatype": "FP32", "shape": shape, "data": []}])
            yield self._infer(f"v2 json shape {label} (.trunk)", body, model=trunk)
        pts = self.points.tobytes()
        n = len(self.points)
        for label, declared in [
            ("size short by 4", [len(src), len(pts) - 4]),
            ("size long by 4", [len(src), len(pts) + 4]),
            ("size negative", [len(src), -1]),
            ("size huge", [len(src), 2**62]),
        ]:
            body, headers = v2_binary(
                [(s_in, "FP32", [1, self.dim], src), (p_in, "FP32", [n, self.dim + 1], pts)],
                declared,
            )
            yield self._infer(f"v2 binary {label}", body, headers=headers)
        body, headers = v2_binary(
            [(s_in, "FP32", [1, self.dim], src), (p_in, "FP32", [n, self.dim + 1], pts)]
        )
        header_length = int(headers["Inference-Header-Content-Length"])
        for label, value in [
            ("past the body", str(len(body) + 1)),
            ("negative", "-5"),
            ("not a number", "abc"),
            ("zero", "0"),
            ("huge", str(2**70)),
            ("one short", str(header_length - 1)),
        ]:
            yield self._infer(
                f"v2 header length {label}",
                body,
                headers={**headers, "Inference-Header-Content-Length": value},
            )
        yield self._infer("v2 binary trailing bytes", body + b"\0" * 8, headers=headers)
        yield self._infer("v2 binary well formed", body, self._v2_right(), headers=headers)

    def v2_bodies(self) -> Iterator[Call]:
        s_in = self.t.inputs[0]
        good = self._v2_good()
        src = {"name": s_in, "shape": [1, self.dim]}
        cases: list[tuple[str, bytes]] = [
            ("datatype BYTES", self._v2_json([{**good[0], "datatype": "BYTES"}, good[1]])),
            ("datatype FP64", self._v2_json([{**good[0], "datatype": "FP64"}, good[1]])),
            ("datatype lower case", self._v2_json([{**good[0], "datatype": "fp32"}, good[1]])),
            (
                "data strings",
                self._v2_json([{**src, "datatype": "FP32", "data": ["a", "b"]}, good[1]]),
            ),
            (
                "data ragged",
                self._v2_json([{**src, "datatype": "FP32", "data": [[1.0], [2.0, 3.0]]}, good[1]]),
            ),
            (
                "data null",
                self._v2_json([{**src, "datatype": "FP32", "data": [None, 1.0]}, good[1]]),
            ),
            (
                "data objects",
                self._v2_json([{**src, "datatype": "FP32", "data": [{}, {}]}, good[1]]),
            ),
            ("data too few", self._v2_json([{**src, "datatype": "FP32", "data": [1.0]}, good[1]])),
            ("data NaN", self._v2_literal("NaN")),
            ("data 1e400", self._v2_literal("1e400")),
            (
                "data past float32",
                self._v2_json([{**src, "datatype": "FP32", "data": [1e39, 1.0]}, good[1]]),
            ),
            (
                "data and binary size",
                self._v2_json([{**good[0], "parameters": {"binary_data_size": 8}}, good[1]]),
            ),
            ("inputs an object", orjson.dumps({"inputs": {}})),
            ("inputs empty", orjson.dumps({"inputs": []})),
            ("inputs missing", orjson.dumps({"id": "x"})),
            ("input twice", self._v2_json([good[0], good[0], good[1]])),
            ("unknown input", self._v2_json([{**good[0], "name": "nope"}, good[1]])),
            ("input name empty", self._v2_json([{**good[0], "name": ""}, good[1]])),
            ("output unknown", self._v2_json(good, outputs=[{"name": "nope"}])),
            ("outputs an object", self._v2_json(good, outputs={"name": "x"})),
            (
                "binary_data_output a string",
                self._v2_json(good, parameters={"binary_data_output": "yes"}),
            ),
            ("id a number", self._v2_json(good, id=12)),
            ("body a list", b"[]"),
            ("body empty", b""),
        ]
        for label, body in cases:
            yield self._infer(f"v2 {label}", body)
        yield self._infer(
            "v2 id of 1 MB", self._v2_json(good, id="x" * (1 << 20)), refusal_or(self._v2_right())
        )
        yield self._infer("v2 JSON well formed", self._v2_json(good), self._v2_right())

    def _v2_literal(self, literal: str) -> bytes:
        """A V2 source tensor holding a literal (NaN, 1e400) JSON libraries will not write."""
        data = ", ".join([literal] + ["0.5"] * (self.dim - 1))
        head = {"name": self.t.inputs[0], "datatype": "FP32", "shape": [1, self.dim]}
        return b'{"inputs": [' + orjson.dumps(head)[:-1] + f', "data": [{data}]}}]}}'.encode()

    def numbers(self) -> Iterator[Call]:
        """Numbers at the edges of float32 and of the domain."""
        s_in, p_in = self.t.inputs
        d = self.dim
        for label, value in [
            ("3e38", 3e38),
            ("-3e38", -3e38),
            ("3.4e38", 3.4e38),
            ("1e-45", 1e-45),
        ]:
            pts = [[value] * (d + 1)]
            body = self._v2_json(
                [{"name": p_in, "datatype": "FP32", "shape": [1, d + 1], "data": pts}]
            )
            yield self._infer(
                f"v2 .trunk points {label}", body, refusal_or_finite, model=f"{self.m}.trunk"
            )
            body = self._v2_json(
                [{"name": s_in, "datatype": "FP32", "shape": [1, d], "data": [value] * d}]
            )
            yield self._infer(
                f"v2 .branch source {label}", body, refusal_or_finite, model=f"{self.m}.branch"
            )
            good = self._v2_good()
            body = self._v2_json([{**good[0], "data": [value] * d}, good[1]])
            yield self._infer(f"v2 source {label}", body, refusal_or_finite)
            body = self._v2_json([good[0], {**good[1], "shape": [1, d + 1], "data": pts}])
            yield self._infer(f"v2 points {label}", body, refusal_or_finite)
            yield self._predict(
                f"predict source {label}",
                orjson.dumps(self._valid(source=[value] * d)),
                refusal_or_finite,
            )
            yield self._predict(
                f"predict receiver {label}",
                orjson.dumps(self._valid(receivers=[[value] * d])),
                refusal_or_finite,
            )
        src = ", ".join(["0.5"] * d)
        for label, text in [
            ("source NaN", f'{{"source": [NaN, {src}]}}'),
            ("source Infinity", f'{{"source": [Infinity, {src}]}}'),
            ("source 1e400", f'{{"source": [1e400, {src}]}}'),
            ("source -1e400", f'{{"source": [-1e400, {src}]}}'),
        ]:
            yield self._predict(label, self._merged(text))
        r = self.receivers.tolist()
        overrides: list[tuple[str, dict[str, Any]]] = [
            ("source strings", {"source": [str(v) for v in self.source]}),
            ("source booleans", {"source": [True] * d}),
            ("source nested", {"source": [list(self.source)]}),
            ("source one too many", {"source": [*self.source, 0.5]}),
            ("source empty", {"source": []}),
            ("source null", {"source": None}),
            ("source of 10^6", {"source": [0.5] * 1_000_000}),
            ("source 2^70", {"source": [2**70] * d}),
            ("times num 10^30", {"times": {"start": 0.0, "stop": 0.01, "num": 10**30}}),
            ("times num -1", {"times": {"start": 0.0, "stop": 0.01, "num": -1}}),
            ("times num 0", {"times": {"start": 0.0, "stop": 0.01, "num": 0}}),
            ("times num 2.5", {"times": {"start": 0.0, "stop": 0.01, "num": 2.5}}),
            ("times num true", {"times": {"start": 0.0, "stop": 0.01, "num": True}}),
            ("times stop before start", {"times": {"start": 0.01, "stop": 0.0, "num": 3}}),
            ("times without stop", {"times": {"start": 0.0, "num": 3}}),
            ("times empty list", {"times": []}),
            ("times a string", {"times": "0..1"}),
            ("grid nx 10^9", {"receivers": {"grid": {"nx": 10**9, "ny": 10**9}}}),
            ("grid nx 2^70", {"receivers": {"grid": {"nx": 2**70, "ny": 2}}}),
            ("grid nx -1", {"receivers": {"grid": {"nx": -1, "ny": 2}}}),
            ("grid nx 0", {"receivers": {"grid": {"nx": 0, "ny": 2}}}),
            ("grid nx 1e9 float", {"receivers": {"grid": {"nx": 1e9, "ny": 2}}}),
            ("grid with nz", {"receivers": {"grid": {"nx": 2, "ny": 2, "nz": 2, "nw": 2}}}),
            ("grid unknown key", {"receivers": {"grid": {"nx": 2, "ny": 2}, "x": 1}}),
            ("receivers empty", {"receivers": []}),
            ("receivers short", {"receivers": [[0.5]]}),
            ("receivers long", {"receivers": [[0.5] * (d + 1)]}),
            ("receivers ragged", {"receivers": [[0.5] * d, [0.5]]}),
            ("receivers 3 levels", {"receivers": [r]}),
            (
                "receivers over max points",
                {
                    "receivers": [[0.5] * d] * 700_000,
                    "times": {"start": 0.0, "stop": 0.01, "num": 3},
                },
            ),
            ("extra field", {"extra": 1}),
        ]
        for label, override in overrides:
            yield self._predict(f"predict {label}", dumps(self._valid(**override)))

    def _merged(self, source_json: str) -> bytes:
        """A body with a literal (NaN, 1e400) JSON libraries will not write."""
        rest = orjson.dumps({k: v for k, v in self._valid().items() if k != "source"})
        return source_json[:-1].encode() + b", " + rest[1:]

    def bodies(self) -> Iterator[Call]:
        valid = orjson.dumps(self._valid())
        keys = {f"k{i}": 0 for i in range(200_000)}
        for label, body in [
            ("empty", b""),
            ("null", b"null"),
            ("list", b"[]"),
            ("string", b'"source"'),
            ("number", b"1"),
            ("invalid UTF-8", b"\xff\xfe\xfd"),
            ("trailing garbage", valid + b" xyz"),
            ("two objects", valid + valid),
            ("comments", b"/* hi */" + valid),
            ("single quotes", valid.replace(b'"', b"'")),
            ("deep arrays 100k", _deep(100_000)),
            ("deep objects 100k", _deep_object(100_000)),
            ("deep arrays 5k in source", b'{"source": ' + _deep(5_000) + b"}"),
            ("200k keys", orjson.dumps({**self._valid(), **keys})),
            ("10 MB string", orjson.dumps({"source": "x" * 10_000_000})),
            ("form encoded", b"source=0.8&source=1.1"),
        ]:
            yield self._predict(f"body {label}", body)
            yield self._infer(f"v2 body {label}", body)
        yield self._predict("body BOM + JSON", b"\xef\xbb\xbf" + valid, refusal_or(self._right()))
        utf16 = json.dumps(self._valid()).encode("utf-16")  # RFC 8259 says UTF-8; some accept
        yield self._predict("body UTF-16", utf16, refusal_or(self._right()))
        dup = valid[:-1] + b', "source": ' + orjson.dumps(list(self.source)) + b"}"
        yield self._predict("body duplicate key", dup, refusal_or(self._right()))
        for ctype in (
            "text/plain",
            "application/xml",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "application/json; charset=utf-16",
            "",
        ):
            yield self._predict(
                f"content type {ctype or 'none'!r}",
                valid,
                refusal_or(self._right()),
                headers={"Content-Type": ctype},
            )
        yield self._predict("accept text/html", valid, refusal, headers={"Accept": "text/html"})
        yield self._predict(
            "accept json q=0", valid, refusal, headers={"Accept": "application/json;q=0"}
        )
        yield self._predict(
            "accept q not a number",
            valid,
            refusal_or(self._right()),
            headers={"Accept": "application/json;q=abc"},
        )
        yield self._predict(
            "accept 10 kB", valid, refusal_or(self._right()), headers={"Accept": "x/y," * 2500}
        )
        yield Call(
            "content-length over the limit",
            "POST",
            f"/v1/models/{self.m}/predict",
            refusal,
            b"",
            {"Content-Length": str(1 << 40)},
        )
        yield Call(
            "content-length not a number",
            "POST",
            f"/v1/models/{self.m}/predict",
            refusal,
            b"",
            {"Content-Length": "abc"},
        )

    def encodings(self) -> Iterator[Call]:
        good = self._v2_json(self._v2_good())
        gz = zlib.compressobj(6, zlib.DEFLATED, 31)
        gzipped = gz.compress(good) + gz.flush()
        yield self._infer(
            "gzip well formed", gzipped, self._v2_right(), headers={"Content-Encoding": "gzip"}
        )
        yield self._infer(
            f"gzip bomb {self.bomb_bytes >> 20} MB",
            _compressed_zeros(self.bomb_bytes, 31),
            headers={"Content-Encoding": "gzip"},
        )
        yield self._infer(
            f"deflate bomb {self.bomb_bytes >> 20} MB",
            _compressed_zeros(self.bomb_bytes, 15),
            headers={"Content-Encoding": "deflate"},
        )
        yield self._infer("gzip not gzip", b"\x1f\x8b" + good, headers={"Content-Encoding": "gzip"})
        yield self._infer(
            "gzip truncated", gzipped[: len(gzipped) // 2], headers={"Content-Encoding": "gzip"}
        )
        yield self._infer("encoding br", good, headers={"Content-Encoding": "br"})
        yield self._infer(
            "encoding gzip, gzip", gzipped, headers={"Content-Encoding": "gzip, gzip"}
        )
        yield self._predict(
            "gzip on the domain route",
            zlib.compress(orjson.dumps(self._valid())),
            refusal_or(self._right()),
            headers={"Content-Encoding": "gzip"},
        )

    def routes_and_headers(self) -> Iterator[Call]:
        valid = orjson.dumps(self._valid())
        m = self.m
        for label, method, path in [
            ("GET predict", "GET", f"/v1/models/{m}/predict"),
            ("PUT models", "PUT", "/v1/models"),
            ("DELETE reload", "DELETE", "/v1/admin/reload"),
            ("POST live", "POST", "/health/live"),
            ("TRACE", "TRACE", "/v1/models"),
            ("name 10,000 chars", "POST", f"/v1/models/{'m' * 10_000}/predict"),
            ("name dot dot", "POST", "/v1/models/%2e%2e/predict"),
            ("name NUL", "POST", f"/v1/models/{m}%00/predict"),
            ("name emoji", "POST", "/v1/models/%F0%9F%92%A5/predict"),
            ("name percent junk", "POST", "/v1/models/%ZZ/predict"),
            ("geometries of an acoustic model", "POST", f"/v1/models/{m}/geometries"),
            ("v2 graph unknown", "POST", f"/v2/models/{m}.nope/infer"),
            ("v2 graph empty", "POST", f"/v2/models/{m}./infer"),
            ("v2 dot name", "POST", "/v2/models/.trunk/infer"),
            ("v2 dots", "POST", f"/v2/models/{m}..trunk/infer"),
        ]:
            yield Call(f"route {label}", method, path, refusal, valid)
        yield Call("query string 100 kB", "GET", "/v1/models?" + "x=1&" * 25_000, not_5xx)
        yield Call("header 64 kB", "GET", "/health/live", not_5xx, None, {"X-Junk": "x" * 65_536})
        yield Call(
            "200 headers",
            "GET",
            "/health/live",
            not_5xx,
            None,
            {f"X-H{i}": "v" for i in range(200)},
        )
        yield Call(
            "request id 10 kB", "GET", "/v1/models", not_5xx, None, {"X-Request-ID": "r" * 10_000}
        )
        yield Call(
            "request id latin-1", "GET", "/v1/models", not_5xx, None, {"X-Request-ID": "\xe9\xff"}
        )

    def non_finite(self) -> Iterator[Call]:
        """Inputs finite in float32 whose answer is not (a time or a point near 3e38 overflows
        the graphs' arithmetic): refused, or answered with numbers, never with null."""
        d = self.dim
        for label, value in [("3e38", 3e38), ("-3e38", -3e38), ("3.4e38", 3.4e38)]:
            yield self._predict(
                f"predict times stop {label}",
                dumps(self._valid(times={"start": 0.0, "stop": value, "num": 3})),
                refusal_or_finite,
            )
            yield self._predict(
                f"predict times list {label}",
                dumps(self._valid(times=[0.0, value])),
                refusal_or_finite,
            )
            yield self._predict(
                f"predict receivers and times {label}",
                dumps(self._valid(receivers=[[0.5] * d], times=[value])),
                refusal_or_finite,
            )
        if self.airfoil is None:
            return
        cond = {"aoa_deg": 4.0, "speed": 1.0}
        query = {"points": [[0.2, 0.1], [1.2, -0.3]]}
        square = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.1], [0.0, 0.1], [0.0, 0.0]]
        bodies: list[tuple[str, dict[str, Any]]] = [
            (
                "curves 3e38",
                {
                    "geometry": {"curves": [[[3e38 * x, y] for x, y in square]]},
                    "conditions": cond,
                    "query": query,
                },
            ),
            (
                "query 3e38",
                {
                    "geometry": {"naca": "2412"},
                    "conditions": cond,
                    "query": {"points": [[3e38, 3e38]]},
                },
            ),
            (
                "grid bounds 3e38",
                {
                    "geometry": {"naca": "2412"},
                    "conditions": cond,
                    "query": {"grid": {"nx": 4, "ny": 4, "bounds": [[-3e38, 3e38], [-3e38, 3e38]]}},
                },
            ),
        ]
        for label, body in bodies:
            yield Call(
                f"airfoil {label}",
                "POST",
                f"/v1/models/{self.airfoil}/predict",
                refusal_or_finite,
                dumps(body),
            )

    def impulse(self) -> Iterator[Call]:
        """POST /v1/models/{name}/impulse-response: a source and a listener."""
        path = f"/v1/models/{self.m}/impulse-response"
        src, lis = list(self.source), [float(v) for v in self.receivers[0]]
        valid = dumps({"source": src, "listener": lis})
        nan = ", ".join(["NaN"] + ["0.5"] * (self.dim - 1))
        cases: list[tuple[str, Judge, bytes, Headers]] = [
            ("listener missing", refusal, dumps({"source": src}), {}),
            ("listener one too many", refusal, dumps({"source": src, "listener": [*lis, 0.5]}), {}),
            ("listener empty", refusal, dumps({"source": src, "listener": []}), {}),
            ("listener strings", refusal, dumps({"source": src, "listener": ["1", "1"]}), {}),
            ("source NaN", refusal, f'{{"listener": {lis}, "source": [{nan}]}}'.encode(), {}),
            ("extra field", refusal, dumps({"source": src, "listener": lis, "x": 1}), {}),
            ("deep", refusal, _deep(100_000), {}),
            ("empty", refusal, b"", {}),
            ("accept text/html", refusal, valid, {"Accept": "text/html"}),
            ("accept audio/wav", not_5xx, valid, {"Accept": "audio/wav"}),
        ]
        for value in (3e38, -3e38):
            for who in ("source", "listener"):
                edge = {"source": src, "listener": lis, who: [value] * self.dim}
                cases.append((f"{who} {value:g}", refusal_or_finite, dumps(edge), {}))
        for label, judge, payload, headers in cases:
            yield Call(f"impulse {label}", "POST", path, judge, payload, headers)
        version = f"/v1/models/{self.m}/versions/{'9' * 5000}/impulse-response"
        yield Call("impulse version 5,000 digits", "POST", version, refusal, valid)
        if self.airfoil is not None:
            airfoil = f"/v1/models/{self.airfoil}/impulse-response"
            yield Call("impulse of an airfoil model", "POST", airfoil, refusal, valid)

    def airfoil_calls(self) -> Iterator[Call]:
        if self.airfoil is None:
            return
        a = self.airfoil
        cond = {"aoa_deg": 4.0, "speed": 1.0}
        query = {"points": [[0.2, 0.1], [1.2, -0.3]]}
        square = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.1], [0.0, 0.1], [0.0, 0.0]]
        bowtie = [[0.0, 0.0], [1.0, 0.1], [1.0, 0.0], [0.0, 0.1], [0.0, 0.0]]
        for label, judge, body in [
            (
                "curves [[[0.0]]]",
                refusal,
                {"geometry": {"curves": [[[0.0]]]}, "conditions": cond, "query": query},
            ),
            (
                "curves empty",
                refusal,
                {"geometry": {"curves": []}, "conditions": cond, "query": query},
            ),
            (
                "curves NaN",
                refusal,
                {
                    "geometry": {"curves": [[[math.nan, 0.0]] * 4]},
                    "conditions": cond,
                    "query": query,
                },
            ),
            (
                "curves bowtie",
                refusal_or_finite,
                {"geometry": {"curves": [bowtie]}, "conditions": cond, "query": query},
            ),
            (
                "curves square",
                refusal_or_finite,
                {"geometry": {"curves": [square]}, "conditions": cond, "query": query},
            ),
            (
                "naca 99999",
                refusal,
                {"geometry": {"naca": "99999"}, "conditions": cond, "query": query},
            ),
            (
                "naca 0000",
                refusal_or_finite,
                {"geometry": {"naca": "0000"}, "conditions": cond, "query": query},
            ),
            (
                "naca 10 kB",
                refusal,
                {"geometry": {"naca": "2" * 10_000}, "conditions": cond, "query": query},
            ),
            (
                "naca and curves",
                refusal,
                {
                    "geometry": {"naca": "2412", "curves": [square]},
                    "conditions": cond,
                    "query": query,
                },
            ),
            (
                "geometry_id unknown",
                refusal,
                {"geometry": {"geometry_id": "0" * 40}, "conditions": cond, "query": query},
            ),
            (
                "geometry_id path",
                refusal,
                {
                    "geometry": {"geometry_id": "../../../etc/passwd"},
                    "conditions": cond,
                    "query": query,
                },
            ),
            (
                "aoa 1e300",
                refusal_or_finite,
                {
                    "geometry": {"naca": "2412"},
                    "conditions": {"aoa_deg": 1e300, "speed": 1.0},
                    "query": query,
                },
            ),
            (
                "speed 0",
                refusal_or_finite,
                {
                    "geometry": {"naca": "2412"},
                    "conditions": {"aoa_deg": 4.0, "speed": 0.0},
                    "query": query,
                },
            ),
            (
                "speed -1",
                refusal_or_finite,
                {
                    "geometry": {"naca": "2412"},
                    "conditions": {"aoa_deg": 4.0, "speed": -1.0},
                    "query": query,
                },
            ),
            (
                "grid 10^9",
                refusal,
                {
                    "geometry": {"naca": "2412"},
                    "conditions": cond,
                    "query": {"grid": {"nx": 10**9, "ny": 10**9, "bounds": [[-1, 2], [-1, 1]]}},
                },
            ),
            (
                "grid bounds inverted",
                refusal_or_finite,
                {
                    "geometry": {"naca": "2412"},
                    "conditions": cond,
                    "query": {"grid": {"nx": 4, "ny": 4, "bounds": [[2, -1], [1, -1]]}},
                },
            ),
        ]:
            payload = orjson.dumps(body)
            yield Call(f"airfoil {label}", "POST", f"/v1/models/{a}/predict", judge, payload)
        encodes: list[tuple[str, Judge, dict[str, Any] | None]] = [
            ("curves [[[0.0]]]", refusal, {"geometry": {"curves": [[[0.0]]]}}),
            ("deep", refusal, None),
            ("naca 2412", refusal_or_finite, {"geometry": {"naca": "2412"}}),
        ]
        for label, check, spec in encodes:
            payload = _deep(50_000) if spec is None else orjson.dumps(spec)
            yield Call(
                f"airfoil geometries {label}", "POST", f"/v1/models/{a}/geometries", check, payload
            )
