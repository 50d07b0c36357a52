"""Hostile callers: malformed and extreme requests, requests for gigabytes, every way of
presenting a key. Answered 4xx (or right), never 5xx, never dropped, never with null."""

from __future__ import annotations

import pytest

from benchmarks import chaos
from benchmarks.chaos import Lab
from benchmarks.hostile import GROUPS
from tests.reliability.checks import assert_clean


def test_hostile_inputs_are_refused_or_answered_right(lab: Lab) -> None:
    """Including inputs finite in float32 whose answer would not be: refused, never null."""
    assert_clean(chaos.hostile_inputs(lab, list(GROUPS)))


def test_v2_requests_for_gigabytes_stay_bounded(lab: Lab) -> None:
    assert_clean(chaos.oversized_requests(lab, ["v2"]))


@pytest.mark.xfail(
    strict=True,
    reason="app bug: FIELDSERVE_MAX_RESPONSE_BYTES bounds only the V2 routes "
    "(app/v2/catalog.py); a domain answer is not checked against it. With the default 64 MiB, "
    "POST /v1/models/acoustics-room-2d/predict {source: [0.8, 1.1], receivers: {grid: {nx: "
    "1414, ny: 1414}}, times: {start: 0, stop: 0, num: 1}} answers 200 with 102.9 MB of JSON, "
    "and POST /v1/models/airfoil-enf2enf/predict with a 1414 x 1414 query grid answers 200 "
    "with more than 64 MiB after 72 s at 1.37 GB resident; here, with the limit at 8 MiB, "
    "500 x 500 grids (acoustic, airfoil) and 1 receiver x 500,000 times answer 200 with more",
)
def test_domain_requests_for_gigabytes_stay_bounded(lab: Lab) -> None:
    assert_clean(chaos.oversized_requests(lab, ["domain"]))


def test_every_route_gives_every_credential_its_designed_status(lab: Lab) -> None:
    row = chaos.auth(lab)
    assert_clean(row)
    assert row.errors > 0 and row.correct > 0  # refusals and answers both happened
