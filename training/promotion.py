"""Promotion: which exported versions the service may answer as a model's latest.

An export is a candidate; `python -m training promote models/<name>/<v>` promotes it when its
evaluated metric is no worse than the currently promoted version's (`--force` overrides), and
`demote` takes a version back. The service's unpinned routes answer with the highest promoted
version; a pinned one is served by number whatever its state. The first version a model ever
has is promoted by its export, as there is nothing to protect yet.

The record is `models/<name>/.promoted.json`, beside the version folders, not in them: a
version stays immutable and its sha256s true. It is written to a temporary file and renamed,
under a lock on the model folder, so a reader sees the old record or the new one, never half;
and hidden, like an export in progress, so a tool that takes every visible entry of a model
folder for a version is not misled. A model folder without one is from before promotion: all
its versions were served, so all count as promoted until the first export or promote into it
writes the record. The service reads the same format (app/promotion.py):

    {"format": 1, "model": "<name>",
     "promoted": [{"version": "1", "at": "<UTC ISO 8601>", "forced": false, "reason": "...",
                   "metric": "rel_l2", "value": 0.032, "compared_with": {"version", "value"},
                   "command": "..."}, ...],
     "history": [{"action": "promote" | "demote" | ..., "version", "at", "forced", "reason",
                  "command"}, ...]}
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.common.files import atomic_path, sha256_file

RECORD = ".promoted.json"
FORMAT = 1
# Relative slack on "no worse": evaluating the same graphs again moves a metric by ~1e-7
# (float32 sums in another order); a real retrain moves it by percents.
TOLERANCE = 1e-3
_VERSION = re.compile(r"[1-9][0-9]{0,17}")


class PromotionError(Exception):
    """The version or the record cannot be acted on (not a version, a corrupt record)."""


class RefusedError(Exception):
    """Promotion (or demotion) refused on the metrics; the message gives both numbers."""


@dataclass(frozen=True)
class Score:
    metric: str
    value: float | None  # lower is better; None: nothing evaluated to compare

    def text(self) -> str:
        return "none" if self.value is None else f"{self.value:.4g}"


def score(manifest: Mapping[str, Any]) -> Score:
    """The number promotion compares: the held-out relative L2 error, lower is better.

    Acoustic DeepONets record one (`rel_l2` over each test source's space-time field);
    enf2enf records one per field (`rel_l2` {u, v, cp} on single-element test sections), and
    their mean is compared, so no field's error counts more than another's."""
    metrics = manifest.get("metrics") or {}
    rel = metrics.get("rel_l2") if isinstance(metrics, Mapping) else None
    if isinstance(rel, Mapping):
        values = [_number(v) for v in rel.values()]
        fields = ", ".join(str(k) for k in rel)
        good = [v for v in values if v is not None]
        value = sum(good) / len(good) if good and len(good) == len(values) else None
        return Score(f"rel_l2 (mean of {fields})", value)
    return Score("rel_l2", _number(rel))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# -- the record ----------------------------------------------------------------------------


def record_problems(doc: Any, model: str) -> list[str]:
    """What makes `doc` not a promotion record of `model` (empty: it is one). The service
    refuses exactly these (app/promotion.py; tests/test_promotion.py holds them together)."""
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    problems = []
    if type(doc.get("format")) is not int or doc["format"] != FORMAT:
        problems.append(f"format: must be {FORMAT}, got {doc.get('format')!r}")
    if doc.get("model") != model:
        problems.append(f"it is the record of model {doc.get('model')!r}, not {model!r}")
    promoted = doc.get("promoted")
    if not isinstance(promoted, list):
        return [*problems, "promoted: must be a list"]
    seen: set[str] = set()
    for i, entry in enumerate(promoted):
        if not isinstance(entry, dict):
            problems.append(f"promoted.{i}: must be an object")
            continue
        version = entry.get("version")
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            problems.append(f"promoted.{i}.version: must be a version number as text")
        elif version in seen:
            problems.append(f"version {version} is listed twice")
        else:
            seen.add(version)
        if not isinstance(entry.get("at"), str):
            problems.append(f"promoted.{i}.at: must be text")
        if not isinstance(entry.get("reason", ""), str):
            problems.append(f"promoted.{i}.reason: must be text")
        if not isinstance(entry.get("forced", False), bool):
            problems.append(f"promoted.{i}.forced: must be true or false")
        if not isinstance(entry.get("metric"), str | None):
            problems.append(f"promoted.{i}.metric: must be text or null")
        value = entry.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"promoted.{i}.value: must be a number or null")
    return problems


def read_record(model_root: Path) -> dict[str, Any] | None:
    """The model's record, None when it has none; PromotionError when it is corrupt."""
    path = model_root / RECORD
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PromotionError(f"cannot read {path}: {exc}") from None
    try:
        # Strict JSON, as the service parses it: NaN or Infinity would be refused there.
        doc = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise PromotionError(f"{path} is not a promotion record: not valid JSON: {exc}") from None
    problems = record_problems(doc, model_root.name)
    if problems:
        raise PromotionError(f"{path} is not a promotion record: {'; '.join(problems)}")
    doc.setdefault("history", [])
    return dict(doc)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _write(model_root: Path, record: Mapping[str, Any]) -> None:
    with atomic_path(model_root / RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # on disk before it replaces the old record


@contextmanager
def _locked(model_root: Path) -> Iterator[None]:
    """One writer at a time per model folder (an flock on the folder itself: no lock file)."""
    fd = os.open(model_root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _versions_on_disk(model_root: Path) -> list[int]:
    return sorted(
        int(p.name) for p in model_root.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)
    )


def _entry(version: int, at: str, reason: str, forced: bool, command: str, **more: Any) -> Any:
    return {
        "version": str(version),
        "at": at,
        "forced": forced,
        "reason": reason,
        **more,
        "command": command,
    }


def _adopted(
    model_root: Path,
    command: str,
    exclude: int | None = None,
    reason: str = "served before promotion was recorded",
) -> dict[str, Any]:
    """A first record for a folder that has none: every version there was being served, so
    each is recorded as promoted (but `exclude`, the one about to be judged)."""
    at = _now()
    versions = [v for v in _versions_on_disk(model_root) if v != exclude]
    record: dict[str, Any] = {"format": FORMAT, "model": model_root.name, "promoted": []}
    for v in versions:
        s = _score_of(model_root / str(v))
        record["promoted"].append(
            _entry(v, at, reason, False, command, metric=s.metric, value=s.value)
        )
    record["history"] = [
        {
            "action": "adopt",
            "version": str(v),
            "at": at,
            "forced": False,
            "reason": reason,
            "command": command,
        }
        for v in versions
    ]
    return record


def _score_of(version_dir: Path) -> Score:
    try:
        return score(json.loads((version_dir / "manifest.json").read_text()))
    except (OSError, ValueError):
        return Score("rel_l2", None)


def _promoted(record: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(e["version"]): e for e in record["promoted"]}


def _store(model_root: Path, record: dict[str, Any], entries: Mapping[int, Any]) -> None:
    record["promoted"] = [entries[v] for v in sorted(entries)]
    _write(model_root, record)


# -- the version ---------------------------------------------------------------------------


def _version_of(version_dir: Path) -> int:
    if not version_dir.is_dir():
        raise PromotionError(f"{version_dir} is not a folder: name models/<name>/<version>")
    if not _VERSION.fullmatch(version_dir.name):
        raise PromotionError(
            f"{version_dir} is not a version folder (named by an integer, no leading zeros)"
        )
    return int(version_dir.name)


def _verified_manifest(version_dir: Path) -> dict[str, Any]:
    """The manifest of a version the service would serve; PromotionError says why not."""
    try:
        manifest: dict[str, Any] = json.loads((version_dir / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise PromotionError(f"{version_dir}: no readable manifest.json ({exc})") from None
    name, version = version_dir.parent.name, version_dir.name
    if manifest.get("name") != name or str(manifest.get("version")) != version:
        raise PromotionError(
            f"{version_dir}: its manifest describes {manifest.get('name')}/"
            f"{manifest.get('version')}; the service refuses it there"
        )
    try:
        for graph in manifest["graphs"].values():
            files = {graph["file"]: graph["sha256"], **graph.get("data", {})}
            for file, sha in files.items():
                if sha256_file(version_dir / file) != str(sha).lower():
                    raise PromotionError(
                        f"{version_dir / file}: sha256 is not the manifest's; the service "
                        "refuses this version"
                    )
    except (OSError, KeyError, TypeError, AttributeError) as exc:
        raise PromotionError(f"{version_dir}: its graphs cannot be verified ({exc!r})") from None
    return manifest


# -- commands ------------------------------------------------------------------------------


def promote(
    version_dir: str | Path, force: bool = False, reason: str = "", command: str = ""
) -> str:
    """Promote one version; the message says what happened. Raises RefusedError (worse metric)
    or PromotionError (not a servable version, a corrupt record)."""
    version_dir = Path(version_dir)
    version = _version_of(version_dir)
    root, name = version_dir.parent, version_dir.parent.name
    candidate = score(_verified_manifest(version_dir))
    at = _now()
    with _locked(root):
        notes: list[str] = []
        try:
            record = read_record(root)
        except PromotionError as exc:
            if not force:
                raise PromotionError(
                    f"{exc}. Nothing changed; fix it, or promote with --force to replace it "
                    f"(the bad file is kept as {RECORD}.corrupt)"
                ) from None
            os.replace(root / RECORD, root / f"{RECORD}.corrupt")
            record = {"format": FORMAT, "model": name, "promoted": [], "history": []}
            notes.append(
                f"the corrupt record was replaced (kept as {root / (RECORD + '.corrupt')}); "
                "only this version is promoted now"
            )
        adopting = record is None
        if record is None:
            record = _adopted(root, command, exclude=version)
            adopted = ", ".join(e["version"] for e in record["promoted"]) or "none"
            notes.append(
                f"{name} had no promotion record (every version counted as promoted); one is "
                f"written now, with the other versions promoted ({adopted})"
            )
        entries = _promoted(record)
        if version in entries:
            return f"{name} version {version} is already promoted; nothing changed"
        live = [v for v in entries if (root / str(v)).is_dir()]
        current = max(live, default=None)
        against = None if current is None else _score_of(root / str(current))
        verdict = _judge(name, version, candidate, current, against)
        if verdict is not None and not force:
            if adopting:
                # Written even so: without a record this version would go on counting as
                # promoted, the very thing that was just refused.
                _store(root, record, entries)
                notes.append(f"version {version} is a candidate now")
            refusal = "; ".join([f"{verdict}; nothing promoted", *notes])
            raise RefusedError(f"{refusal}. Promote it anyway with --force")
        why = verdict or _comparison(candidate, current, against)
        text = f"{reason} ({why})" if reason else why
        compared = (
            None
            if current is None
            else {"version": str(current), "value": against.value if against else None}
        )
        entries[version] = _entry(
            version,
            at,
            text,
            verdict is not None,
            command,
            metric=candidate.metric,
            value=candidate.value,
            compared_with=compared,
        )
        record["history"] = [
            *record["history"],
            {
                "action": "promote",
                "version": str(version),
                "at": at,
                "forced": verdict is not None,
                "reason": text,
                "command": command,
            },
        ]
        _store(root, record, entries)
    latest = max(v for v in entries if (root / str(v)).is_dir())
    serves = (
        f"version {version} is the latest"
        if latest == version
        else f"version {latest} stays the latest (the highest promoted)"
    )
    forced = " (forced)" if verdict is not None else ""
    lines = [
        f"promoted {name} version {version}{forced}: {why}",
        f"{serves} once the service reloads (POST /v1/admin/reload)",
        *notes,
    ]
    return "\n".join(lines)


def _judge(
    name: str, version: int, candidate: Score, current: int | None, against: Score | None
) -> str | None:
    """Why the candidate may not be promoted, or None when it may."""
    if candidate.value is None:
        return f"{name} version {version} has no evaluated {candidate.metric} to compare"
    if current is None or against is None or against.value is None:
        return None
    if candidate.metric != against.metric:
        return (
            f"{name} version {version} is measured by {candidate.metric}, the promoted version "
            f"{current} by {against.metric}: they cannot be compared"
        )
    if candidate.value > against.value * (1 + TOLERANCE):
        return (
            f"{name} version {version} has {candidate.metric} {candidate.text()}, worse than "
            f"{against.text()} of the promoted version {current} (lower is better)"
        )
    return None


def _comparison(candidate: Score, current: int | None, against: Score | None) -> str:
    if current is None:
        return f"{candidate.metric} {candidate.text()}; no version was promoted to compare with"
    if against is None or against.value is None:
        return (
            f"{candidate.metric} {candidate.text()}; the promoted version {current} has none "
            "to compare with"
        )
    return (
        f"{candidate.metric} {candidate.text()}, no worse than {against.text()} of the "
        f"promoted version {current} (lower is better)"
    )


def demote(
    version_dir: str | Path, force: bool = False, reason: str = "", command: str = ""
) -> str:
    """Take a version's promotion back (it stays served by number). RefusedError when it would
    leave the model without a promoted version, unless `force`."""
    version_dir = Path(version_dir)
    version = _version_of(version_dir)
    root, name = version_dir.parent, version_dir.parent.name
    at = _now()
    with _locked(root):
        try:
            record = read_record(root)
        except PromotionError as exc:
            raise PromotionError(
                f"{exc}. Nothing changed; fix it, or replace it with promote --force"
            ) from None
        if record is None:
            record = _adopted(root, command)
        entries = _promoted(record)
        if version not in entries:
            return f"{name} version {version} is not promoted; nothing changed"
        rest = [v for v in entries if v != version and (root / str(v)).is_dir()]
        if not rest and not force:
            raise RefusedError(
                f"demoting {name} version {version} leaves no promoted version: the unpinned "
                "routes would answer 404. Nothing changed; demote it anyway with --force"
            )
        del entries[version]
        record["history"] = [
            *record["history"],
            {
                "action": "demote",
                "version": str(version),
                "at": at,
                "forced": not rest,
                "reason": reason,
                "command": command,
            },
        ]
        _store(root, record, entries)
    serves = f"version {max(rest)} is the latest" if rest else "no version is the latest"
    return f"demoted {name} version {version}: {serves} once the service reloads"


# -- exports -------------------------------------------------------------------------------


def before_export(model_root: Path, version: str) -> bool:
    """Called just before a new version's folder appears. True when it is the model's first
    (no record, no other version): `after_first_export` then promotes it. A folder without a
    record but with versions gets one first, so the new version arrives as a candidate."""
    with _locked(model_root):
        try:
            record = read_record(model_root)
        except PromotionError:
            return False  # refused by the service too: the new version is a candidate
        if record is not None:
            return False
        if not [v for v in _versions_on_disk(model_root) if str(v) != version]:
            return True
        _write(model_root, _adopted(model_root, "export", exclude=int(version)))
        return False


def after_first_export(version_dir: Path, command: str = "") -> None:
    root, version = version_dir.parent, int(version_dir.name)
    with _locked(root):
        try:
            if read_record(root) is not None:
                return  # written meanwhile (a concurrent export or promote): it decides
        except PromotionError:
            return
        s, at = _score_of(version_dir), _now()
        reason = "the model's first version"
        entry = _entry(version, at, reason, False, command, metric=s.metric, value=s.value)
        event = {
            "action": "promote",
            "version": str(version),
            "at": at,
            "forced": False,
            "reason": reason,
            "command": command,
        }
        record = {"format": FORMAT, "model": root.name, "promoted": [entry], "history": [event]}
        _write(root, record)


def state_of(version_dir: Path) -> str:
    """A line on a version's state, for the export command to print."""
    root, name, version = version_dir.parent, version_dir.parent.name, int(version_dir.name)
    try:
        record = read_record(root)
    except PromotionError as exc:
        return f"{version_dir} is a candidate ({exc})"
    if record is None or version in _promoted(record):
        return f"{version_dir} is promoted: the service answers it as {name}'s latest"
    entries = _promoted(record)
    live = [v for v in entries if (root / str(v)).is_dir()]
    mine = _score_of(version_dir)
    if not live:
        latest = "no version is promoted"
    else:
        theirs = _score_of(root / str(max(live)))
        latest = f"the latest stays version {max(live)} ({theirs.metric} {theirs.text()})"
    return (
        f"{version_dir} is a candidate ({mine.metric} {mine.text()}), served by number only; "
        f"{latest}. Promote it with: python -m training promote {version_dir}"
    )
