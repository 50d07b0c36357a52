"""Snapshot -> response bodies shared by several routes (health, models, admin)."""

from __future__ import annotations

from dataclasses import asdict

import orjson

from app.repository import ModelVersion, Snapshot
from app.schemas import (
    LoadedVersion,
    ModelDetail,
    ModelSummary,
    PromotionEntry,
    RefusedVersion,
)


def loaded_versions(snapshot: Snapshot) -> list[LoadedVersion]:
    return [
        LoadedVersion(
            name=m.name,
            version=str(m.version),
            family=m.manifest.family,
            task=m.manifest.task,
            provider=m.provider,
            state=snapshot.state(m),
        )
        for m in snapshot
    ]


def refused_versions(snapshot: Snapshot) -> list[RefusedVersion]:
    return [
        RefusedVersion(name=r.name, version=r.version, path=str(r.path), reason=r.reason)
        for r in snapshot.refused
    ]


def model_summary(snapshot: Snapshot, model: ModelVersion) -> ModelSummary:
    promotion = snapshot.promotion(model.name)
    versions = snapshot.models[model.name]
    latest = snapshot.latest(model.name)
    entry = promotion.entries.get(model.version)
    return ModelSummary(
        name=model.name,
        version=str(model.version),
        latest=None if latest is None else str(latest.version),
        state=promotion.state(model.version),
        promotion=None if entry is None else PromotionEntry(**asdict(entry)),
        versions=[str(v) for v in versions],
        promoted=[str(v) for v in versions if promotion.state(v) == "promoted"],
        promotion_record=promotion.record,
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
