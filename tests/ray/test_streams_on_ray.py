"""The Streams API on a real Ray: the same results as in process, fused or not; keyed state of
map_state and windows (on both state backends) through task kills under exactly-once (exact
committed output)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from examples.wordcount import SENTENCES
from rayflow import Flow, testing
from tests.exactly_once import expected_rows
from tests.streams_parts import (
    committed_items,
    counting_flow,
    per_second_flow,
    timed_events,
)

pytestmark = pytest.mark.ray

KILLS = 5


def wordcount(n: int, parallelism: int, fused: bool, reliability: str) -> Flow:
    flow = Flow(f"streams-wc-{fused}", config={"reliability": reliability, "batch.size": 50})
    sentences = flow.source([SENTENCES[i % 5] for i in range(n)], parallelism=parallelism)
    # Another parallelism after the source puts an exchange in front of flat_map: unfused.
    words = sentences.flat_map(str.split, parallelism=parallelism if fused else parallelism + 1)
    words.key_by(lambda w: w).count_final().collect("counts")
    words.filter(lambda w: len(w) > 4).map(str.upper).collect("long")
    return flow


@pytest.mark.parametrize("reliability", ["none", "at_least_once", "exactly_once"])
def test_fused_and_unfused_flows_give_the_results_of_the_in_process_run(
    ray_session: str, reliability: str, tmp_path: Any
) -> None:
    n = 2_000
    expected = Counter(w for i in range(n) for w in SENTENCES[i % 5].split())
    runs = {}
    for fused in (True, False):
        flow = wordcount(n, 2, fused, reliability)
        flow.config["checkpoint.storage"] = str(tmp_path / f"checkpoints-{fused}")
        runs[fused] = flow.run()
        assert dict(runs[fused].outputs["counts"]) == expected, f"fused={fused}"
    in_process = testing.run(wordcount(n, 2, True, "none"))
    for result in runs.values():
        assert sorted(result.outputs["long"]) == sorted(in_process.outputs["long"])
    fused_ids = set(runs[True].components)
    assert "source.flat_map.key_by.filter.map" in fused_ids, fused_ids
    assert "flat_map.key_by.filter.map" in set(runs[False].components)


def test_map_state_survives_killed_tasks_under_exactly_once(
    ray_session: str, tmp_path: Any
) -> None:
    from rayflow.launchers import embedded
    from tests.exactly_once import events
    from tests.reliability import killing_tasks

    items = events(1500, 30, 0.1)
    flow = counting_flow(str(tmp_path), items, **{"task.restarts": 1000})
    with killing_tasks({"running", "words.by_word", "sink"}, max_kills=KILLS, every=0.7) as kills:
        result = embedded.run_topology(flow.topology().build(), duration=180)
    assert len(kills) == KILLS, f"only {len(kills)} kills happened before the run ended"
    assert result.ended == "finished"
    assert committed_items(str(tmp_path)) == expected_rows(items)


@pytest.mark.parametrize(
    "by, backend", [("window", "memory"), ("window", "rocksdb"), ("process", "rocksdb")]
)
def test_per_second_counts_survive_killed_tasks_under_exactly_once(
    ray_session: str, tmp_path: Any, by: str, backend: str
) -> None:
    """A window's accumulators, or process's map state and per-key event-time timers (kept per
    timestamp), through kills: dicts on memory, RocksDB entries on rocksdb; every (word, second)
    count is committed once, exactly."""
    from rayflow.launchers import embedded
    from tests.reliability import killing_tasks

    items = timed_events(1200, 40, 0.1)
    config = {"task.restarts": 1000, "state.backend": backend}
    flow = per_second_flow(str(tmp_path), items, by, **config)
    expected = Counter()
    for word, ts in (i for i in items if isinstance(i, tuple)):
        expected[(word, ts - ts % 1000)] += 1
    killed = {"per_second.map", "events.with_timestamps.key_by"}
    with killing_tasks(killed, max_kills=KILLS, every=0.7) as kills:
        result = embedded.run_topology(flow.topology().build(), duration=180)
    assert len(kills) == KILLS, f"only {len(kills)} kills happened before the run ended"
    assert result.ended == "finished"
    committed = committed_items(str(tmp_path))
    assert committed == Counter({(w, start, n): 1 for (w, start), n in expected.items()})


def test_map_async_loses_nothing_when_its_task_dies_under_at_least_once(
    ray_session: str,
) -> None:
    from rayflow.launchers import embedded
    from rayflow.testing import Pause, TestingSpout
    from tests.reliability import killing_tasks
    from tests.streams_parts import lookup

    n = 1500
    items = [x for i in range(n) for x in ((i, Pause(0.05)) if i % 25 == 24 else (i,))]
    config = {"reliability": "at_least_once", "message.timeout": "3s", "task.restarts": 1000}
    flow = Flow("async-kills", config={**config, "batch.size": 20})
    numbers = flow.source(TestingSpout, kwargs={"items": items}, name="numbers")
    numbers.map_async(lookup, name="lookup").collect("out")
    with killing_tasks({"lookup"}, max_kills=3, every=0.7) as kills:
        result = embedded.run_topology(flow.topology().build(), duration=180)
    assert len(kills) == 3, f"only {len(kills)} kills happened before the run ended"
    assert set(result.outputs["out"]) == set(range(n))
