"""Service settings, read from `FIELDSERVE_*` environment variables by pydantic-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Device = Literal["auto", "cpu", "cuda"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["json", "text"]


class Settings(BaseSettings):
    """Env names are FIELDSERVE_ + the upper-cased field name (FIELDSERVE_MODEL_DIR, ...)."""

    # `model_` is pydantic's protected namespace; `model_dir` is the documented name, so lift it.
    # hide_input_in_errors: a bad value is never echoed in the error (keys, Redis passwords).
    model_config = SettingsConfigDict(
        env_prefix="FIELDSERVE_",
        case_sensitive=False,
        protected_namespaces=(),
        frozen=True,
        hide_input_in_errors=True,
    )

    # Root of the model repository: <model_dir>/<name>/<version>/manifest.json.
    model_dir: Path = Field(default=Path("models"))
    # Redis for the factor cache; unset = the in-process LRU. Out of repr: it may hold a password.
    redis_url: str | None = Field(default=None, repr=False)
    # Socket (connect and read) timeout of every Redis call; a slower Redis counts as down.
    redis_timeout_s: float = Field(default=0.25, gt=0)
    # After a Redis failure, Redis is skipped (answers are computed) for this long, then probed.
    redis_backoff_s: float = Field(default=1.0, gt=0)
    # auto: CUDA when onnxruntime lists it (and a session really gets it), else CPU.
    device: Device = Field(default="auto")
    # Lifetime of a cached entry (factor or whole response), seconds.
    cache_ttl_s: int = Field(default=3600, ge=1)
    # Byte budget of the in-process cache (least recently used entries go first).
    cache_max_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    # With Redis: byte budget of the in-process tier in front of it (decoded values, least
    # recently used go first); 0 = every lookup goes to Redis.
    cache_local_max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    # Larger values (an encoded factor or response) are computed every time, never cached.
    cache_max_item_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    # Most space-time points (receivers x times) one request may ask for.
    max_points: int = Field(default=2_000_000, ge=1)
    # Largest answer of a tensor-level (V2) call, in bytes as sent (4 per binary float, at most
    # 16 as JSON text); checked from the input shapes before any graph runs (422 naming them).
    max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # Arrays one request may hold at once (its factors and its answer), checked the same way.
    max_work_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    # Larger request bodies are answered 413 before they are read.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    # A request body not complete this long after the request began is answered 408 (closed).
    body_timeout_s: float = Field(default=30.0, gt=0)
    # A request head not complete this long after its first byte: 408, connection closed.
    head_timeout_s: float = Field(default=10.0, gt=0)
    # An idle keep-alive connection is closed after this long.
    keep_alive_s: int = Field(default=5, ge=1)
    # Open connections beyond this are answered 503 (Retry-After) and closed at once.
    max_connections: int = Field(default=512, ge=1)
    # Requests in flight beyond this are answered 503 (Retry-After); health probes and
    # /metrics are never refused.
    max_concurrent_requests: int = Field(default=64, ge=1)
    # Comma-separated in the environment; unset = open. Out of repr: keys never reach a log.
    api_keys: Annotated[frozenset[str], NoDecode] = Field(default=frozenset(), repr=False)
    # Keys for /v1/admin/* (they also pass wherever an API key does). When API_KEYS or
    # ADMIN_KEYS is set, admin routes take only these.
    admin_keys: Annotated[frozenset[str], NoDecode] = Field(default=frozenset(), repr=False)
    # onnxruntime intra-op threads per session; 0 = onnxruntime's default (one per core).
    intra_op_threads: int = Field(default=0, ge=0)
    host: str = Field(default="127.0.0.1")
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: LogLevel = Field(default="info")
    # json: one JSON object per line (with request_id); text: for a terminal.
    log_format: LogFormat = Field(default="json")

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_scheme(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip() or None
        if value is not None and not str(value).startswith(("redis://", "rediss://", "unix://")):
            # Not echoed: the URL may hold a password.
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("device", "log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value
