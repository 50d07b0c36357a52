"""The training CLI killed with SIGKILL: training resumes to the very weights of a run never
killed, and an export killed at any moment leaves only whole versions in the repository."""

from __future__ import annotations

from benchmarks import chaos
from benchmarks.chaos import Lab
from tests.reliability.checks import assert_clean


def test_training_killed_at_random_steps_resumes_to_the_same_weights(lab: Lab) -> None:
    row = chaos.training_killed(lab)
    assert_clean(row)
    assert row.labels["train resumed"] == {"correct": 1}, row.failures()


def test_an_export_killed_at_any_moment_leaves_no_half_version(lab: Lab) -> None:
    row = chaos.export_killed(lab)
    assert_clean(row)
    assert row.labels["service over the repository"] == {"correct": 1}, row.failures()
