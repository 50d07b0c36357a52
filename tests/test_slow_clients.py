"""Slow and many clients against a real server: a trickled head or body is answered 408 and
closed, connections and requests past their caps get 503 with Retry-After, and health probes
are answered throughout."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from app.admission import AdmissionMiddleware
from app.main import create_app
from app.settings import Settings
from tests.helpers_serving import live_server

HEAD_S, BODY_S = 0.6, 0.8
MAX_CONNECTIONS = 6


@pytest.fixture(scope="module")
def server(tiny_acoustic: Any) -> Iterator[tuple[str, int]]:
    settings = Settings(
        model_dir=tiny_acoustic.models,
        head_timeout_s=HEAD_S,
        body_timeout_s=BODY_S,
        max_connections=MAX_CONNECTIONS,
        max_concurrent_requests=2,
    )
    with live_server(create_app(settings)) as url:
        host, port = url.split(":")
        yield host, int(port)


def connect(server: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(server, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def answer(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the one answer on s, read to the close or its length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    while len(body) < int(headers.get("content-length", 0)):
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed(s: socket.socket) -> bool:
    """Whether the server closed s (after whatever it answered first)."""
    s.settimeout(2)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def trickle(s: socket.socket, stop: threading.Event, byte: bytes) -> None:
    while not stop.wait(0.1):
        try:
            s.sendall(byte)
        except OSError:
            return


def get(server: tuple[str, int], path: str) -> int:
    with connect(server) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return answer(s)[0]


def test_a_trickled_head_is_answered_408_and_closed(server: tuple[str, int]) -> None:
    with connect(server) as s:
        stop = threading.Event()
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        threading.Thread(target=trickle, args=(s, stop, b"a"), daemon=True).start()
        start = time.monotonic()
        try:
            status, _, body = answer(s)
        except ConnectionResetError:  # the 408 may be lost to the reset of unread bytes
            status, body = 408, b'{"error": "(reset)", "field": null}'
        elapsed = time.monotonic() - start
        stop.set()
        assert status == 408 and HEAD_S * 0.9 <= elapsed < HEAD_S + 2
        assert set(json.loads(body)) == {"error", "field"}


def test_a_trickled_body_is_answered_408_in_the_error_shape(
    server: tuple[str, int], tiny_acoustic: Any
) -> None:
    with connect(server) as s:
        stop = threading.Event()
        s.sendall(
            f"POST /v1/models/{tiny_acoustic.name}/predict HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{".encode()
        )
        threading.Thread(target=trickle, args=(s, stop, b" "), daemon=True).start()
        start = time.monotonic()
        status, headers, body = answer(s)
        elapsed = time.monotonic() - start
        stop.set()
        assert status == 408 and BODY_S * 0.9 <= elapsed < BODY_S + 2
        assert json.loads(body)["field"] == "body"
        assert headers["connection"] == "close" and "x-request-id" in headers


def test_connections_past_the_cap_get_503_and_probes_still_pass(
    server: tuple[str, int],
) -> None:
    held = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        with connect(server) as extra:
            extra.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = answer(extra)
            assert status == 503 and headers["retry-after"] == "1"
            assert "connections" in json.loads(body)["error"]
        assert get(server, "/health/live") == 200
        assert get(server, "/v2/health/live") == 200
        # Silent connections are closed when their head is overdue: the slots come back.
        time.sleep(HEAD_S + 0.3)
        assert all(closed(s) for s in held)
        assert get(server, "/v1/models") == 200
    finally:
        for s in held:
            s.close()


def test_requests_past_the_cap_get_503_probes_never() -> None:
    """The in-flight cap itself, on an app whose one route waits until released."""
    release = asyncio.Event()
    inner = FastAPI()

    @inner.get("/work")
    async def work() -> dict[str, bool]:
        await release.wait()
        return {"done": True}

    @inner.get("/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    app = AdmissionMiddleware(inner, max_requests=2)

    async def call(path: str) -> tuple[int, dict[str, str]]:
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
        await app(scope, receive, send)
        start = sent[0]
        return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}

    async def scenario() -> None:
        busy = [asyncio.create_task(call("/work")) for _ in range(2)]
        await asyncio.sleep(0.05)
        status, headers = await call("/work")
        assert status == 503 and headers["retry-after"] == "1"
        assert (await call("/health/live"))[0] == 200
        release.set()
        assert [(await t)[0] for t in busy] == [200, 200]
        assert (await call("/work"))[0] == 200  # the slots are back

    asyncio.run(scenario())
