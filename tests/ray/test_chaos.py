"""Chaos, bounded in time: twenty random task kills under at-least-once lose no message, and
twenty under exactly-once leave the committed output exact (nothing lost, nothing doubled)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from rayflow.testing import Pause
from tests.exactly_once import committed_rows, counting, events, expected_rows
from tests.reliability import killing_tasks, pipeline

pytestmark = pytest.mark.ray

KILLS = 20
LOTS = {"task.restarts": 1000}  # kills come faster than any reset-after: never give up here


def test_twenty_kills_under_at_least_once_lose_nothing(ray_session: str) -> None:
    from rayflow.launchers import embedded

    n = 6_000
    items = [x for i in range(n) for x in ((i, Pause(0.05)) if i % 20 == 19 else (i,))]
    config = {"message.timeout": "3s", "max.spout.pending": 50, **LOTS}
    topology = pipeline(n, config, fail_rate=0.01, raise_rate=0.01, items=items)
    with killing_tasks({"numbers", "fail", "raise", "sink"}, max_kills=KILLS, every=0.5) as kills:
        result = embedded.run_topology(topology.build(), duration=240)
    assert len(kills) == KILLS, f"only {len(kills)} kills happened before the run ended"
    assert result.ended == "finished"
    acked = set(msg for (msg,) in result.outputs["numbers"])
    messages = {i for i, item in enumerate(items) if not isinstance(item, Pause)}
    assert acked == messages, "every message (its id at the spout) acked despite the kills"
    assert {m for (m,) in result.outputs["sink"]} == set(range(n)), "every message reached the sink"


def test_twenty_kills_under_exactly_once_leave_exact_output(
    ray_session: str, tmp_path: Path
) -> None:
    from rayflow.launchers import embedded

    fast, slow = events(3000, 30, 0.1), events(600, 10, 0.1)
    topology = counting(str(tmp_path), fast, slow, count_parallelism=2, config=LOTS)
    with killing_tasks({"fast", "slow", "count", "sink"}, max_kills=KILLS, every=0.7) as kills:
        embedded.run_topology(topology.build(), duration=300)
    assert len(kills) == KILLS, f"only {len(kills)} kills happened before the run ended"
    assert committed_rows(str(tmp_path)) == expected_rows(fast, slow)
    assert not glob.glob(os.path.join(tmp_path, "files", ".*")), "no staged file left behind"
