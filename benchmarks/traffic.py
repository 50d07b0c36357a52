"""Requests as a chaos scenario sends them: one call, its judge, and N clients under load.

The client is Python's http.client on keep-alive connections (the leanest, so 16 of them on
two cores leave the service its share). Every failure to get a whole answer is kept as an
`Answer` with `status` 0 and the exception's name: the judge calls it lost.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

from benchmarks.tally import Tally, Verdict

DEFAULT_TIMEOUT_S = 30.0
# A connection idle this long may have been closed by the server's keep-alive timeout while it
# sat in our pool: a failure on it is retried once on a fresh one (not a lost request).
_STALE_AFTER_S = 1.0


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (see `failure`)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names
    body: bytes = b""
    seconds: float = 0.0
    failure: str = ""
    truncated: bool = False  # the answer ran past the call's max_answer_bytes: not read on

    @property
    def answered(self) -> bool:
        return self.status > 0


Judge = Callable[[Answer], Verdict]


@dataclass(frozen=True)
class Call:
    label: str  # groups calls in the report
    method: str
    path: str
    judge: Judge
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Stop reading an answer past this many bytes (a runaway answer must not fill the client).
    max_answer_bytes: int | None = None


def lost_or_none(answer: Answer) -> Verdict | None:
    """The verdict every judge starts with: no answer or a 5xx is lost (a 503 that sheds load
    with Retry-After is a designed refusal)."""
    if not answer.answered:
        return Verdict("lost", f"no answer ({answer.failure})")
    if answer.status == 503 and "retry-after" in answer.headers:
        return Verdict("errors")
    if answer.status >= 500:
        return Verdict("lost", f"{answer.status} {answer.body[:120]!r}")
    return None


class Connection:
    """One keep-alive connection that reconnects after a failure."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0
        self.retries = 0

    def _open(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, call: Call) -> Answer:
        reused = self._conn is not None
        idle = time.monotonic() - self._last_used
        answer = self._once(call)
        if not answer.answered and reused and idle > _STALE_AFTER_S:
            self.retries += 1
            answer = self._once(call)
        self._last_used = time.monotonic()
        return answer

    def _once(self, call: Call) -> Answer:
        t0 = time.perf_counter()
        try:
            if self._conn is None:
                self._conn = self._open()
            headers = dict(call.headers)
            if call.body is not None:
                headers.setdefault("Content-Type", "application/json")
            self._conn.request(call.method, call.path, body=call.body, headers=headers)
            response = self._conn.getresponse()
            body, truncated = _read(response, call.max_answer_bytes)
            answer = Answer(
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                body,
                time.perf_counter() - t0,
                truncated=truncated,
            )
            if response.will_close or truncated:
                self.close()
            return answer
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return Answer(0, seconds=time.perf_counter() - t0, failure=type(exc).__name__)


def _read(response: http.client.HTTPResponse, limit: int | None) -> tuple[bytes, bool]:
    if limit is None:
        return response.read(), False
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = response.read(1 << 20)
        if not chunk:
            return b"".join(parts), False
        size += len(chunk)
        if size > limit:
            return b"".join(parts), True
        parts.append(chunk)


def judged(conn: Connection, call: Call, tally: Tally) -> Answer:
    """Send one call, judge its answer into the tally, and return the answer."""
    answer = conn.send(call)
    tally.add(call.label, call.judge(answer))
    return answer


class Load:
    """`clients` threads, each sending `next_call(rng)` after every answer until closed."""

    def __init__(
        self,
        base_url: str,
        next_call: Callable[[random.Random], Call],
        tally: Tally,
        clients: int = 16,
        seed: int = 0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url
        self.next_call = next_call
        self.tally = tally
        self.clients = clients
        self.seed = seed
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.crashes: list[str] = []

    def _worker(self, i: int) -> None:
        rng = random.Random(self.seed * 1000 + i)
        conn = Connection(self.base_url, self.timeout_s)
        try:
            while not self._stop.is_set():
                judged(conn, self.next_call(rng), self.tally)
        except Exception as exc:  # a bug of the client must show, not end a thread silently
            self.crashes.append(f"client {i}: {type(exc).__name__}: {exc}")
            raise
        finally:
            conn.close()

    def __enter__(self) -> Load:
        for i in range(self.clients):
            t = threading.Thread(target=self._worker, args=(i,), daemon=True, name=f"load-{i}")
            t.start()
            self._threads.append(t)
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout_s + 5)
        if self.crashes and t is None:
            raise RuntimeError(f"load clients crashed: {self.crashes}")
