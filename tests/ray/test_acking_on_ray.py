"""At-least-once on a real local Ray: nothing lost, max spout pending, the acker round trip."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.reliability import pipeline

pytestmark = pytest.mark.ray


def test_nothing_is_lost_on_ray_when_bolts_fail_and_raise(ray_session: str) -> None:
    n = 2_000
    result = pipeline(n).run()
    acked = Counter(msg for (msg,) in result.outputs["numbers"])
    assert acked == Counter(range(n)), "every message acked exactly once at its spout"
    assert {n for (n,) in result.outputs["sink"]} == set(range(n))
    assert result.counter("numbers", "failed") > 0
    assert result.counter("fail", "acked") > 0 and result.counter("raise", "failed") > 0
    assert all(task["complete_latency_ms"] > 0 for task in result.tasks["numbers"])


def test_max_spout_pending_on_ray(ray_session: str) -> None:
    result = pipeline(500, {"max.spout.pending": 8}, fail_rate=0, raise_rate=0).run()
    assert sorted(msg for (msg,) in result.outputs["numbers"]) == list(range(500))
    assert max(task["pending_peak"] for task in result.tasks["numbers"]) <= 8
