"""Deploy for real: build the images and run docker-compose, offline (issue 15).

`make deploy-test` (part of `make test`) runs this as root on a Debian machine of this kind:
Debian's docker.io engine of its own (data root, exec root, pidfile and socket in a temporary
folder, stopped by pid at the end), base images made offline with debootstrap for every FROM
and image the project names (stand-ins: no registry of container images is reachable), the
CPU, GPU and training images built from the project's own Dockerfiles, and the project's own
docker-compose.yml run with Debian's docker-compose: the default profile, the scale profile
behind nginx, the train profile, `down -v`. The Kubernetes manifests are built with
`kubectl kustomize` and their pods' containers run as the manifests say. Every step is logged
with its time; everything it made is removed at the end.

Elsewhere (a plain `pytest`) it is skipped: it needs root, the network to Debian's and PyPI's
registries, and four to six minutes on two cores.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers_docker import (
    DEBIAN_PACKAGES,
    DEPLOY,
    ROOT,
    STANDINS,
    Build,
    Compose,
    Engine,
    StandIn,
    StepError,
    Steps,
    TorchIndex,
    compose_builds,
    debootstrap,
    dockerfile_bases,
    free_port_range,
    host_ca_context,
    image_size_mb,
    import_tree,
    install_debian_packages,
    kubectl,
    kustomize_overlays,
    machine_lock,
    parallel,
    pod_docker_args,
    standin_for,
    torch_wheel,
)
from training.tiny import tiny_acoustic_config

pytestmark = pytest.mark.deploy

OPT_IN = "FIELDSERVE_DEPLOY_TEST"
MODEL = "acoustics-room-2d"
# The shipped 2-D room (2.5 x 2.5 m): the README's own request.
REQUEST = {
    "source": [0.8, 1.1],
    "receivers": [[0.5, 0.5], [1.5, 1.2]],
    "times": {"start": 0.0, "stop": 0.03, "num": 31},
}
# The images docker-compose.yml builds; the GPU one is built, not started (no GPU here).
IMAGES = ("fieldserve:cpu", "fieldserve:gpu", "fieldserve:train")


def tiny_config() -> dict[str, Any]:
    """A retraining of acoustics-room-2d small enough for seconds on two cores: a 1.2 x 1.0 m
    room, 20 steps. Its export is the model's next version in the shared volume."""
    return tiny_acoustic_config(2, MODEL)


TINY_REQUEST = {"source": [0.5, 0.5], "receivers": [[0.35, 0.3], [0.6, 0.4]], "times": [0.002]}


def predict(base: str, body: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    path = f"/v1/models/{MODEL}" + (f"/versions/{version}" if version else "") + "/predict"
    r = httpx.post(base + path, json=body, timeout=60)
    assert r.status_code == 200, f"{base}{path}: {r.status_code} {r.text[:500]}"
    answer: dict[str, Any] = r.json()
    return answer


def latest_version(base: str) -> str:
    r = httpx.get(f"{base}/v1/models/{MODEL}", timeout=30)
    assert r.status_code == 200, r.text[:500]
    return str(r.json()["version"])


def reload(base: str) -> dict[str, Any]:
    r = httpx.post(f"{base}/v1/admin/reload", timeout=120)
    assert r.status_code == 200, r.text[:500]
    report: dict[str, Any] = r.json()
    return report


@pytest.fixture
def workdir() -> Iterator[Path]:
    """The engine's folder: short (containerd's socket paths), removed by Engine.stop."""
    if os.environ.get(OPT_IN) != "1":
        pytest.skip(f"the real deployment runs with `make deploy-test` ({OPT_IN}=1), in make test")
    if os.geteuid() != 0:
        pytest.fail(
            "the real deployment test starts dockerd and installs Debian packages: run as root"
        )
    # Letters and digits only: the engine's namespace is named after this folder and refuses
    # mkdtemp's random part when it puts "_" beside "-" or at the end ("fsdeploy-_sohrfe_").
    base = Path(os.environ.get("FIELDSERVE_DEPLOY_TMP") or tempfile.gettempdir())
    path = base / f"fsdeploy{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        # Engine.stop has removed it (after unmounting what dockerd left); never cross a mount.
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def test_deploy_for_real(workdir: Path, tmp_path: Path) -> None:
    steps = Steps()
    logs = tmp_path / "logs"
    logs.mkdir()
    steps.log(f"logs of every command: {logs}")
    with machine_lock(), ExitStack() as cleanup:
        _deploy(steps, workdir, logs, cleanup)
    steps.log("timings:\n" + steps.summary())


def _deploy(steps: Steps, work: Path, logs: Path, cleanup: ExitStack) -> None:
    with steps.step("Debian packages: " + ", ".join(DEBIAN_PACKAGES)):
        installed = install_debian_packages(DEBIAN_PACKAGES, logs / "apt.log")
        steps.log(f"installed {installed}" if installed else "all already installed")

    with steps.step("kubectl kustomize: every kustomization"):
        rendered = kustomize_all(steps, work, logs)

    # The images compose builds, and every image the project names: their Dockerfiles' FROMs,
    # compose's other `image:`s, the Kubernetes images.
    compose_file = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    builds = compose_builds(compose_file)
    assert sorted(builds) == sorted(IMAGES), sorted(builds)
    named: dict[str, str] = {}
    for build in builds.values():
        for base in dockerfile_bases(build.dockerfile):
            named.setdefault(base, str(build.dockerfile.relative_to(ROOT)))
    for name, service in compose_file["services"].items():
        if "build" not in service:
            named.setdefault(service["image"], f"docker-compose.yml ({name})")
    for objects in rendered.values():
        for obj in objects:
            for c in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if not c["image"].startswith("fieldserve"):
                    named.setdefault(c["image"], "deploy/k8s")

    engine = Engine(work, steps)
    cleanup.callback(lambda: stop_engine(steps, engine))
    with steps.step("dockerd of our own"):
        engine.start()

    with steps.step("base images offline: debootstrap bookworm, sid"):
        make_bases(steps, engine, work, logs)

    with steps.step("stand-ins for the registry images"):
        standins = build_standins(steps, engine, work, named, logs)

    index = cleanup.enter_context(
        TorchIndex(torch_dir(engine, builds["fieldserve:train"], work, logs))
    )
    with steps.step("build the cpu, gpu (build only) and train images, at once"):
        # As `docker-compose build` would (context, Dockerfile, tag, args), with TORCH_INDEX_URL
        # from the environment as compose reads it, on the host's network (pip's registry).
        jobs = {}
        for image, build in builds.items():
            args = build.arguments({"TORCH_INDEX_URL": index.url})
            argv = ["build", "--network", "host", "-f", str(build.dockerfile), "-t", image]
            argv += [item for k, v in args.items() for item in ("--build-arg", f"{k}={v}")]
            log = logs / f"build-{image.split(':')[1]}.log"
            label = f"{image} ({build.dockerfile.relative_to(ROOT)})"
            jobs[label] = functools.partial(
                engine.docker, *argv, str(build.context), log=log, timeout=900
            )
        parallel(steps, jobs)
    with steps.step("gpu image: onnxruntime-gpu has CUDA"):
        done = engine.docker(
            "run",
            "--rm",
            "--network",
            "none",
            "fieldserve:gpu",
            "python",
            "-c",
            "import onnxruntime as o; print(o.__version__, o.get_available_providers())",
        )
        assert "CUDAExecutionProvider" in done.stdout, done.stdout
        steps.log(f"onnxruntime-gpu {done.stdout.strip()}")

    project = f"fsdeploy{uuid.uuid4().hex[:6]}"
    api_ports = free_port_range(10)
    lb_port = free_port_range(1)
    compose = Compose(
        engine,
        project,
        {
            "FIELDSERVE_PUBLISH": f"127.0.0.1:{api_ports}-{api_ports + 9}",
            "FIELDSERVE_LB_PUBLISH": f"127.0.0.1:{lb_port}",
            "FIELDSERVE_GPU_PUBLISH": f"127.0.0.1:{free_port_range(1)}",
        },
        logs / "compose.log",
    )
    all_profiles = ("--profile", "scale", "--profile", "train", "--profile", "gpu")
    cleanup.callback(lambda: compose(*all_profiles, "down", "-v", "--remove-orphans", check=False))

    with steps.step("compose up (redis + api) until healthy"):
        compose("up", "-d", "--no-build")
        compose.wait_healthy({"redis": 1, "api": 1})
    (api,) = compose.containers("api")
    base = f"http://127.0.0.1:{compose.host_port(api, 8000)}"

    with steps.step("cpu container: no torch, not root"):
        check_cpu_container(steps, engine, api)

    with steps.step("predict twice: miss, then hit via Redis"):
        ready = httpx.get(f"{base}/health/ready", timeout=10).json()
        assert ready["cache"]["backend"] == "redis" and ready["cache"]["status"] == "up", ready
        assert ready["execution_provider"] == "CPUExecutionProvider", ready
        first, second = predict(base, REQUEST), predict(base, REQUEST)
        assert first["cache"] == "miss" and second["cache"] == "hit", (first, second)
        assert first["pressure"] == second["pressure"] and len(first["pressure"]) == 2
        assert len(first["pressure"][0]) == 31 and any(abs(p) > 0 for p in first["pressure"][0])
        keys = compose(
            "exec", "-T", "redis", "redis-cli", "--scan", "--pattern", "fieldserve:*"
        ).stdout.split()
        assert any(k.startswith(f"fieldserve:{MODEL}:1:") for k in keys), keys
        steps.log(f"miss then hit, version {first['version']}; {len(keys)} keys in Redis")

    with steps.step("--profile scale --scale api=3 behind nginx"):
        replicas = check_scale(steps, compose, lb_port)

    with steps.step("--profile train run --rm train"):
        check_train(steps, compose, replicas, work, logs)

    with steps.step("service logs: no traceback, no error"):
        services = compose(*all_profiles, "logs", "--no-color").stdout
        (logs / "services.log").write_text(services)
        bad = [
            line
            for line in services.splitlines()
            if "Traceback" in line
            or '"level":"error"' in line
            or "[emerg]" in line
            or "Failed to persist" in line
        ]
        assert not bad, "\n".join(bad[:20])
        steps.log(f"{len(services.splitlines())} lines from the services: {logs / 'services.log'}")

    with steps.step("compose down -v: nothing left"):
        compose(*all_profiles, "down", "-v", "--remove-orphans")
        label = f"label=com.docker.compose.project={project}"
        for kind in ("ps", "volume", "network"):
            listing = ["ps", "-aq"] if kind == "ps" else [kind, "ls", "-q"]
            left = engine.docker(*listing, "--filter", label).stdout.split()
            assert not left, f"left after down -v: {kind} {left}"

    with steps.step("k8s pods' containers as the manifests say"):
        run_k8s_pods(steps, engine, rendered[DEPLOY / "k8s"], logs)

    sizes = [
        f"  {image:<44} {image_size_mb(engine, image):8.0f} MB"
        + ("  (stand-in)" * (image in standins))
        for image in [*IMAGES, *standins]
    ]
    steps.log("image sizes:\n" + "\n".join(sizes))


def stop_engine(steps: Steps, engine: Engine) -> None:
    with steps.step("stop dockerd, remove all it made"):
        engine.stop()
        assert not engine.root.exists()


def kustomize_all(steps: Steps, work: Path, logs: Path) -> dict[Path, list[dict[str, Any]]]:
    binary, origin = kubectl(work / "kubectl", logs / "kubectl.log")
    version = subprocess.run([binary, "version", "--client"], capture_output=True, text=True)
    steps.log(f"kubectl: {origin} ({' '.join(version.stdout.split())})")
    rendered = {}
    for folder in kustomize_overlays(DEPLOY / "k8s"):
        done = subprocess.run(
            [binary, "kustomize", str(folder)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"kubectl kustomize {folder}:\n{done.stderr}"
        objects = [d for d in yaml.safe_load_all(done.stdout) if d]
        kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in objects)
        steps.log(f"{folder.relative_to(ROOT)}: {len(objects)} objects: {', '.join(kinds)}")
        rendered[folder] = objects
    assert DEPLOY / "k8s" in rendered and DEPLOY / "k8s" / "gpu" in rendered, list(rendered)

    # An overlay's patches merge into the base's containers, never drop what they hold.
    def containers(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (o["metadata"]["name"], c["name"]): c
            for o in objects
            if o["kind"] == "Deployment"
            for c in o["spec"]["template"]["spec"]["containers"]
        }

    base = containers(rendered[DEPLOY / "k8s" / "base"])
    for folder, objects in rendered.items():
        for key, container in containers(objects).items():
            for field in ("env", "envFrom", "volumeMounts", "ports"):
                have = container.get(field, [])
                kept = [item for item in base[key].get(field, []) if item not in have]
                if field == "env":  # an overlay may set a base variable to another value
                    names = {e["name"] for e in have}
                    kept = [e for e in kept if e["name"] not in names]
                assert not kept, f"{folder.relative_to(ROOT)} {key} lost {field} {kept}"
    return rendered


def make_bases(steps: Steps, engine: Engine, work: Path, logs: Path) -> None:
    """Two debootstraps at once (mostly waiting on the network), each then imported."""

    def one(tag: str, suite: str, include: tuple[str, ...]) -> None:
        tree = work / f"rootfs-{suite}"
        try:
            debootstrap(suite, tree, logs / f"debootstrap-{suite}.log", include)
            import_tree(engine, tree, tag, logs / "import.log")
        finally:
            shutil.rmtree(tree, ignore_errors=True)

    parallel(
        steps,
        {
            "debootstrap --variant=minbase bookworm": functools.partial(
                one, "fieldserve-standin/debian:bookworm", "bookworm", ()
            ),
            "debootstrap --variant=minbase --include=nginx,wget sid": functools.partial(
                one, "fieldserve-standin/debian:sid-nginx", "sid", ("nginx", "wget")
            ),
        },
    )


def build_standins(
    steps: Steps, engine: Engine, work: Path, named: dict[str, str], logs: Path
) -> dict[str, StandIn]:
    context = work / "standin-context"
    shutil.copytree(STANDINS, context)
    certificates = host_ca_context(context)
    recipes: dict[str, list[str]] = {}
    standins: dict[str, StandIn] = {}
    for image in named:
        standin = standin_for(image)
        standins[image] = standin
        recipes.setdefault(standin.recipe, []).append(image)

    def build(recipe: str, images: list[str]) -> None:
        tag = f"fieldserve-standin/{recipe}"
        engine.docker(
            "build",
            "--network",
            "host",
            "-f",
            str(context / f"{recipe}.Dockerfile"),
            "-t",
            tag,
            str(context),
            log=logs / f"standin-{recipe}.log",
        )
        for image in images:
            engine.docker("tag", tag, image)

    parallel(
        steps,
        {
            f"{recipe}.Dockerfile -> {', '.join(images)}": functools.partial(build, recipe, images)
            for recipe, images in recipes.items()
        },
    )
    shutil.rmtree(context)
    lines = []
    for image, standin in standins.items():
        version = ""
        if standin.version_command:
            done = engine.docker(
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                standin.version_command[0],
                image,
                *standin.version_command[1:],
            )
            version = " ".join((done.stdout + done.stderr).split())
        kind = "stand-in" if standin.faithful else "stand-in, BUILD ONLY"
        lines.append(
            f"  {image} ({named[image]}) is a {kind}: {version + '; ' if version else ''}"
            f"{standin.differs}"
        )
    steps.log(
        f"no registry of container images is reachable; every base image here is made "
        f"offline (this machine's {certificates} CA certificates inside):\n" + "\n".join(lines)
    )
    return standins


def torch_dir(engine: Engine, build: Build, work: Path, logs: Path) -> Path:
    """The torch wheel the training image's Dockerfile pins, for the stand-in's Python."""
    dockerfile = build.dockerfile.read_text()
    (version,) = [
        line.split("=", 1)[1].strip()
        for line in dockerfile.splitlines()
        if line.startswith("ARG TORCH_VERSION=")
    ]
    (python_image,) = dockerfile_bases(build.dockerfile)
    done = engine.docker(
        "run",
        "--rm",
        "--network",
        "none",
        python_image,
        "python3",
        "-c",
        "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
    )
    wheel = torch_wheel(version, done.stdout.strip(), work / "wheels", logs / "torch.log")
    engine.steps.log(
        f"the training image's torch: {wheel.name} from this machine's disk, served to the "
        "build as TORCH_INDEX_URL (the PyTorch index is out of reach)"
    )
    return wheel.parent


def check_cpu_container(steps: Steps, engine: Engine, container: str) -> None:
    probe = (
        "import importlib.util, json, os, subprocess, sys;"
        "pkgs = subprocess.run([sys.executable, '-m', 'pip', 'list', '--format=json'],"
        " capture_output=True, text=True).stdout;"
        "print(json.dumps({'torch': importlib.util.find_spec('torch') is not None,"
        " 'uid': os.getuid(), 'gid': os.getgid(), 'python': sys.version.split()[0],"
        " 'packages': [p['name'].lower() for p in json.loads(pkgs)]}))"
    )
    done = engine.docker("exec", container, "python", "-c", probe)
    facts = json.loads(done.stdout)
    assert facts["torch"] is False, "torch is importable in the CPU image"
    assert not [p for p in facts["packages"] if p == "torch" or p.startswith("nvidia")], facts
    assert facts["uid"] != 0 and facts["gid"] != 0, facts
    user = engine.docker("image", "inspect", "--format", "{{.Config.User}}", "fieldserve:cpu")
    assert user.stdout.strip() == f"{facts['uid']}:{facts['gid']}", user.stdout
    steps.log(
        f"no torch (nor any nvidia package) among {len(facts['packages'])} packages; "
        f"runs as uid {facts['uid']} gid {facts['gid']}; Python {facts['python']}"
    )


def check_scale(steps: Steps, compose: Compose, lb_port: int) -> dict[str, str]:
    compose("--profile", "scale", "up", "-d", "--no-build", "--scale", "api=3")
    compose.wait_healthy({"redis": 1, "api": 3, "nginx": 1})
    replicas = {
        c: f"http://127.0.0.1:{compose.host_port(c, 8000)}" for c in compose.containers("api")
    }
    urls = sorted(replicas.values())
    # A request none has seen, answered by one replica, is a hit through each other one.
    fresh = {
        "source": [0.9, 1.3],
        "receivers": [[0.6, 0.7], [1.4, 0.9], [2.0, 0.6]],
        "times": {"start": 0.0, "stop": 0.02, "num": 21},
    }
    assert predict(urls[0], fresh)["cache"] == "miss"
    for url in urls[1:]:
        assert predict(url, fresh)["cache"] == "hit", url
    lb = f"http://127.0.0.1:{lb_port}"
    assert predict(lb, fresh)["cache"] == "hit"
    # nginx spreads new requests over the replicas.
    for i in range(6):
        predict(lb, {**REQUEST, "source": [0.7 + 0.05 * i, 0.9]})
    nginx_logs = compose("logs", "--no-color", "nginx").stdout
    upstreams = {
        line.split("upstream=")[1].split()[0]
        for line in nginx_logs.splitlines()
        if "POST /v1/models" in line and "upstream=" in line
    }
    assert len(upstreams) >= 2, nginx_logs[-2000:]
    steps.log(
        f"3 replicas healthy; a miss through one was a hit through the 2 others and through "
        f"nginx; nginx sent requests to {len(upstreams)} replicas ({', '.join(sorted(upstreams))})"
    )
    return replicas


def check_train(
    steps: Steps,
    compose: Compose,
    replicas: dict[str, str],
    work: Path,
    logs: Path,
) -> None:
    config = work / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    config.chmod(0o644)
    before = {url: latest_version(url) for url in replicas.values()}
    done = compose(
        "--profile",
        "train",
        "run",
        "-T",
        "--rm",
        "-v",
        f"{config}:/app/configs/deploy-test.yaml:ro",
        "train",
        "configs/deploy-test.yaml",
        "--device",
        "cpu",
        timeout=900,
        check=False,
    )
    out = done.stdout + done.stderr
    (logs / "retrain.log").write_text(out)
    # The job promotes its export only when it is no worse than the served version: this tiny
    # one is far worse, so with promotion it stays a candidate and the job says so (exit 1).
    candidate = done.returncode != 0
    assert not candidate or "stays a candidate" in out, out[-3000:]
    # Nothing in the job falls back for want of a writable home (matplotlib, onnxruntime).
    assert "Permission denied" not in out and "MPLCONFIGDIR" not in out, out[-3000:]
    exported = [line for line in out.splitlines() if line.startswith("retrain: exported ")]
    assert exported, out[-3000:]
    version = exported[-1].rsplit("/", 1)[1]
    reloaded = [line for line in out.splitlines() if f"added ['{MODEL}/{version}']" in line]
    assert len(reloaded) == len(replicas), out[-3000:]
    steps.log(
        f"exported {MODEL}/{version} into the models volume; {len(reloaded)} replicas reloaded "
        f"it; the job exited {done.returncode}" + (" (a candidate: worse)" if candidate else "")
    )
    for url in replicas.values():
        answer = predict(url, TINY_REQUEST, version=version)
        assert answer["version"] == version and len(answer["pressure"]) == 2, answer
    latest = {url: latest_version(url) for url in replicas.values()}
    if candidate:
        assert latest == before, (before, latest)
    if set(latest.values()) != {version}:
        # A candidate, served by number only: promote it by hand (forced), then reload.
        steps.log(f"{MODEL}/{version} answers by number; latest stays {latest}; promoting it")
        promoted = compose(
            "--profile",
            "train",
            "run",
            "-T",
            "--rm",
            "--entrypoint",
            "python",
            "train",
            "-m",
            "training",
            "promote",
            f"/models/{MODEL}/{version}",
            "--force",
            "--reason",
            "deployment test",
        )
        steps.log("promote: " + " ".join(promoted.stdout.split())[-300:])
        for url in replicas.values():
            reload(url)
    after = {url: latest_version(url) for url in replicas.values()}
    assert set(after.values()) == {version}, (before, after)
    for url in replicas.values():
        assert predict(url, TINY_REQUEST)["version"] == version
    steps.log(f"every replica serves {MODEL} version {version} as latest (was {before})")


def run_k8s_pods(steps: Steps, engine: Engine, objects: list[dict[str, Any]], logs: Path) -> None:
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    config_maps = {n: o.get("data", {}) for (k, n), o in by_kind.items() if k == "ConfigMap"}
    deployments = {n: o for (k, n), o in by_kind.items() if k == "Deployment"}
    services = {n: o for (k, n), o in by_kind.items() if k == "Service"}
    network = f"fsdeploy-k8s-{uuid.uuid4().hex[:6]}"
    engine.docker("network", "create", network)
    started: list[str] = []
    try:
        api_url = ""
        # Redis first: the api's readiness reports the cache it reaches.
        for name in sorted(deployments, key=lambda n: "redis" not in n):
            options, argv, container = pod_docker_args(deployments[name], config_maps)
            image = argv[0]
            if image.startswith("fieldserve:"):
                engine.docker("tag", "fieldserve:cpu", image)
            pod_security = deployments[name]["spec"]["template"]["spec"].get("securityContext", {})
            if pod_security.get("runAsNonRoot") and "--user" not in options:
                user = engine.docker("image", "inspect", "--format", "{{.Config.User}}", image)
                assert user.stdout.strip().split(":")[0] not in ("", "0", "root"), name
            # The Service that selects this pod is its name on the network.
            labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
            aliases = [
                s
                for s, svc in services.items()
                if all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
            ]
            publish: list[str] = []
            port = None
            if container.get("readinessProbe", {}).get("httpGet"):
                port = free_port_range(1)
                publish = ["-p", f"127.0.0.1:{port}:{container['ports'][0]['containerPort']}"]
            alias_args = [a for s in aliases for a in ("--network-alias", s)]
            done = engine.docker(
                "run",
                "-d",
                "--name",
                f"{network}-{name}",
                "--network",
                network,
                *alias_args,
                *publish,
                *options,
                *argv,
            )
            started.append(done.stdout.strip())
            probe = container["readinessProbe"]
            deadline = time.monotonic() + 90
            while True:
                if "exec" in probe:
                    ok = (
                        engine.docker(
                            "exec", started[-1], *probe["exec"]["command"], check=False
                        ).returncode
                        == 0
                    )
                else:
                    try:
                        r = httpx.get(
                            f"http://127.0.0.1:{port}{probe['httpGet']['path']}", timeout=3
                        )
                        ok = r.status_code == 200
                    except httpx.TransportError:
                        ok = False
                    api_url = f"http://127.0.0.1:{port}"
                if ok:
                    break
                state = engine.docker("inspect", "--format", "{{.State.Status}}", started[-1])
                if time.monotonic() > deadline or state.stdout.strip() != "running":
                    tail = engine.docker("logs", "--tail", "30", started[-1], check=False)
                    raise StepError(
                        f"{name} not ready ({state.stdout.strip()}):\n{tail.stdout}{tail.stderr}"
                    )
                time.sleep(0.5)
            shown = [o for i, o in enumerate(options) if "-e" not in (o, options[i - 1])]
            steps.log(f"{name}: ready, run with {' '.join(shown)}")
        assert api_url, "no api pod"
        ready = httpx.get(f"{api_url}/health/ready", timeout=10).json()
        assert ready["cache"]["status"] == "up", ready
        first, second = predict(api_url, REQUEST), predict(api_url, REQUEST)
        assert (first["cache"], second["cache"]) == ("miss", "hit")
        steps.log(
            "the api pod (read-only root, uid 10001, no capabilities) reaches "
            "fieldserve-redis and answers: a miss, then a hit"
        )
        for cid in started:
            pod_logs = engine.docker("logs", cid)
            text = pod_logs.stdout + pod_logs.stderr
            (logs / f"pod-{cid[:12]}.log").write_text(text)
            assert "Traceback" not in text and '"level":"error"' not in text, text[-3000:]
            # Nothing wants to write where the read-only root filesystem forbids it.
            assert "Failed to persist" not in text and "Read-only file" not in text, text[-3000:]
    finally:
        for cid in started:
            engine.docker("rm", "-f", cid, check=False)
        engine.docker("network", "rm", network, check=False)
