"""A private redis-server that a chaos scenario can kill, hang and start again on its port."""

from __future__ import annotations

import signal
from pathlib import Path

import redis

from benchmarks.server import RedisProcess


class FaultyRedis(RedisProcess):
    """The benchmarks' redis-server plus the ways a real one fails."""

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to the clients; `start` brings it back (empty)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
        self.stop()

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but never answered (a hung Redis, a
        network black hole); only the service's timeouts can notice."""
        assert self.process is not None, "redis-server is not running"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None, "redis-server is not running"
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGINT
        super().stop()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)


def start_redis(workdir: Path) -> FaultyRedis:
    workdir.mkdir(parents=True, exist_ok=True)
    server = FaultyRedis(workdir)
    server.start()
    return server
