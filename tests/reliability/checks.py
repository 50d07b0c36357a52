"""What every reliability test asserts of its scenario's row."""

from __future__ import annotations

from benchmarks.tally import Row


def assert_clean(row: Row) -> None:
    """Something was sent, and no answer was wrong or lost; the row's notes on failure."""
    assert row.sent > 0, row.failures()
    assert row.wrong == 0 and row.lost == 0, row.failures()
