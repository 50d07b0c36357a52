"""The API-key matrix: every route x every way of presenting (or not) a key.

The design (app/auth.py, README "API keys"), with FIELDSERVE_API_KEYS and FIELDSERVE_ADMIN_KEYS
both set:

    health probes (/health/*, /v2/health/*)  open to all; /health/ready tells a caller
                                             without a valid key only ready or not
    the page (/, /static/*)                  open to all: it holds no data, its calls send a key
    /v1/admin/*                              admin key: the route's answer; API key: 403;
                                             no key, a wrong or malformed one: 401
    everything else (unknown paths too)      API or admin key: the route's answer;
                                             no key, a wrong or malformed one: 401

"The route's answer" is what the same request gets from the same service with no keys set:
an open twin answers first, and each authorised answer must have its status (and, for the
predictions, the right numbers).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

import orjson

from benchmarks.field_calls import FieldTraffic
from benchmarks.hostile import Hostile
from benchmarks.tally import CORRECT, REFUSED, Verdict
from benchmarks.traffic import Answer, Call, Judge, lost_or_none

USER_KEYS = ("chaos-user-key-1", "chaos-user-key-2")
ADMIN_KEYS = ("chaos-admin-key",)
Who = Literal["nobody", "user", "admin"]


def settings() -> dict[str, str]:
    return {
        "FIELDSERVE_API_KEYS": ",".join(USER_KEYS),
        "FIELDSERVE_ADMIN_KEYS": ",".join(ADMIN_KEYS),
    }


def credentials() -> Iterator[tuple[str, Who, dict[str, str]]]:
    """(label, who the service must take the caller for, headers)."""
    user, admin = USER_KEYS[0], ADMIN_KEYS[0]
    yield "no key", "nobody", {}
    yield "bearer user", "user", {"Authorization": f"Bearer {user}"}
    yield "x-api-key user", "user", {"X-API-Key": user}
    yield "bearer second user", "user", {"Authorization": f"Bearer {USER_KEYS[1]}"}
    yield "bearer admin", "admin", {"Authorization": f"Bearer {admin}"}
    yield "x-api-key admin", "admin", {"X-API-Key": admin}
    yield "lower-case scheme", "user", {"Authorization": f"bearer {user}"}
    yield "padded token", "user", {"Authorization": f"Bearer   {user}  "}
    yield "bad key", "nobody", {"Authorization": "Bearer guess"}
    yield "bad x-api-key", "nobody", {"X-API-Key": "guess"}
    yield "key + 1 char", "nobody", {"Authorization": f"Bearer {user}x"}
    yield "key - 1 char", "nobody", {"Authorization": f"Bearer {user[:-1]}"}
    yield "key upper case", "nobody", {"Authorization": f"Bearer {user.upper()}"}
    yield "admin key + 1 char", "nobody", {"Authorization": f"Bearer {admin}x"}
    yield "empty bearer", "nobody", {"Authorization": "Bearer "}
    yield "scheme only", "nobody", {"Authorization": "Bearer"}
    yield "basic", "nobody", {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    yield "basic with the key", "nobody", {"Authorization": f"Basic {user}"}
    yield "token without scheme", "nobody", {"Authorization": user}
    yield "both keys joined", "nobody", {"Authorization": f"Bearer {user},{admin}"}
    yield "latin-1 junk", "nobody", {"Authorization": "Bearer \xe9\xff"}
    yield "empty x-api-key", "nobody", {"X-API-Key": ""}
    yield (
        "bad bearer + good x-api-key",
        "user",
        {"Authorization": "Bearer guess", "X-API-Key": user},
    )
    yield "basic + admin x-api-key", "admin", {"Authorization": "Basic eDp5", "X-API-Key": admin}


@dataclass(frozen=True)
class Route:
    label: str
    method: str
    path: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    right: Judge | None = None  # checks an authorised 200 beyond its status


def routes(traffic: FieldTraffic, airfoil: str | None) -> list[Route]:
    m = traffic.name
    hostile = Hostile(traffic, airfoil)
    predict = orjson.dumps(hostile._valid())
    v2 = hostile._v2_json(hostile._v2_good())
    listener = [float(v) for v in traffic.receiver_sets[0][0]]
    impulse = orjson.dumps({"source": list(hostile.source), "listener": listener})
    out = [
        Route("live", "GET", "/health/live"),
        Route("ready", "GET", "/health/ready"),
        Route("v2 live", "GET", "/v2/health/live"),
        Route("v2 ready", "GET", "/v2/health/ready"),
        Route("models", "GET", "/v1/models"),
        Route("model", "GET", f"/v1/models/{m}"),
        Route("predict", "POST", f"/v1/models/{m}/predict", predict, right=hostile._right()),
        Route("predict v1", "POST", f"/v1/models/{m}/versions/1/predict", predict),
        Route("predict bad body", "POST", f"/v1/models/{m}/predict", b"{}"),
        Route("geometries", "POST", f"/v1/models/{m}/geometries", b"{}"),
        Route("impulse response", "POST", f"/v1/models/{m}/impulse-response", impulse),
        Route("v2", "GET", "/v2"),
        Route("v2 index", "POST", "/v2/repository/index"),
        Route("v2 model", "GET", f"/v2/models/{m}"),
        Route("v2 model v1", "GET", f"/v2/models/{m}/versions/1"),
        Route("v2 model ready", "GET", f"/v2/models/{m}/ready"),
        Route("v2 infer", "POST", f"/v2/models/{m}/infer", v2, right=hostile._v2_right()),
        Route("v2 trunk infer", "POST", f"/v2/models/{m}.trunk/infer", b"{}"),
        Route("metrics", "GET", "/metrics"),
        Route("page", "GET", "/"),
        Route("docs", "GET", "/docs"),
        Route("redoc", "GET", "/redoc"),
        Route("openapi", "GET", "/openapi.json"),
        Route("unknown path", "GET", "/no/such/route"),
        Route("reload", "POST", "/v1/admin/reload"),
        Route("reload GET", "GET", "/v1/admin/reload"),
        Route("admin root", "GET", "/v1/admin"),
        # Spellings of the admin path a careless prefix check would let through.
        Route("reload trailing slash", "POST", "/v1/admin/reload/"),
        Route("reload double slash", "POST", "//v1/admin/reload"),
        Route("reload encoded", "POST", "/v1/%61dmin/reload"),
        Route("reload dot segment", "POST", "/v1/admin/./reload"),
        Route("reload dot dot", "POST", "/v1/models/../admin/reload"),
        Route("reload upper case", "POST", "/V1/ADMIN/reload"),
    ]
    if airfoil is not None:
        out.append(
            Route(
                "airfoil geometries",
                "POST",
                f"/v1/models/{airfoil}/geometries",
                b'{"geometry": {"naca": "2412"}}',
            )
        )
    return out


def _kind(path: str) -> Literal["open", "ready", "admin", "api"]:
    path = unquote(path)
    if path == "/health/ready":
        return "ready"
    if path == "/" or path.startswith(("/health/", "/v2/health/", "/static/")):
        return "open"
    if path == "/v1/admin" or path.startswith("/v1/admin/"):
        return "admin"
    return "api"


def designed(route: Route, who: Who, open_status: int) -> int:
    kind = _kind(route.path)
    if kind in ("open", "ready"):
        return open_status
    if kind == "admin":
        return {"nobody": 401, "user": 403, "admin": open_status}[who]
    return 401 if who == "nobody" else open_status


def judge_for(route: Route, who: Who, open_status: int) -> Judge:
    want = designed(route, who, open_status)
    detailed = who != "nobody"

    def judge(answer: Answer) -> Verdict:
        early = lost_or_none(answer)
        if early is not None:
            return early
        if answer.status != want:
            return Verdict("wrong", f"{answer.status}, designed {want} for {who}")
        if _kind(route.path) == "ready":
            body = orjson.loads(answer.body)
            if not detailed and set(body) != {"status"}:
                return Verdict("wrong", f"readiness details disclosed without a key: {set(body)}")
            if detailed and "models" not in body:
                return Verdict("wrong", "readiness details withheld from a valid key")
        if want == 401 and not answer.headers.get("www-authenticate", "").startswith("Bearer"):
            return Verdict("wrong", "401 without WWW-Authenticate: Bearer")
        if want >= 400:
            return REFUSED
        if route.right is not None:
            return route.right(answer)
        return CORRECT

    return judge


def call(route: Route, label: str, headers: dict[str, str], judge: Judge) -> Call:
    return Call(
        f"{route.label} / {label}",
        route.method,
        route.path,
        judge,
        route.body,
        {**dict(route.headers), **headers},
    )
