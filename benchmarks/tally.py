"""What a chaos scenario counts: each answer judged correct, error, wrong or lost.

correct  the designed answer, its numbers checked against an in-process reference
errors   a clean refusal the design calls for (a 4xx naming the field, a 503 shedding load)
wrong    an answer that is not the designed one: a 200 with wrong numbers or mixed
         versions, a 200 where a refusal was designed, a refusal of a valid request
lost     no answer: connection dropped, timed out, or a 5xx
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["correct", "errors", "wrong", "lost"]
OUTCOMES: tuple[Outcome, ...] = ("correct", "errors", "wrong", "lost")
# A scenario that goes badly wrong would otherwise fill the report with one story told a
# thousand times: the first few of each kind say what happened, the counts say how often.
_NOTES_PER_KIND = 3


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    why: str = ""  # for wrong and lost: what was seen, short


CORRECT = Verdict("correct")
REFUSED = Verdict("errors")


@dataclass
class Tally:
    """Thread-safe counts of one scenario; `notes` keeps the first examples of each failure."""

    counts: Counter[str] = field(default_factory=Counter)
    by_label: dict[str, Counter[str]] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    measures: dict[str, Any] = field(default_factory=dict)
    _seen: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, label: str, verdict: Verdict) -> None:
        with self._lock:
            self.counts[verdict.outcome] += 1
            self.by_label.setdefault(label, Counter())[verdict.outcome] += 1
            if verdict.outcome in ("wrong", "lost"):
                kind = f"{verdict.outcome}:{label}:{verdict.why[:60]}"
                self._seen[kind] += 1
                if self._seen[kind] <= _NOTES_PER_KIND:
                    self.examples.append(f"{verdict.outcome} {label}: {verdict.why}")

    def note(self, text: str) -> None:
        """A measurement or an observation that is not a failure (memory trend, phases)."""
        with self._lock:
            self.remarks.append(text)

    @property
    def sent(self) -> int:
        return sum(self.counts.values())

    def row(self, scenario: str, seconds: float) -> Row:
        with self._lock:
            failing = {
                label: dict(c) for label, c in self.by_label.items() if c["wrong"] or c["lost"]
            }
            notes = [*self.remarks, *self.examples]
            if failing:
                notes.append(f"failing labels: {failing}")
            return Row(
                scenario=scenario,
                sent=self.sent,
                correct=self.counts["correct"],
                errors=self.counts["errors"],
                wrong=self.counts["wrong"],
                lost=self.counts["lost"],
                seconds=round(seconds, 1),
                notes=notes,
                labels={label: dict(c) for label, c in sorted(self.by_label.items())},
                measures=dict(self.measures),
            )


@dataclass(frozen=True)
class Row:
    scenario: str
    sent: int
    correct: int
    errors: int
    wrong: int
    lost: int
    seconds: float
    notes: list[str]
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    measures: dict[str, Any] = field(default_factory=dict)  # numbers beside the counts

    @property
    def ok(self) -> bool:
        return self.wrong == 0 and self.lost == 0 and self.sent > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "sent": self.sent,
            "correct": self.correct,
            "errors": self.errors,
            "wrong": self.wrong,
            "lost": self.lost,
            "seconds": self.seconds,
            "notes": self.notes,
            "labels": self.labels,
            "measures": self.measures,
        }

    def failures(self) -> str:
        """What a failing test prints: the counts and the examples."""
        return (
            f"{self.scenario}: sent {self.sent}, correct {self.correct}, errors {self.errors}, "
            f"wrong {self.wrong}, lost {self.lost}\n" + "\n".join(self.notes)
        )
