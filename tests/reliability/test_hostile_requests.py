"""Hostile callers: malformed and extreme requests, requests for gigabytes, every way of
presenting a key. Answered 4xx (or right), never 5xx, never dropped, never with null."""

from __future__ import annotations

from benchmarks import chaos
from benchmarks.chaos import Lab
from benchmarks.hostile import GROUPS
from tests.reliability.checks import assert_clean


def test_hostile_inputs_are_refused_or_answered_right(lab: Lab) -> None:
    """Including inputs finite in float32 whose answer would not be: refused, never null."""
    assert_clean(chaos.hostile_inputs(lab, list(GROUPS)))


def test_v2_requests_for_gigabytes_stay_bounded(lab: Lab) -> None:
    assert_clean(chaos.oversized_requests(lab, ["v2"]))


def test_domain_requests_for_gigabytes_stay_bounded(lab: Lab) -> None:
    assert_clean(chaos.oversized_requests(lab, ["domain"]))


def test_every_route_gives_every_credential_its_designed_status(lab: Lab) -> None:
    row = chaos.auth(lab)
    assert_clean(row)
    assert row.errors > 0 and row.correct > 0  # refusals and answers both happened
