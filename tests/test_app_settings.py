"""Settings from the environment, and the execution provider choice they drive."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

import app.runtime
from app.errors import ManifestError
from app.main import create_app
from app.providers import CPU, CUDA, preload_cuda, provider_entries
from app.runtime import Runtime, select_providers
from app.settings import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("FIELDSERVE_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert s.model_dir == Path("models") and s.device == "auto" and s.redis_url is None
    assert s.max_points == 2_000_000 and s.max_body_bytes == 16 * 1024 * 1024
    assert s.intra_op_threads == 0 and s.api_keys == frozenset() and s.port == 8000


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "MODEL_DIR": "/srv/models",
        "DEVICE": "CPU",
        "MAX_POINTS": "10",
        "MAX_BODY_BYTES": "2048",
        "API_KEYS": "alpha, beta,,",
        "INTRA_OP_THREADS": "2",
        "REDIS_URL": "redis://cache:6379/0",
        "CACHE_TTL_S": "60",
        "PORT": "9000",
        "LOG_LEVEL": "DEBUG",
        "HOST": "0.0.0.0",
    }
    for key, value in env.items():
        monkeypatch.setenv(f"FIELDSERVE_{key}", value)
    s = Settings()
    assert s.model_dir == Path("/srv/models") and s.device == "cpu" and s.max_points == 10
    assert s.max_body_bytes == 2048 and s.api_keys == {"alpha", "beta"}
    assert s.intra_op_threads == 2 and s.redis_url == "redis://cache:6379/0"
    assert s.cache_ttl_s == 60 and s.port == 9000 and s.log_level == "debug"
    assert "alpha" not in repr(s)  # keys never reach a log line


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DEVICE", "tpu"),
        ("MAX_POINTS", "0"),
        ("INTRA_OP_THREADS", "-1"),
        ("PORT", "http"),
    ],
)
def test_bad_environment_is_refused(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(f"FIELDSERVE_{key}", value)
    with pytest.raises(ValidationError):
        Settings()


def test_provider_selection() -> None:
    assert select_providers("cpu", [CUDA, CPU]) == (CPU,)
    assert select_providers("auto", [CPU]) == (CPU,)
    assert select_providers("auto", ["TensorrtExecutionProvider", CUDA, CPU]) == (CUDA, CPU)
    assert select_providers("cuda", [CUDA, CPU]) == (CUDA, CPU)
    with pytest.raises(ManifestError, match="no CUDAExecutionProvider"):
        select_providers("cuda", [CPU])


def test_cuda_sessions_are_asked_for_full_float32() -> None:
    # TF32 would make GPU answers differ from the CPU's by 1e-3 of the field's scale.
    assert provider_entries([CUDA, CPU]) == [(CUDA, {"use_tf32": "0"}), CPU]
    assert provider_entries([CPU]) == [CPU]


def test_preloading_cuda_never_raises() -> None:
    # On a machine without CUDA it loads nothing; its report is a string either way.
    assert isinstance(preload_cuda(), str)


def test_sessions_use_the_thread_setting(tiny_acoustic: Any) -> None:
    graph = Runtime("cpu", intra_op_threads=1).load(
        "trunk", (tiny_acoustic.version_dir / "trunk.onnx").read_bytes(), ["points"], ["basis"]
    )
    assert graph.session.get_session_options().intra_op_num_threads == 1
    assert graph.provider == CPU


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider':UserWarning")
def test_a_session_that_falls_back_reports_the_cpu(
    tiny_acoustic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime-gpu without a usable GPU gives CPU sessions when asked for CUDA.

    A CPU build asked for CUDA does the same, which makes the fallback testable here: pretend
    CUDA is listed, and see that what the service reports is what the sessions got.
    """
    monkeypatch.setattr(app.runtime.ort, "get_available_providers", lambda: [CUDA, CPU])
    with TestClient(create_app(Settings(model_dir=tiny_acoustic.models, device="auto"))) as c:
        ready = c.get("/health/ready").json()
        assert ready["execution_provider"] == CPU
        assert {m["provider"] for m in ready["models"]} == {CPU}
    # Asked for the GPU explicitly: refused rather than quietly served by the CPU.
    with TestClient(create_app(Settings(model_dir=tiny_acoustic.models, device="cuda"))) as c:
        ready = c.get("/health/ready")
        assert ready.status_code == 503
        assert all("fell back" in r["reason"] for r in ready.json()["refused"])


def test_cuda_without_cuda_is_refused_with_the_reason(tiny_acoustic: Any) -> None:
    if CUDA in app.runtime.ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with TestClient(create_app(Settings(model_dir=tiny_acoustic.models, device="cuda"))) as c:
        ready = c.get("/health/ready")
        assert ready.status_code == 503
        assert "onnxruntime-gpu" in ready.json()["refused"][0]["reason"]


def test_inference_runs_off_the_event_loop(
    tiny_acoustic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    on_loop: list[bool] = []
    real = app.runtime.Graph.run

    def spy(self: Any, feeds: Any, release: bool | None = None) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(self, feeds, release)

    monkeypatch.setattr(app.runtime.Graph, "run", spy)
    dim = tiny_acoustic.dim
    with TestClient(create_app(Settings(model_dir=tiny_acoustic.models))) as c:
        r = c.post(
            f"/v1/models/{tiny_acoustic.name}/predict",
            json={"source": [0.5, 0.45, 0.4][:dim], "receivers": [[0.2] * dim], "times": [0.0]},
        )
        assert r.status_code == 200
    assert on_loop and not any(on_loop)
