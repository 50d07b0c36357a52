"""A private redis-server for the test session, and the two cache backends as a parameter.

Loaded with `pytest_plugins = ["tests.fixtures_redis"]`. redis-server must be installed
(`apt-get install redis-server`): without it the Redis tests fail, they never skip.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.helpers_serving import free_port


class RedisServer:
    """One redis-server process on a fixed port, which a test may kill and start again."""

    def __init__(self, exe: str, port: int, workdir: Path) -> None:
        self.exe, self.port, self.workdir = exe, port, workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.exe,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--maxmemory", "256mb",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        """SIGKILL: the way a crashed Redis goes, no goodbye to its clients."""
        assert self.process is not None, "not running"
        self.process.kill()
        self.process.wait(10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: a Redis that accepts connections but never answers (hung, or a network
        black hole): only timeouts can notice."""
        assert self.process is not None, "not running"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None, "not running"
        self.process.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def flush(self) -> None:
        client = self.client()
        client.flushall()
        client.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail(
            "redis-server is not installed, and the cache tests need a real one: "
            "apt-get install -y redis-server (make test installs it)",
            pytrace=False,
        )
    server = RedisServer(exe, free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    if server.process is not None:
        server.kill()


@pytest.fixture(scope="module", params=["memory", "redis"])
def cache_backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings for either cache; Redis is emptied first so every module starts cold."""
    if request.param == "memory":
        return {"redis_url": None}
    server: RedisServer = request.getfixturevalue("redis_server")
    if server.process is None:  # a test that killed it failed before starting it again
        server.start()
    server.flush()
    return {"redis_url": server.url}
