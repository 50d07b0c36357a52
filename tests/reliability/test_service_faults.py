"""The service under faults around it: Redis failing, the model repository changing under
load, the cache handing back garbage. Every answer is checked against the model's own graphs."""

from __future__ import annotations

from benchmarks import chaos
from benchmarks.chaos import Lab
from tests.reliability.checks import assert_clean


def test_redis_killed_hung_and_restarted_under_16_clients(lab: Lab) -> None:
    assert_clean(chaos.redis_outage(lab))


def test_broken_versions_are_refused_on_reload_under_load(lab: Lab) -> None:
    row = chaos.broken_versions(lab)
    assert_clean(row)
    # Each kind was dropped in and refused by name (the reload calls are judged on that).
    assert all(set(row.labels[f"reload: {kind}"]) == {"correct"} for kind in chaos.BROKEN)


def test_a_valid_version_hot_reloaded_under_load_never_mixes(lab: Lab) -> None:
    row = chaos.hot_reload(lab)
    assert_clean(row)
    # Both versions answered the latest route, so the reloads happened under load.
    answered = {label for label, c in row.labels.items() if c.get("correct")}
    assert {"latest right after reload = v1", "latest right after reload = v2"} <= answered


def test_malformed_cache_entries_are_misses(lab: Lab) -> None:
    assert_clean(chaos.corrupt_cache(lab))


def test_well_formed_foreign_cache_entries_are_misses(lab: Lab) -> None:
    assert_clean(chaos.foreign_cache(lab))
