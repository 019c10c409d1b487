"""Operator chaining on a real Ray: a bolt fed by a FORWARD edge runs in its producer's actor,
gives the results it gives unchained, and keeps its guarantees through kills and backpressure."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from examples.wordcount import SENTENCES
from rayflow import RunResult, Topology
from rayflow.testing import ListSink
from tests.chaining import chained_wordcount, long_chain, mutating_chain
from tests.helpers import EndlessSpout, SlowBolt

pytestmark = pytest.mark.ray


def pids(result: RunResult, component: str) -> list[int]:
    return [task["pid"] for task in sorted(result.tasks[component], key=lambda s: s["task"])]


def word_counts(result: RunResult) -> Counter[str]:
    return Counter(dict(result.outputs["sink"]))


@pytest.mark.parametrize("reliability", ["none", "at_least_once", "exactly_once"])
def test_a_chain_counts_words_as_the_unchained_topology_does(
    ray_session: str, reliability: str, tmp_path: Any
) -> None:
    n = 3_000
    expected = Counter(w for i in range(n) for w in SENTENCES[i % len(SENTENCES)].split())
    results = {}
    for chaining in (True, False):
        topology = chained_wordcount(n, reliability, chaining)
        topology.config["checkpoint.storage"] = str(tmp_path / f"checkpoints-{chaining}")
        results[chaining] = topology.run()
        assert word_counts(results[chaining]) == expected, f"chaining {chaining}"
    chained, unchained = results[True], results[False]
    assert pids(chained, "split") == pids(chained, "sentences"), "split runs in the spout's actor"
    assert len(set(pids(chained, "sentences") + pids(chained, "count"))) == 4
    assert not set(pids(unchained, "split")) & set(pids(unchained, "sentences"))
    for component in ("split", "count"):  # every member keeps its own figures
        executed = chained.components[component]["executed"]
        assert executed == unchained.components[component]["executed"]
    assert chained.components["split"]["executed"] == n


def test_checkpoints_complete_while_a_long_chain_runs(ray_session: str, tmp_path: Any) -> None:
    # Each member has a checkpoint's record and the final one awaited at once: with five members
    # in one actor those waits once took every slot the checkpoint command needed.
    storage = tmp_path / "checkpoints"
    config = {
        "reliability": "exactly_once",
        "checkpoint.interval": "200ms",
        "checkpoint.storage": str(storage),
    }
    result = long_chain(5, config).run(duration=4)
    assert result.ended == "duration"
    assert len({pid for c in result.tasks for pid in pids(result, c)}) == 1, "one actor"
    completed = list(storage.glob("*/*/chk-*/_metadata"))
    assert len(completed) >= 3, f"only {len(completed)} checkpoints completed in 4 s"


def test_a_member_never_sees_what_its_successor_does_to_what_it_emitted(
    ray_session: str,
) -> None:
    result = mutating_chain(200).run()
    assert pids(result, "mutator") == pids(result, "keeper") == pids(result, "numbers")
    assert sorted(result.outputs["kept"]) == [(n, False) for n in range(200)]
    assert sorted(result.outputs["sink"]) == [(-1, 1)] * 200, "each mutator got its own copy"


def test_backpressure_reaches_the_spout_through_a_chain(ray_session: str) -> None:
    delay, batch, credits = 0.002, 10, 2
    t = Topology("slow-chain", config={"batch.size": batch, "channel.credits": credits})
    t.spout("numbers", EndlessSpout)
    t.bolt("slow", SlowBolt, kwargs={"delay": delay}).forward("numbers")
    t.bolt("sink", ListSink).shuffle("slow")
    result = t.run(duration=2.0)
    assert pids(result, "slow") == pids(result, "numbers")
    emitted = result.counter("numbers", "emitted")
    assert emitted <= result.seconds / delay + (credits + 1) * batch
    assert result.tasks["slow"][0]["inbox_peak"] <= credits
    spout = result.tasks["numbers"][0]
    assert spout["counters"]["blocked_seconds"] > 0.3 * spout["uptime"], "mostly waiting"
    assert sorted(result.outputs["sink"]) == [(n,) for n in range(int(emitted))], "nothing lost"


KILLS = 6


def test_a_chain_killed_under_at_least_once_replays_what_it_lost(ray_session: str) -> None:
    from rayflow.launchers import embedded
    from rayflow.testing import Pause
    from tests.reliability import killing_tasks, pipeline

    n = 2_000
    items = [x for i in range(n) for x in ((i, Pause(0.05)) if i % 20 == 19 else (i,))]
    config = {"message.timeout": "3s", "max.spout.pending": 50, "task.restarts": 1000}
    topology = pipeline(n, config, fail_rate=0.01, raise_rate=0.01, items=items, chained=True)
    with killing_tasks({"numbers", "fail"}, max_kills=KILLS, every=0.5) as kills:
        result = embedded.run_topology(topology.build(), duration=180)
    assert len(kills) == KILLS, f"only {len(kills)} kills happened before the run ended"
    assert pids(result, "fail") == pids(result, "numbers"), "the chain formed"
    acked = set(msg for (msg,) in result.outputs["numbers"])
    assert acked == {i for i, item in enumerate(items) if not isinstance(item, Pause)}
    assert {m for (m,) in result.outputs["sink"]} == set(range(n)), "every message reached the sink"


def test_a_chain_killed_under_exactly_once_recovers_exact_output(
    ray_session: str, tmp_path: Any
) -> None:
    from rayflow.launchers import embedded
    from tests.exactly_once import committed_rows, counting, events, expected_rows
    from tests.reliability import killing_tasks

    fast, slow = events(1500, 30, 0.1), events(300, 10, 0.1)
    topology = counting(
        str(tmp_path), fast, slow, config={"task.restarts": 1000}, chained_sink=True
    )
    with killing_tasks({"fast", "count", "sink"}, max_kills=KILLS, every=0.7) as kills:
        result = embedded.run_topology(topology.build(), duration=180)
    assert len(kills) == KILLS, f"only {len(kills)} kills happened before the run ended"
    assert pids(result, "sink") == pids(result, "count"), "the chain formed"
    assert committed_rows(str(tmp_path)) == expected_rows(fast, slow)
