"""Each grouping delivers what Storm's would, on the in-process host (the Ray run is in
tests/ray)."""

from __future__ import annotations

import pytest

from rayflow import testing
from rayflow.spec.model import GROUPING_TYPES
from tests.helpers import check_grouping, grouping_topology

GROUPINGS = GROUPING_TYPES


@pytest.mark.parametrize("grouping", GROUPINGS)
def test_grouping_delivers_like_storm(grouping: str) -> None:
    result = testing.run(grouping_topology(grouping))
    check_grouping(grouping, result.outputs["sink"])


@pytest.mark.parametrize("grouping", ["FIELDS", "SHUFFLE", "ALL"])
def test_grouping_survives_reordered_and_duplicated_deliveries(grouping: str) -> None:
    result = testing.run(grouping_topology(grouping), chaos=7)
    check_grouping(grouping, result.outputs["sink"])
    assert sum(t["counters"]["duplicates"] for ts in result.tasks.values() for t in ts) > 0


@pytest.mark.parametrize("grouping", GROUPINGS)
def test_grouping_delivers_like_storm_under_at_least_once(grouping: str) -> None:
    """The acking routes (rows in runs, edges per batch) route like the plain ones, and every
    spout tuple's tree completes (with deliveries reordered and duplicated)."""
    config = {"reliability": "at_least_once"}
    result = testing.run(grouping_topology(grouping, config=config), chaos=3)
    check_grouping(grouping, result.outputs["sink"])
    assert result.counter("keys", "acked") == 60 and result.counter("keys", "failed") == 0
