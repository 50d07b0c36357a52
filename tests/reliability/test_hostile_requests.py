"""Hostile callers: malformed and extreme requests, requests for gigabytes, every way of
presenting a key. Answered 4xx (or right), never 5xx, never dropped, never with null."""

from __future__ import annotations

import pytest

from benchmarks import chaos
from benchmarks.chaos import Lab
from benchmarks.hostile import GROUPS
from tests.reliability.checks import assert_clean

NON_FINITE = pytest.mark.xfail(
    strict=True,
    reason="app bug: inputs finite in float32 whose field is not are answered 200 with null: "
    "POST /v1/models/<acoustic>/predict with times [0.0, 3e38] (or times.stop 3e38, or "
    "+-3e38/3.4e38) and POST /v1/models/airfoil-enf2enf/predict with query points [[3e38, "
    "3e38]], curves scaled by 3e38 or grid bounds +-3e38; the V2 routes refuse the same 422",
)


def test_hostile_inputs_are_refused_or_answered_right(lab: Lab) -> None:
    assert_clean(chaos.hostile_inputs(lab, [g for g in GROUPS if g != "non-finite answers"]))


@NON_FINITE
def test_answers_that_would_not_be_finite_are_refused_never_null(lab: Lab) -> None:
    assert_clean(chaos.hostile_inputs(lab, ["non-finite answers"]))


def test_requests_for_gigabytes_stay_bounded(lab: Lab) -> None:
    assert_clean(chaos.oversized_requests(lab))


def test_every_route_gives_every_credential_its_designed_status(lab: Lab) -> None:
    row = chaos.auth(lab)
    assert_clean(row)
    assert row.errors > 0 and row.correct > 0  # refusals and answers both happened
