"""Snapshot -> response bodies shared by several routes (health, models, admin)."""

from __future__ import annotations

import orjson

from app.repository import ModelVersion, Snapshot
from app.schemas import LoadedVersion, ModelDetail, ModelSummary, RefusedVersion


def loaded_versions(snapshot: Snapshot) -> list[LoadedVersion]:
    return [
        LoadedVersion(
            name=m.name,
            version=str(m.version),
            family=m.manifest.family,
            task=m.manifest.task,
            provider=m.provider,
        )
        for m in snapshot
    ]


def refused_versions(snapshot: Snapshot) -> list[RefusedVersion]:
    return [
        RefusedVersion(name=r.name, version=r.version, path=str(r.path), reason=r.reason)
        for r in snapshot.refused
    ]


def model_summary(snapshot: Snapshot, model: ModelVersion) -> ModelSummary:
    return ModelSummary(
        name=model.name,
        version=str(model.version),
        versions=[str(v) for v in snapshot.models[model.name]],
        family=model.manifest.family,
        task=model.manifest.task,
        description=model.manifest.description,
        provider=model.provider,
        # From the canonical JSON, so NaN metrics arrive as null and nothing shared is handed out.
        domain=orjson.loads(orjson.dumps(model.manifest.domain)),
        metrics=orjson.loads(orjson.dumps(model.manifest.metrics)),
    )


def model_detail(snapshot: Snapshot, model: ModelVersion) -> ModelDetail:
    return ModelDetail(
        **model_summary(snapshot, model).model_dump(), manifest=orjson.loads(model.manifest_json)
    )
