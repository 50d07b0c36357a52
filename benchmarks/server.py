"""The service under test as a child process (`python -m app`) and a private redis-server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, MB (10^6 bytes)."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) * 1024 / 1e6, 1)  # kB -> MB
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Child:
    """A child process whose output goes to a log file (a pipe nobody reads would fill up
    and stall it)."""

    name = "child"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def _fail(self, what: str) -> RuntimeError:
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        return RuntimeError(f"{self.name} {what}; last output:\n{tail}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # uvicorn and redis shut down cleanly
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class RedisProcess(_Child):
    """redis-server on a free port, no persistence (a cache only)."""

    name = "redis-server"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir / "redis.log")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> str | None:
        return shutil.which("redis-server")

    def start(self) -> RedisProcess:
        exe = self.available()
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self._spawn(
            [
                exe,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--maxmemory", "512mb",
                "--maxmemory-policy", "allkeys-lru",
            ]
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise self._fail("did not start")
            time.sleep(0.05)


class ServerProcess(_Child):
    """`python -m app` on a free port with the given FIELDSERVE_* settings."""

    name = "fieldserve"

    def __init__(self, workdir: Path, model_dir: Path, settings: dict[str, str] | None = None):
        super().__init__(workdir / f"server-{free_port()}.log")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.settings = {
            "FIELDSERVE_MODEL_DIR": str(model_dir),
            "FIELDSERVE_HOST": "127.0.0.1",
            "FIELDSERVE_PORT": str(self.port),
            **(settings or {}),
        }
        self.start_argv = [sys.executable, "-m", "app"]

    def start(self, timeout_s: float = 120.0) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDSERVE_")}
        if os.environ.get("BENCHMARKS_SET_OPENBLAS"):
            env.pop("OPENBLAS_NUM_THREADS", None)  # set for the raw side only (__main__)
        env.update(self.settings)
        self._spawn(self.start_argv, env)
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=5) as client:
            while True:
                try:
                    r = client.get("/health/ready")
                    if r.status_code == 200:
                        return self
                    if r.status_code == 503:
                        raise self._fail(f"serves no model: {r.text[:1000]}")
                except httpx.TransportError:
                    pass
                assert self.process is not None
                if self.process.poll() is not None:
                    raise self._fail("exited")
                if time.monotonic() > deadline:
                    raise self._fail("did not become ready")
                time.sleep(0.1)

    def rss(self) -> dict[str, float]:
        return rss_mb(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)
