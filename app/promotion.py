"""Which versions of a model are promoted: read from `<root>/<name>/.promoted.json`.

An export is a candidate; `python -m training promote` (training/promotion.py) writes the
record, and the service only reads it, on every scan. The unpinned routes answer with the
highest promoted version; a pinned version is served by number whatever its state. The record
lives beside the version folders, not in them: a version stays immutable and its hashes true.
It is hidden, like an export in progress: tools that take every visible entry of a model
folder for a version are not misled by it.

No record at all is a repository from before promotion: its versions were all being served,
so all count as promoted (the first export or promote into it writes the record). A record
that cannot be read is refused: none of that model's versions is served as latest, every one
stays reachable by number, and every other model is untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

RECORD = ".promoted.json"
FORMAT = 1

State = Literal["promoted", "candidate"]
RecordState = Literal["recorded", "unrecorded", "refused"]


# Strict: the command that writes the record refuses the same (training/promotion.py), so a
# true for 1 or "0.5" for a number is corrupt to both.
class _Entry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    version: Annotated[StrictStr, Field(pattern=r"^[1-9][0-9]{0,17}$")]
    at: StrictStr
    reason: StrictStr = ""
    forced: StrictBool = False
    metric: StrictStr | None = None
    value: float | int | None = None


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    format: StrictInt
    model: StrictStr
    promoted: list[_Entry]

    @field_validator("format")
    @classmethod
    def _known(cls, value: int) -> int:
        if value != FORMAT:
            raise ValueError(f"must be {FORMAT} (the only format this service reads)")
        return value


@dataclass(frozen=True)
class Entry:
    at: str
    reason: str
    forced: bool
    metric: str | None
    value: float | None


@dataclass(frozen=True)
class Promotion:
    record: RecordState = "unrecorded"
    entries: Mapping[int, Entry] = field(default_factory=lambda: MappingProxyType({}))
    path: Path | None = None
    problem: str | None = None  # why a refused record was refused

    def state(self, version: int) -> State:
        if self.record == "unrecorded" or version in self.entries:
            return "promoted"
        return "candidate"


class PromotionRecordError(ValueError):
    pass


def parse(raw: bytes, model: str) -> dict[int, Entry]:
    """The promoted versions of a record's bytes; PromotionRecordError says what is wrong."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PromotionRecordError(f"not valid JSON: {exc}") from None
    try:
        record = _Record.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors()
        )
        raise PromotionRecordError(problems) from None
    # A record copied from another model's folder would promote versions it never judged.
    if record.model != model:
        raise PromotionRecordError(f"it is the record of model {record.model!r}, not {model!r}")
    entries: dict[int, Entry] = {}
    for e in record.promoted:
        if int(e.version) in entries:
            raise PromotionRecordError(f"version {e.version} is listed twice")
        entries[int(e.version)] = Entry(e.at, e.reason, e.forced, e.metric, e.value)
    return entries


def read_promotion(model_dir: Path) -> Promotion:
    path = model_dir / RECORD
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Promotion()
    except OSError as exc:
        return Promotion("refused", path=path, problem=f"cannot read {path}: {exc}")
    try:
        entries = parse(raw, model_dir.name)
    except PromotionRecordError as exc:
        return Promotion("refused", path=path, problem=f"{path} is not a promotion record: {exc}")
    return Promotion("recorded", MappingProxyType(entries), path)
