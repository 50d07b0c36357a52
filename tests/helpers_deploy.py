"""Helpers for the deployment tests: Dockerfile and compose parsing, processes serving HTTP.

There is no Docker engine in CI, so the images' entry commands run here as plain processes,
with the environment their Dockerfile sets.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"

_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def expand(text: str, env: Mapping[str, str]) -> str:
    """$VAR, ${VAR} and ${VAR:-default} as Docker (ENV) and Compose interpolate them."""

    def one(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("plain")
        value = env.get(name, "")
        if m.group("default") is not None and not value:
            return m.group("default")
        return value

    return _VAR.sub(one, text.replace("$$", "\0")).replace("\0", "$")


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV, ...
    args: str  # the rest of the (continued) line


@dataclass
class Dockerfile:
    """The instructions of a Dockerfile, by build stage (stages[0] holds the global ARGs)."""

    path: Path
    stages: list[list[Instruction]] = field(default_factory=list)

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        lines: list[str] = []
        pending = ""
        for raw in path.read_text().splitlines():
            stripped = raw.strip()
            if stripped.startswith("#") or (not stripped and not pending):
                continue  # comments (also inside continued lines) and blank lines
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            lines.append(pending + stripped)
            pending = ""
        assert not pending, f"{path}: the last line ends in a backslash"
        stages: list[list[Instruction]] = [[]]
        for line in lines:
            keyword, _, args = line.partition(" ")
            instruction = Instruction(keyword.upper(), args.strip())
            if instruction.keyword == "FROM":
                stages.append([])
            stages[-1].append(instruction)
        return cls(path, stages)

    @property
    def final(self) -> list[Instruction]:
        return self.stages[-1]

    def all(self, keyword: str, stage: list[Instruction] | None = None) -> list[str]:
        return [i.args for i in (self.final if stage is None else stage) if i.keyword == keyword]

    def arg_defaults(self) -> dict[str, str]:
        """Every ARG with a default, global and per stage."""
        out = {}
        for stage in self.stages:
            for args in self.all("ARG", stage):
                name, eq, default = args.partition("=")
                if eq:
                    out[name] = default.strip().strip('"')
        return out

    def base_image(self) -> str:
        """The final stage's FROM, with ARG defaults filled in."""
        image = self.all("FROM")[0].split()[0]
        return expand(image, self.arg_defaults())

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The final stage's environment: `base` (the host's, for PATH) plus every ENV."""
        env = dict(base)
        for args in self.all("ENV"):
            tokens = shlex.split(args)
            if tokens and "=" not in tokens[0]:  # legacy `ENV KEY value with spaces`
                env[tokens[0]] = expand(" ".join(tokens[1:]), env)
                continue
            for token in tokens:
                key, _, value = token.partition("=")
                env[key] = expand(value, env)
        return env

    def exec_form(self, keyword: str) -> list[str]:
        """The last CMD or ENTRYPOINT of the final stage, which must be in exec (JSON) form."""
        found = self.all(keyword)
        if not found:
            return []
        argv = json.loads(found[-1])
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), found[-1]
        return argv

    def entry(self) -> list[str]:
        return self.exec_form("ENTRYPOINT") + self.exec_form("CMD")

    def healthcheck(self) -> tuple[dict[str, str], list[str]]:
        """(options, exec-form command) of the final stage's HEALTHCHECK."""
        found = self.all("HEALTHCHECK")
        assert found, f"{self.path.name} has no HEALTHCHECK"
        options, _, command = found[-1].partition("CMD ")
        opts = dict(re.findall(r"--([a-z-]+)=(\S+)", options))
        argv = json.loads(command)
        assert isinstance(argv, list)
        return opts, argv

    def user(self) -> str:
        users = self.all("USER")
        assert users, f"{self.path.name} never leaves root (no USER)"
        return users[-1]


def local_argv(argv: list[str]) -> list[str]:
    """An image's command as it runs here: its `python` is this interpreter."""
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return list(argv)


def local_env(env: Mapping[str, str]) -> dict[str, str]:
    """An image's environment with this interpreter's folder first on PATH."""
    out = dict(env)
    out["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), out.get("PATH", "")])
    return out


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the service exited ({process.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} was not ready in {timeout} s:\n{log.read_text()}")
        time.sleep(0.1)


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def wait_ready(self) -> None:
        wait_ready(self.url, self.process, self.log)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def launch(
    argv: list[str], env: Mapping[str, str], port: int, log: Path, cwd: Path | None = None
) -> Service:
    """Start a service process (output to `log`); it listens on `port` once ready."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
    return Service(process, f"http://127.0.0.1:{port}", log)


@contextmanager
def serving(
    argv: list[str], env: Mapping[str, str], port: int, log: Path, cwd: Path | None = None
) -> Iterator[str]:
    """Start a service process, wait for /health/ready 200, yield its base URL, stop it."""
    service = launch(argv, env, port, log, cwd)
    try:
        service.wait_ready()
        yield service.url
    finally:
        service.stop()


def compose_env(service: Mapping[str, Any], host_env: Mapping[str, str]) -> dict[str, str]:
    """A compose service's `environment` (mapping form), interpolated as Compose would."""
    environment = service.get("environment") or {}
    assert isinstance(environment, dict), "use the mapping form of `environment`"
    return {k: expand(str(v), host_env) for k, v in environment.items()}


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
