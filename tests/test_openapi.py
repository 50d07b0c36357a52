"""The OpenAPI document tells the truth: plain assertions on what it declares, and Schemathesis
(every check) over the whole API of an app serving real exported graphs, in-process.

The Schemathesis run is bounded for CI; FIELDSERVE_SCHEMATHESIS_CASES=1000 asks for at least
that many cases instead (see the README).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

CASES = int(os.environ.get("FIELDSERVE_SCHEMATHESIS_CASES", "0"))
# Per operation in the fuzzing phase of the bounded run: ~1,800 cases in all, ~10 s on 2 cores.
CI_EXAMPLES = 20


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # The document does not depend on what is served: no lifespan, no models needed.
    app = create_app(Settings(model_dir=tmp_path_factory.mktemp("empty")))
    spec: dict[str, Any] = app.openapi()
    return spec


def schema_of(doc: dict[str, Any], path: str, method: str, status: str, media: str) -> Any:
    schema = doc["paths"][path][method]["responses"][status]["content"][media]["schema"]
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_health_live_answers_an_object(doc: dict[str, Any]) -> None:
    schema = schema_of(doc, "/health/live", "get", "200", "application/json")
    assert schema["type"] == "object" and "status" in schema["properties"]


def test_no_json_answer_is_declared_a_string(doc: dict[str, Any]) -> None:
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                content = response.get("content", {}).get("application/json")
                if content is not None:
                    assert content["schema"].get("type") != "string", (method, path, status)


HEALTH = ("/health/", "/v2/health/")


def test_every_error_is_documented_in_the_error_shape(doc: dict[str, Any]) -> None:
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            responses = op["responses"]
            assert "500" in responses, (method, path)
            if not path.startswith(HEALTH):
                assert "401" in responses, (method, path)  # when keys are set
            if not path.startswith(HEALTH) and path != "/metrics":
                assert "503" in responses, (method, path)  # over the cap on requests in flight
                assert "Retry-After" in responses["503"]["headers"]
            if "{name}" in path:
                assert "404" in responses, (method, path)
            if method == "post":
                assert {"408", "413"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")) and not path.startswith(HEALTH):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert "403" in doc["paths"]["/v1/admin/reload"]["post"]["responses"]


def test_readiness_documents_its_503_body(doc: dict[str, Any]) -> None:
    ready = schema_of(doc, "/health/ready", "get", "503", "application/json")
    refs = {s["$ref"].rsplit("/", 1)[-1] for s in ready["anyOf"]}
    assert refs == {"Readiness", "ReadinessBrief"}
    v2 = schema_of(doc, "/v2/health/ready", "get", "503", "application/json")
    assert v2["properties"]["ready"]["type"] == "boolean"


@pytest.mark.parametrize(
    "path", ["/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"]
)
def test_v2_infer_documents_its_body_and_its_refusals(doc: dict[str, Any], path: str) -> None:
    op = doc["paths"][path]["post"]
    content = op["requestBody"]["content"]
    body = content["application/json"]["schema"]
    assert body["required"] == ["inputs"] and body["properties"]["inputs"]["minItems"] == 1
    tensor = body["properties"]["inputs"]["items"]
    assert {"name", "shape", "datatype"} <= set(tensor["required"])
    assert "FP32" in tensor["properties"]["datatype"]["enum"]
    assert content["application/octet-stream"]["schema"]["format"] == "binary"
    headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
    assert "Inference-Header-Content-Length" in headers
    assert {"400", "404", "408", "413", "415", "422", "503"} <= set(op["responses"])
    answer = op["responses"]["200"]["content"]
    assert set(answer) == {"application/json", "application/octet-stream"}


def test_the_documented_v2_datatypes_are_those_served() -> None:
    from app.v2.datatypes import NUMPY
    from app.v2.schemas import Datatype

    assert set(get_args(Datatype)) == set(NUMPY)


def test_request_schemas_say_what_the_handlers_need(doc: dict[str, Any]) -> None:
    predict = doc["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]
    acoustic, _ = predict["content"]["application/json"]["schema"]["oneOf"]
    assert acoustic["properties"]["source"]["minItems"] == 2
    assert acoustic["properties"]["source"]["maxItems"] == 3
    geometries = doc["paths"]["/v1/models/{name}/geometries"]["post"]["requestBody"]
    geometry = geometries["content"]["application/json"]["schema"]["properties"]["geometry"]
    (curves,) = [s for s in geometry["oneOf"] if "curves" in s.get("properties", {})]
    polyline = curves["properties"]["curves"]["items"]
    # {"curves": [[[0.0]]]} fitted the old schema and was refused: a point is [x, y] and a
    # closed polyline needs three of them.
    assert polyline["minItems"] == 3
    assert (polyline["items"]["minItems"], polyline["items"]["maxItems"]) == (2, 2)


def conforms(spec: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Raise unless `instance` fits `schema`, whose $refs point into the document's components."""
    import jsonschema_rs

    rebased = _rebased({**schema, "$defs": spec["components"]["schemas"]})
    jsonschema_rs.validate(rebased, instance)


def _rebased(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (v.replace("#/components/schemas/", "#/$defs/") if k == "$ref" else _rebased(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rebased(v) for v in node]
    return node


def test_an_answer_refused_for_a_missing_key_fits_its_documented_schema(tmp_path: Path) -> None:
    app = create_app(Settings(model_dir=tmp_path, api_keys=frozenset({"k"})))
    spec = app.openapi()
    with TestClient(app) as client:
        r = client.get("/v1/models")
    assert r.status_code == 401 and "www-authenticate" in r.headers
    documented = spec["paths"]["/v1/models"]["get"]["responses"]["401"]
    conforms(spec, documented["content"]["application/json"]["schema"], r.json())


# -- Schemathesis over the served API --------------------------------------------------------


@dataclass
class Outcome:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_acoustic: Any,
    tiny_airfoil: Any,
    tiny_elasticity: Any,
) -> Iterator[tuple[FastAPI, dict[str, Any]]]:
    """An app serving an acoustic, an airfoil and an elasticity model, and its document
    narrowed to them."""
    root = tmp_path_factory.mktemp("openapi-models")
    for t in (tiny_acoustic, tiny_airfoil, tiny_elasticity):
        shutil.copytree(t.version_dir, root / t.name / "1")
    app = create_app(Settings(model_dir=root, max_points=2000))
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
        v2_names = [m["name"] for m in client.post("/v2/repository/index").json()]
    models = [tiny_acoustic.name, tiny_airfoil.name, tiny_elasticity.name]
    yield app, narrowed(spec, models, v2_names)


def narrowed(spec: dict[str, Any], models: list[str], v2_names: list[str]) -> dict[str, Any]:
    """The published document with `name` and `version` limited to what is served: random
    strings only ever reach the 404 of the model lookup, never the handlers behind it. Every
    response schema is left as published, so what is checked is what clients are told."""
    out = copy.deepcopy(spec)
    for path, operations in out["paths"].items():
        for op in operations.values():
            for param in op.get("parameters", []):
                if param["in"] != "path":
                    continue
                if param["name"] == "version":
                    param["schema"] = {"type": "string", "enum": ["1"]}
                elif param["name"] == "name":
                    served = v2_names if path.startswith("/v2/") else models
                    param["schema"] = {"type": "string", "enum": served}
                    param["examples"] = {n: {"value": n} for n in served}
    return out


def _example_target(path: str, example: str, acoustic: str, airfoil: str, elasticity: str) -> str:
    """The served model an example is written for (app/routers/examples.py)."""
    if "/v2/" in path:
        return f"{acoustic}.trunk" if "trunk" in example else acoustic
    if example.startswith("elasticity"):
        return elasticity
    return acoustic if example.startswith("acoustics") else airfoil


@pytest.mark.parametrize("tiny_acoustic", [2], indirect=True, ids=["2d"])
def test_every_published_example_is_answered_as_documented(
    served: tuple[FastAPI, dict[str, Any]],
    tiny_acoustic: Any,
    tiny_airfoil: Any,
    tiny_elasticity: Any,
) -> None:
    app, spec = served
    checked = 0
    with TestClient(app) as client:
        for path, operations in app.openapi()["paths"].items():
            op = operations.get("post", {})
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            for key, example in body.get("examples", {}).items():
                name = _example_target(
                    path, key, tiny_acoustic.name, tiny_airfoil.name, tiny_elasticity.name
                )
                url = path.replace("{name}", name).replace("{version}", "1")
                r = client.post(url, json=example["value"])
                assert r.status_code == 200, (url, key, r.text)
                media = r.headers["content-type"].split(";")[0]
                documented = op["responses"]["200"]["content"][media]["schema"]
                if media == "application/json":
                    conforms(spec, documented, r.json())
                else:  # the binary-data extension: the JSON header fits the JSON schema
                    n = int(r.headers["inference-header-content-length"])
                    conforms(
                        spec,
                        op["responses"]["200"]["content"]["application/json"]["schema"],
                        json.loads(r.content[:n]),
                    )
                checked += 1
    assert checked >= 2 * (4 + 2 + 2)  # latest and pinned routes: predict, geometries, infer


@pytest.mark.parametrize("tiny_acoustic", [2], indirect=True, ids=["2d"])
def test_a_curve_the_schema_refuses_is_refused_naming_the_geometry(
    served: tuple[FastAPI, dict[str, Any]], tiny_airfoil: Any
) -> None:
    import jsonschema_rs

    app, spec = served
    body = {"geometry": {"curves": [[[0.0]]]}}
    op = spec["paths"]["/v1/models/{name}/geometries"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert not jsonschema_rs.is_valid(_rebased(schema), body)
    with TestClient(app) as client:
        r = client.post(f"/v1/models/{tiny_airfoil.name}/geometries", json=body)
    assert r.status_code == 422 and r.json()["field"] == "geometry", r.text


@pytest.mark.parametrize("tiny_acoustic", [2], indirect=True, ids=["2d"])
@pytest.mark.parametrize("points", [[[False, 0]], [[0.5, 0.1], [1.2, True]]])
def test_a_boolean_among_coordinates_is_refused(
    served: tuple[FastAPI, dict[str, Any]], tiny_airfoil: Any, points: Any
) -> None:
    # Found by Schemathesis: numpy had read false as 0.0, and the prediction was answered.
    app, _ = served
    body = {
        "geometry": {"naca": "0012"},
        "conditions": {"aoa_deg": 2.0, "speed": 1.0},
        "query": {"points": points},
    }
    with TestClient(app) as client:
        r = client.post(f"/v1/models/{tiny_airfoil.name}/predict", json=body)
    assert r.status_code == 422 and r.json()["field"] == "query", r.text
    assert "boolean" in r.json()["error"]


def schemathesis_config(examples: int) -> Any:
    import schemathesis

    body_routes = (
        "^/v1/models/\\{name\\}(/versions/\\{version\\})?/(predict|geometries|impulse-response)$"
    )
    infer_routes = "^/v2/models/\\{name\\}(/versions/\\{version\\})?/infer$"
    return schemathesis.Config.from_dict(
        {
            "seed": 13,
            # Seeded and without an example database: a CI run is the same run every time.
            "generation": {"max-examples": examples, "mode": "all", "database": "none"},
            "checks": {"enabled": True},
            "operations": [
                {
                    # Bodies the schema admits, refused 422 naming the field: what the family
                    # checks against the model cannot be a JSON schema (a source inside the
                    # room's walls, points past FIELDSERVE_MAX_POINTS, a self-crossing curve,
                    # a 3-D source for a 2-D room, a flow body sent to an acoustic model, a
                    # listener inside a wall, an impulse response asked of an airfoil model).
                    "include-path-regex": body_routes,
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": ["2xx", "404", "422"]}
                    },
                },
                {
                    # As above for V2 tensors, and a schema cannot tie values together: input
                    # names, datatypes and shapes are the model's, the count of `data` is its
                    # `shape`'s, the binary-data header counts the body's bytes, a gzip header
                    # needs a gzip body (400 naming the field); values outside the model's
                    # domain or answers past the byte limits are 422.
                    "include-path-regex": infer_routes,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "404", "422"]
                        }
                    },
                },
            ],
        }
    )


def run_schemathesis(app: FastAPI, spec: dict[str, Any], examples: int) -> Outcome:
    import schemathesis
    from schemathesis.engine import events, from_schema
    from schemathesis.python import asgi

    schema = schemathesis.openapi.from_dict(spec, config=schemathesis_config(examples))
    schema.app = app
    outcome = Outcome()
    try:
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                recorder = event.recorder
                outcome.cases += len(recorder.cases)
                for interaction in recorder.interactions.values():
                    if interaction.response is not None:
                        outcome.statuses[interaction.response.status_code] += 1
                for nodes in recorder.checks.values():
                    for node in nodes:
                        if node.failure_info is not None:
                            f = node.failure_info
                            outcome.failures.append(
                                f"{recorder.label} {node.name}: {f.failure.title}\n"
                                f"{f.failure.message}\n{f.code_sample}"
                            )
            elif isinstance(event, events.NonFatalError):
                outcome.errors.append(f"{event.label}: {event.info.format()}")
            elif isinstance(event, events.FatalError):
                raise event.exception
    finally:
        asgi.shutdown_lifespans()
    return outcome


@pytest.mark.parametrize("tiny_acoustic", [2], indirect=True, ids=["2d"])
def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    served: tuple[FastAPI, dict[str, Any]],
) -> None:
    app, spec = served
    operations = sum(len(ops) for ops in spec["paths"].values())
    # Cases come from several phases (examples, coverage, fuzzing), so the per-operation budget
    # below is a floor on what the run makes, not the count.
    examples = math.ceil(CASES / operations) if CASES else CI_EXAMPLES
    start = time.perf_counter()
    outcome = run_schemathesis(app, spec, examples)
    elapsed = time.perf_counter() - start
    print(
        f"schemathesis: {outcome.cases} cases over {operations} operations in {elapsed:.1f} s; "
        f"statuses {dict(sorted(outcome.statuses.items()))}"
    )
    assert not outcome.errors, "\n\n".join(outcome.errors[:5])
    assert not outcome.failures, "\n\n".join(outcome.failures[:10])
    assert not [s for s in outcome.statuses if s >= 500]
    assert outcome.cases >= max(CASES, 10 * operations)
