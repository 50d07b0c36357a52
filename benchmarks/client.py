"""The HTTP side: keep-alive httpx clients, the binary bundle reader, server-side metrics."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import httpx
import numpy as np
import orjson

ARRAYS = "application/x-fieldserve-arrays"
PREDICT_ROUTE = "/v1/models/{name}/predict"
# Small request writes must not wait for a delayed ACK (Nagle): a latency client sets this.
_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def client(base_url: str, timeout: float = 120.0) -> httpx.Client:
    """One keep-alive connection, as a latency-sensitive client would hold."""
    return httpx.Client(
        base_url=base_url,
        timeout=timeout,
        transport=httpx.HTTPTransport(socket_options=_SOCKET_OPTIONS),
    )


def async_client(base_url: str, connections: int, timeout: float = 120.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        transport=httpx.AsyncHTTPTransport(
            socket_options=_SOCKET_OPTIONS,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        ),
    )


def body(payload: Any) -> bytes:
    """JSON request bytes (numpy arrays allowed), made before the clock starts."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def headers(binary: bool) -> dict[str, str]:
    h = {"content-type": "application/json"}
    if binary:
        h["accept"] = ARRAYS
    return h


def read_arrays(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The README's FSA1 reader: header fields and zero-copy array views."""
    magic, n = struct.unpack_from("<4sI", data)
    if magic != b"FSA\x01":
        raise ValueError("not an FSA1 bundle")
    header = json.loads(data[8 : 8 + n])
    arrays = {
        a["name"]: np.frombuffer(
            data, a["dtype"], count=int(np.prod(a["shape"])), offset=8 + n + a["offset"]
        ).reshape(a["shape"])
        for a in header.pop("arrays")
    }
    return header, arrays


def decoded(response: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(JSON fields, arrays) of a predict answer in either format; raises on an error status."""
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
    if response.headers.get("content-type", "").startswith(ARRAYS):
        return read_arrays(response.content)
    doc: dict[str, Any] = orjson.loads(response.content)
    return doc, {}


def cache_state(response: Any) -> str:
    """The answer's `cache` field without decoding a large JSON body twice."""
    if response.headers.get("content-type", "").startswith(ARRAYS):
        (n,) = struct.unpack_from("<I", response.content, 4)
        return str(json.loads(response.content[8 : 8 + n]).get("cache"))
    tail = response.content[-600:]  # "cache" is written after the arrays by the service
    at = tail.rfind(b'"cache":"')
    if at >= 0:
        return tail[at + 9 :].split(b'"', 1)[0].decode()
    return str(orjson.loads(response.content).get("cache"))


def server_seconds(c: Any, route: str = PREDICT_ROUTE) -> tuple[float, float]:
    """(count, sum of seconds) of the service's request-duration histogram for a route:
    the difference of two scrapes is the time spent inside the service."""
    from prometheus_client.parser import text_string_to_metric_families

    count = total = 0.0
    for family in text_string_to_metric_families(c.get("/metrics").text):
        for s in family.samples:
            if s.labels.get("route") != route:
                continue
            if s.name == "fieldserve_request_duration_seconds_count":
                count += s.value
            elif s.name == "fieldserve_request_duration_seconds_sum":
                total += s.value
    return count, total


def metric_value(c: Any, name: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    found = None
    for family in text_string_to_metric_families(c.get("/metrics").text):
        for s in family.samples:
            if s.name == name:
                found = (found or 0.0) + s.value
    return found


class LeanResponse:
    """The parts of httpx.Response the benchmarks read."""

    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return orjson.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.text[:300]}")


class LeanClient:
    """One keep-alive http.client connection (TCP_NODELAY): the same requests as httpx at a
    fraction of the client's CPU, to show how much of a round trip is the client's."""

    def __init__(self, port: int, timeout: float = 120.0) -> None:
        import http.client

        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self._connect()

    def _connect(self) -> None:
        self._conn.connect()
        assert self._conn.sock is not None
        self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _do(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Any:
        import http.client

        try:
            self._conn.request(method, url, body=body, headers=headers)
            r = self._conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The server closes a keep-alive connection idle past its timeout (a solver run
            # between two timed calls is longer): connect again, as any client does.
            self._conn.close()
            self._connect()
            self._conn.request(method, url, body=body, headers=headers)
            r = self._conn.getresponse()
        data = r.read()
        return LeanResponse(r.status, {k.lower(): v for k, v in r.getheaders()}, data)

    def get(self, url: str) -> Any:
        return self._do("GET", url, None, {})

    def post(self, url: str, content: bytes, headers: dict[str, str] | None = None) -> Any:
        return self._do("POST", url, content, headers or {})

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LeanClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# What the cases accept: the lean client is the one they time, httpx the client-cost reference.
Client = httpx.Client | LeanClient
