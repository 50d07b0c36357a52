"""Service settings, read from `FIELDSERVE_*` environment variables by pydantic-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Device = Literal["auto", "cpu", "cuda"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class Settings(BaseSettings):
    """Env names are FIELDSERVE_ + the upper-cased field name (FIELDSERVE_MODEL_DIR, ...)."""

    # `model_` is pydantic's protected namespace; `model_dir` is the documented name, so lift it.
    model_config = SettingsConfigDict(
        env_prefix="FIELDSERVE_", case_sensitive=False, protected_namespaces=(), frozen=True
    )

    # Root of the model repository: <model_dir>/<name>/<version>/manifest.json.
    model_dir: Path = Field(default=Path("models"))
    # Redis for the factor cache; unset = in-process cache. Declared now, used by the cache.
    redis_url: str | None = Field(default=None)
    # auto: CUDA when onnxruntime lists it (and a session really gets it), else CPU.
    device: Device = Field(default="auto")
    # Lifetime of a cached factor, seconds.
    cache_ttl_s: int = Field(default=3600, ge=1)
    # Most space-time points (receivers x times) one request may ask for.
    max_points: int = Field(default=2_000_000, ge=1)
    # Larger request bodies are answered 413 before they are read.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    # Comma-separated in the environment; unset = open. Out of repr: keys never reach a log.
    api_keys: Annotated[frozenset[str], NoDecode] = Field(default=frozenset(), repr=False)
    # onnxruntime intra-op threads per session; 0 = onnxruntime's default (one per core).
    intra_op_threads: int = Field(default=0, ge=0)
    host: str = Field(default="127.0.0.1")
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: LogLevel = Field(default="info")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("device", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value
