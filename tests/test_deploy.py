"""Deployment: docker-compose.yml, the Kubernetes manifests and the three Dockerfiles.

No Docker engine here: the files are parsed and checked for what they must hold, and each
image's entry command runs as a plain process with the environment its Dockerfile sets.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.settings import Settings
from tests.helpers_deploy import (
    DEPLOY,
    ROOT,
    Dockerfile,
    compose_env,
    load_yaml_docs,
    local_argv,
    local_env,
    serving,
)
from tests.helpers_serving import free_port

K8S = DEPLOY / "k8s"
HEALTH_READY = "/health/ready"
TWO_D = pytest.mark.parametrize("tiny_acoustic", [2], indirect=True, ids=["2d"])


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What the service would read from this environment (only FIELDSERVE_* matter)."""
    for key in [k for k in os.environ if k.startswith("FIELDSERVE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("FIELDSERVE_"):
            monkeypatch.setenv(key, value)
    return Settings()


# --- docker-compose.yml -------------------------------------------------------------------


def test_compose_has_the_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"redis", "api", "nginx", "api-gpu", "train"}
    # redis and api run by default; the rest belong to their profile.
    assert "profiles" not in services["redis"] and "profiles" not in services["api"]
    assert services["nginx"]["profiles"] == ["scale"]
    assert services["api-gpu"]["profiles"] == ["gpu"]
    assert services["train"]["profiles"] == ["train"]
    for name in ("api", "api-gpu", "train"):
        dockerfile = (
            ROOT / services[name]["build"]["context"] / services[name]["build"]["dockerfile"]
        )
        assert dockerfile.is_file(), name
    assert "models" in compose["volumes"]


def test_compose_redis_is_a_bounded_lru_cache_with_a_healthcheck(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = [expand_default(str(c)) for c in redis["command"]]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert re.fullmatch(r"\d+[kmg]b", options["--maxmemory"])
    assert options["--maxmemory-policy"] == "allkeys-lru"
    assert options["--save"] == "" and options["--appendonly"] == "no"  # no persistence
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def expand_default(text: str) -> str:
    """${VAR:-default} with nothing set in the host environment."""
    from tests.helpers_deploy import expand

    return expand(text, {})


@pytest.mark.parametrize("name", ["api", "api-gpu"])
def test_compose_api_services(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = compose["services"][name]
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    test = " ".join(api["healthcheck"]["test"])
    assert api["healthcheck"]["test"][0] == "CMD" and HEALTH_READY in test
    assert "models:/models" in api["volumes"]
    env = compose_env(api, host_env={})
    settings = settings_from(env, monkeypatch)  # every FIELDSERVE_* value is valid
    assert settings.redis_url == "redis://redis:6379/0"  # the compose service, by name
    assert str(settings.model_dir) == "/models"
    assert settings.host == "0.0.0.0" and settings.port == 8000
    assert settings.api_keys == frozenset() and settings.admin_keys == frozenset()
    assert f":{settings.port}" in api["healthcheck"]["test"][-1]
    # Keys, when the host sets them, reach the service.
    keyed = settings_from(
        compose_env(api, {"FIELDSERVE_ADMIN_KEYS": "a1,a2", "FIELDSERVE_API_KEYS": "k"}),
        monkeypatch,
    )
    assert keyed.admin_keys == frozenset({"a1", "a2"}) and keyed.api_keys == frozenset({"k"})


def test_compose_gpu_profile_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["api-gpu"]
    assert gpu["build"]["dockerfile"] == "deploy/Dockerfile.gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["environment"]["FIELDSERVE_DEVICE"] == "cuda"
    assert compose["services"]["api"]["environment"]["FIELDSERVE_DEVICE"] == "cpu"


def test_compose_scale_profile_puts_nginx_in_front_of_the_replicas(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nginx = services["nginx"]
    assert nginx["depends_on"]["api"]["condition"] == "service_healthy"
    source, target = nginx["volumes"][0].split(":")[:2]
    assert target == "/etc/nginx/nginx.conf" and (ROOT / source).resolve() == DEPLOY / "nginx.conf"
    conf = (DEPLOY / "nginx.conf").read_text()
    port = services["api"]["environment"]["FIELDSERVE_PORT"]
    # The upstream is the compose service name (one DNS answer per replica), re-resolved.
    servers = re.findall(r"^\s*server\s+(\S+)(.*);", conf, re.M)
    assert servers and servers[0][0] == f"api:{port}" and "resolve" in servers[0][1]
    assert "resolver 127.0.0.11" in conf and "proxy_pass http://fieldserve_api;" in conf
    # nginx must not refuse bodies the api accepts (its default is 1 MiB).
    size = re.search(r"client_max_body_size\s+(\d+)m;", conf)
    assert size and int(size.group(1)) * 2**20 >= Settings().max_body_bytes
    # `--scale api=3` needs each replica on its own host port: a range, or none.
    published = expand_default(services["api"]["ports"][0])
    assert re.fullmatch(r"(127\.0\.0\.1:)?\d+-\d+:\d+", published), published


def test_compose_train_profile_writes_into_the_shared_models_volume(
    compose: dict[str, Any],
) -> None:
    train = compose["services"]["train"]
    assert "models:/models" in train["volumes"]
    assert train["environment"]["FIELDSERVE_MODEL_DIR"] == "/models"
    assert train["environment"]["FIELDSERVE_API_URL"] == "http://api:8000"
    assert train["entrypoint"] == ["sh", "deploy/retrain.sh"]
    assert (ROOT / train["command"][0]).is_file()  # the default config ships in the image
    assert "deploy/retrain.sh" in " ".join(
        Dockerfile.parse(DEPLOY / "Dockerfile.train").all("COPY")
    )


# --- Kubernetes --------------------------------------------------------------------------


def kustomization(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return doc


def base_objects() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for resource in kustomization(K8S / "base")["resources"]:
        for doc in load_yaml_docs(K8S / "base" / resource):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def test_every_manifest_parses_and_is_listed() -> None:
    folders = [K8S, K8S / "base", K8S / "gpu"]
    for folder in folders:
        k = kustomization(folder)
        assert k["kind"] == "Kustomization"
        listed = [*k.get("resources", []), *(p["path"] for p in k.get("patches", []))]
        for item in listed:
            assert (folder / item).exists(), f"{folder.name}: {item}"
        files = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
        assert files <= set(listed), f"{folder}: not in kustomization.yaml: {files - set(listed)}"
        for name in files:
            for doc in load_yaml_docs(folder / name):
                assert {"apiVersion", "kind", "metadata"} <= doc.keys(), name
    assert kustomization(K8S)["resources"] == ["base"]
    assert kustomization(K8S / "gpu")["resources"] == ["../base"]


def api_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    (api,) = [c for c in containers if c["name"] == "api"]
    return dict(api)


def test_api_deployment_probes_resources_and_security(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = base_objects()
    deployment = objects[("Deployment", "fieldserve-api")]
    config = objects[("ConfigMap", "fieldserve-config")]
    pod = deployment["spec"]["template"]["spec"]
    api = api_container(deployment)
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert api["readinessProbe"]["httpGet"] == {"path": HEALTH_READY, "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= api["resources"][kind].keys(), kind
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert api["securityContext"]["allowPrivilegeEscalation"] is False
    assert api["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # The settings come from the ConfigMap, and they are valid settings.
    refs = [e["configMapRef"]["name"] for e in api["envFrom"] if "configMapRef" in e]
    assert refs == [config["metadata"]["name"]]
    assert all(key.startswith("FIELDSERVE_") for key in config["data"])
    settings = settings_from(dict(config["data"]), monkeypatch)
    assert ports["http"] == settings.port and settings.host == "0.0.0.0"
    # Redis by its Service name and port.
    redis_service = objects[("Service", "fieldserve-redis")]
    assert settings.redis_url == (
        f"redis://{redis_service['metadata']['name']}:{redis_service['spec']['ports'][0]['port']}/0"
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_service_and_hpa_target_the_api() -> None:
    objects = base_objects()
    deployment = objects[("Deployment", "fieldserve-api")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = objects[("Service", "fieldserve-api")]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = objects[("HorizontalPodAutoscaler", "fieldserve-api")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "fieldserve-api")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100
    # Utilisation is measured against the request: the container must have one.
    assert "cpu" in api_container(deployment)["resources"]["requests"]
    assert "replicas" not in deployment["spec"]  # the HPA owns the count


def test_redis_is_a_bounded_lru_cache() -> None:
    objects = base_objects()
    redis = objects[("Deployment", "fieldserve-redis")]
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    options = dict(zip(args[0::2], args[1::2], strict=True))
    assert options["--maxmemory-policy"] == "allkeys-lru"
    assert options["--save"] == "" and options["--appendonly"] == "no"
    maxmemory_mib = int(options["--maxmemory"].removesuffix("mb"))
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") and int(limit[:-2]) * 1024 > maxmemory_mib  # room for overhead
    assert container["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    assert redis["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    service = objects[("Service", "fieldserve-redis")]
    labels = redis["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["port"] == 6379


def test_gpu_overlay_asks_for_a_gpu_and_the_gpu_image() -> None:
    objects = base_objects()
    overlay = kustomization(K8S / "gpu")
    patches = {}
    for patch in overlay["patches"]:
        doc = yaml.safe_load((K8S / "gpu" / patch["path"]).read_text())
        key = (doc["kind"], doc["metadata"]["name"])
        assert key in objects, f"{patch['path']} patches nothing in the base: {key}"
        patches[key] = doc
    api = api_container(patches[("Deployment", "fieldserve-api")])
    resources = api["resources"]
    # An extended resource: requests, when given, must equal limits.
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"].get("nvidia.com/gpu", 1) == 1
    assert {"name": "FIELDSERVE_DEVICE", "value": "cuda"} in api["env"]
    (image,) = overlay["images"]
    assert image["name"] == api_container(objects[("Deployment", "fieldserve-api")])["image"]
    assert "gpu" in image["newName"]


def test_kustomize_builds_both_variants() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the layout is checked by the tests above")
    rendered = {}
    for variant in ("", "gpu"):
        done = subprocess.run(
            [kubectl, "kustomize", str(K8S / variant)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        rendered[variant] = {
            (d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(done.stdout) if d
        }
    for objects in rendered.values():
        assert all(
            d["metadata"].get("namespace") == "fieldserve"
            for (kind, _), d in objects.items()
            if kind != "Namespace"
        )
    cpu = api_container(rendered[""][("Deployment", "fieldserve-api")])
    gpu = api_container(rendered["gpu"][("Deployment", "fieldserve-api")])
    assert cpu["image"] == "fieldserve:0.1.0" and "nvidia.com/gpu" not in cpu["resources"]["limits"]
    assert gpu["image"] == "fieldserve-gpu:0.1.0"
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["readinessProbe"] == cpu["readinessProbe"]  # the patch merges, not replaces
    assert gpu["envFrom"] == cpu["envFrom"]
    hpa = rendered["gpu"][("HorizontalPodAutoscaler", "fieldserve-api")]
    assert (
        hpa["spec"]["metrics"]
        == rendered[""][("HorizontalPodAutoscaler", "fieldserve-api")]["spec"]["metrics"]
    )


# --- Dockerfiles -------------------------------------------------------------------------


def test_cpu_dockerfile_serves_without_torch_as_a_non_root_user() -> None:
    d = Dockerfile.parse(DEPLOY / "Dockerfile")
    assert re.fullmatch(r"python:3\.1[1-9]-slim", d.base_image())
    runs = " ".join(" ".join(d.all("RUN", stage)) for stage in d.stages)
    assert re.search(r"pip install \.(\s|$)", runs)  # the base install: no extras
    assert "torch" not in runs.replace("find_spec('torch')", "") and "[train" not in runs
    copies = " ".join(" ".join(d.all("COPY", stage)) for stage in d.stages)
    assert "training" not in copies
    assert any(re.fullmatch(r"(--chown=\S+ )?models /models", c) for c in d.all("COPY"))
    assert d.user().split(":")[0] not in ("0", "root")
    assert d.entry() == ["python", "-m", "app"]
    env = d.env({})
    assert env["FIELDSERVE_HOST"] == "0.0.0.0" and env["FIELDSERVE_MODEL_DIR"] == "/models"
    options, command = d.healthcheck()
    assert HEALTH_READY in " ".join(command) and {"interval", "timeout"} <= options.keys()
    assert d.all("EXPOSE") == [env["FIELDSERVE_PORT"]]


def test_gpu_dockerfile_is_cuda_13_cudnn_9_with_onnxruntime_gpu() -> None:
    d = Dockerfile.parse(DEPLOY / "Dockerfile.gpu")
    assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu24\.04", d.base_image())
    runs = " ".join(d.all("RUN"))
    assert "pip install ." in runs and "onnxruntime-gpu" in runs
    assert "pip uninstall -y onnxruntime" in runs  # never both packages in one environment
    assert "torch" not in runs
    assert d.user().split(":")[0] not in ("0", "root")
    assert d.entry() == Dockerfile.parse(DEPLOY / "Dockerfile").entry()
    assert d.env({})["FIELDSERVE_DEVICE"] in ("auto", "cuda")


def test_train_dockerfile_pins_the_project_torch() -> None:
    d = Dockerfile.parse(DEPLOY / "Dockerfile.train")
    args = d.arg_defaults()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert (
        f"torch=={args['TORCH_VERSION']}" in pyproject["project"]["optional-dependencies"]["train"]
    )
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    runs = " ".join(d.all("RUN"))
    assert '--index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"' in runs
    assert 'pip install ".[train]"' in runs
    assert d.user().split(":")[0] not in ("0", "root")
    assert d.exec_form("ENTRYPOINT") == ["python", "-m", "training"]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, roughly: a pattern excludes a path or any folder above it; the last
    matching pattern wins (`!` re-includes)."""
    parts = path.split("/")
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").removeprefix("**/")
        for i in range(1, len(parts) + 1):
            prefix, tail = "/".join(parts[:i]), parts[i - 1]
            hit = fnmatch.fnmatchcase(prefix, glob) or (
                pattern.removeprefix("!").startswith("**/") and fnmatch.fnmatchcase(tail, glob)
            )
            if hit:
                excluded = not negate
                break
    return excluded


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for needed in (
        "pyproject.toml",
        "README.md",
        "app/main.py",
        "geometry/__init__.py",
        "training/cli.py",
        "configs/acoustics-room-2d.yaml",
        "models/acoustics-room-2d/1/manifest.json",
        "models/acoustics-room-2d/1/branch.onnx",
        "deploy/retrain.sh",
    ):
        assert (ROOT / needed).exists() and not dockerignored(needed, patterns), needed
    for dropped in (
        ".git/HEAD",
        ".venv/bin/python",
        "data/acoustics-room-2d/train.h5",
        "runs/x/checkpoint.pt",
        "app/__pycache__/main.cpython-311.pyc",
        "tests/conftest.py",
        "models/acoustics-room-2d/.3.partial/branch.onnx",
    ):
        assert dockerignored(dropped, patterns), dropped


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_serving_image_sources_make_a_torch_free_wheel(dockerfile: str, tmp_path: Path) -> None:
    """What the serving images COPY before `pip install .` is enough to build the package,
    and it holds the service, not the training side."""
    d = Dockerfile.parse(DEPLOY / dockerfile)
    (stage,) = [st for st in d.stages if any("pip install ." in r for r in d.all("RUN", st))]
    context = tmp_path / "context"
    context.mkdir()
    for args in d.all("COPY", stage):
        *sources, dest = [a for a in args.split() if not a.startswith("--")]
        if dest.startswith("/"):
            continue  # not the package (the models, into /models)
        for source in sources:
            assert dest in ("./", f"./{source}"), args  # into WORKDIR, under its own name
            src = ROOT / source
            if src.is_dir():
                shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copyfile(src, context / source)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "wheels").glob("fieldserve-*.whl")
    with zipfile.ZipFile(wheel) as z:
        tops = {name.split("/")[0] for name in z.namelist()}
        metadata = next(z.read(n).decode() for n in z.namelist() if n.endswith("/METADATA"))
    assert {"app", "geometry"} <= tops and "training" not in tops
    requires = [ln for ln in metadata.splitlines() if ln.startswith("Requires-Dist:")]
    unconditional = [ln for ln in requires if "extra ==" not in ln]
    assert any("onnxruntime" in ln for ln in unconditional)
    assert not any("torch" in ln for ln in unconditional)


@TWO_D
@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_serving_image_entry_answers_ready(
    dockerfile: str, tiny_acoustic: Any, tmp_path: Path
) -> None:
    """The image's CMD, with the image's ENV (model dir and port pointed here), serves; its
    HEALTHCHECK command then passes."""
    d = Dockerfile.parse(DEPLOY / dockerfile)
    port = free_port()
    env = local_env(d.env(os.environ))
    env.update(FIELDSERVE_MODEL_DIR=str(tiny_acoustic.models), FIELDSERVE_PORT=str(port))
    assert env["FIELDSERVE_HOST"] == "0.0.0.0"
    with serving(local_argv(d.entry()), env, port, tmp_path / "log", cwd=tmp_path) as url:
        ready = httpx.get(f"{url}{HEALTH_READY}").json()
        assert ready["status"] == "ready"
        assert [m["name"] for m in ready["models"]] == [tiny_acoustic.name]
        assert ready["execution_provider"] == "CPUExecutionProvider"  # no GPU here
        _, check = d.healthcheck()
        done = subprocess.run(local_argv(check), env=env, capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
    # The same check fails when nothing answers: it is a real probe.
    done = subprocess.run(local_argv(check), env=env, capture_output=True, timeout=30)
    assert done.returncode != 0


def test_train_image_entry_runs_help(tmp_path: Path) -> None:
    d = Dockerfile.parse(DEPLOY / "Dockerfile.train")
    env = local_env(d.env(os.environ))
    assert d.entry()[-1] == "--help"
    done = subprocess.run(
        local_argv(d.entry()), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for command in ("generate", "train", "export", "export-triton"):
        assert command in done.stdout


@pytest.mark.slow
@TWO_D
def test_retrain_script_exports_a_version_and_the_api_reloads(
    tiny_acoustic: Any, tmp_path: Path
) -> None:
    """The train profile's job: generate (kept), train (resumed), export version 2 into the
    shared model folder, POST /v1/admin/reload; the running api then serves version 2."""
    work = tmp_path / "app"
    (work / "data").mkdir(parents=True)
    (work / "data" / tiny_acoustic.name).symlink_to(tiny_acoustic.data)
    shutil.copytree(tiny_acoustic.run, work / "runs" / tiny_acoustic.name)
    models = tmp_path / "models"
    shutil.copytree(tiny_acoustic.models, models)
    port = free_port()
    api_env = {
        **os.environ,
        "FIELDSERVE_MODEL_DIR": str(models),
        "FIELDSERVE_PORT": str(port),
        "FIELDSERVE_ADMIN_KEYS": "admin-secret",
    }
    app = [sys.executable, "-m", "app"]
    with serving(app, api_env, port, tmp_path / "api.log") as url:
        before = httpx.get(f"{url}/v1/models/{tiny_acoustic.name}").json()
        assert before["version"] == "1"
        job_env = local_env(
            {
                **os.environ,
                "FIELDSERVE_MODEL_DIR": str(models),
                "FIELDSERVE_API_URL": url,
                "FIELDSERVE_ADMIN_KEY": "admin-secret",
                "PYTHONPATH": str(ROOT),
            }
        )
        done = subprocess.run(
            ["sh", str(DEPLOY / "retrain.sh"), str(tiny_acoustic.config), "--device", "cpu"],
            cwd=work,
            env=job_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"added ['{tiny_acoustic.name}/2']" in done.stdout
        after = httpx.get(f"{url}/v1/models/{tiny_acoustic.name}").json()
        assert after["version"] == "2"
    assert (models / tiny_acoustic.name / "2" / "manifest.json").exists()
