"""Steady load for a while: every answer right, and the resident memory bounded."""

from __future__ import annotations

import dataclasses

from benchmarks import chaos
from benchmarks.chaos import Lab
from tests.reliability.checks import assert_clean


def test_soak_keeps_every_answer_right_and_memory_bounded(lab: Lab) -> None:
    row = chaos.soak(dataclasses.replace(lab, scale=0.02))
    assert_clean(row)
    assert row.measures["rss_mb"]["peak"] < chaos.RSS_BOUND_MB, row.measures["rss_mb"]
