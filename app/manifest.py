"""The parts of a version's manifest.json the service relies on, validated on load.

Only what serving needs is typed; the rest (metrics, training record, commands) is carried
through untouched for /v1/models.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.errors import ManifestError

SHA256 = r"^[0-9a-fA-F]{64}$"


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    dtype: str
    shape: tuple[int, ...]


class GraphSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    file: str
    sha256: str = Field(pattern=SHA256)
    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(min_length=1)
    # External data files of the graph (large tables kept beside it): file name -> sha256.
    data: dict[str, Annotated[str, Field(pattern=SHA256)]] = Field(default_factory=dict)

    @field_validator("file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        return _plain(value)

    @field_validator("data")
    @classmethod
    def _plain_data_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            _plain(name)
        return value


def _plain(name: str) -> str:
    # The manifest is data from disk, not trusted code: it may only name files beside it.
    if PurePath(name).name != name or name.startswith("."):
        raise ValueError(f"graph file must be a plain name in its folder, got {name!r}")
    return name


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    version: str
    family: str
    task: str
    graphs: dict[str, GraphSpec] = Field(min_length=1)
    domain: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def parse_manifest(raw: bytes) -> tuple[Manifest, bytes]:
    """Validated manifest and its canonical JSON (what /v1/models/{name} sends).

    Parsed with the stdlib: the exporter writes with json.dumps, which spells a NaN metric
    `NaN`; orjson then re-encodes it as null so clients always get valid JSON.
    """
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest.json must hold a JSON object")
    try:
        manifest = Manifest.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in exc.errors()
        )
        raise ManifestError(f"manifest.json is incomplete: {problems}") from None
    return manifest, orjson.dumps(doc)
