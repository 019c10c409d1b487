"""End-to-end on a real local Ray: exact results, groupings, backpressure, errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from examples.wordcount import SENTENCES, build
from rayflow import TaskError, Topology, testing
from rayflow.testing import ListSink, TestingSpout
from tests.helpers import (
    BrokenPrepare,
    EndlessSpout,
    FailingBolt,
    SlowBolt,
    check_grouping,
    grouping_topology,
)
from tests.tls import make_ca_and_cert

pytestmark = pytest.mark.ray


def expected_counts(sentences: int) -> Counter[str]:
    return Counter(w for i in range(sentences) for w in SENTENCES[i % len(SENTENCES)].split())


def all_counts(topology: Topology, **run: object) -> Counter[str]:
    # TopWords keeps ten; ask for every word so the whole count can be compared.
    spec = topology.build()
    top = spec.component("top")
    object.__setattr__(top, "kwargs", {"n": 1000})
    result = Topology.from_spec(spec).run(**run)  # type: ignore[arg-type]
    return Counter(dict(result.outputs["top"]))


@pytest.mark.parametrize("parallelism", [1, 3])
def test_wordcount_counts_are_exact(ray_session: str, parallelism: int) -> None:
    assert all_counts(build(limit=20_000, parallelism=parallelism)) == expected_counts(20_000)


def test_wordcount_is_exact_over_ray_actor_calls_too(ray_session: str) -> None:
    topology = build(limit=20_000, parallelism=2)
    topology.config["channel.transport"] = "ray"
    topology.config["batch.size"] = 64  # many batches: reordering by Ray shows up
    assert all_counts(topology) == expected_counts(20_000)


def test_wordcount_is_exact_over_mutual_tls_channels(ray_session: str, tmp_path: Path) -> None:
    files = make_ca_and_cert(tmp_path, "cluster")
    topology = build(limit=5_000, parallelism=2)
    topology.config.update(
        {
            "channel.tls": True,
            "channel.tls.cert": files.cert,
            "channel.tls.key": files.key,
            "channel.tls.ca": files.ca,
        }
    )
    assert all_counts(topology) == expected_counts(5_000)


def test_the_same_topology_gives_the_same_result_in_process_and_on_ray(ray_session: str) -> None:
    topology = grouping_topology("FIELDS")
    local = testing.run(topology)
    on_ray = topology.run()
    assert sorted(local.outputs["sink"]) == sorted(on_ray.outputs["sink"])
    assert local.components["tag"]["executed"] == on_ray.components["tag"]["executed"] == 60


@pytest.mark.parametrize(
    "grouping",
    [
        "SHUFFLE",
        "FIELDS",
        "ALL",
        "GLOBAL",
        "DIRECT",
        "LOCAL_OR_SHUFFLE",
        "PARTIAL_KEY",
        "CUSTOM",
        "FORWARD",
    ],
)
def test_grouping_on_ray_delivers_like_storm(ray_session: str, grouping: str) -> None:
    check_grouping(grouping, grouping_topology(grouping).run().outputs["sink"])


def test_a_slow_bolt_throttles_the_spout_on_ray(ray_session: str) -> None:
    delay, batch, credits = 0.002, 10, 2
    t = Topology("slow", config={"batch.size": batch, "channel.credits": credits})
    t.spout("numbers", EndlessSpout)
    t.bolt("slow", SlowBolt, kwargs={"delay": delay}).shuffle("numbers")
    t.bolt("sink", ListSink).shuffle("slow")
    result = t.run(duration=2.0)
    emitted = result.counter("numbers", "emitted")
    assert result.ended == "duration"
    assert emitted <= result.seconds / delay + (credits + 1) * batch
    assert result.tasks["slow"][0]["inbox_peak"] <= credits
    spout = result.tasks["numbers"][0]
    assert spout["counters"]["blocked_seconds"] > 0.3 * spout["uptime"], "mostly waiting"
    assert sorted(result.outputs["sink"]) == [(n,) for n in range(int(emitted))], "nothing lost"


def test_user_errors_on_ray(ray_session: str) -> None:
    t = Topology("failing")
    t.spout("numbers", TestingSpout, args=(list(range(50)),))
    t.bolt("maybe", FailingBolt, kwargs={"every": 5}, parallelism=2).shuffle("numbers")
    t.bolt("sink", ListSink).shuffle("maybe")
    result = t.run()
    assert sorted(result.outputs["sink"]) == [(n,) for n in range(50) if n % 5]
    assert result.counter("maybe", "failed") == 10
    errors = [e for task in result.tasks["maybe"] for e in task["errors"]]
    assert any("raise ValueError" in e["traceback"] for e in errors)


def test_a_failing_prepare_on_ray_raises_task_error(ray_session: str) -> None:
    t = Topology("broken")
    t.spout("numbers", TestingSpout, args=([1, 2],))
    t.bolt("db", BrokenPrepare, parallelism=2).shuffle("numbers")
    with pytest.raises(TaskError) as info:
        t.run()
    assert info.value.component == "db"
    assert "cannot connect to the database" in info.value.traceback_text


def test_the_watchdog_names_a_stuck_component(
    ray_session: str, caplog: pytest.LogCaptureFixture
) -> None:
    from rayflow.testing import Pause
    from tests.helpers import StuckOnce

    t = Topology("stuck", config={"stall.timeout": "2s", "batch.linger.ms": 1})
    items = [x for n in range(6) for x in (n, Pause(0.1))]
    t.spout("numbers", TestingSpout, args=(items,))
    t.bolt("slowpoke", StuckOnce, kwargs={"seconds": 6.0}).shuffle("numbers")
    t.bolt("sink", ListSink).shuffle("slowpoke")
    with caplog.at_level("WARNING", logger="rayflow.run"):
        result = t.run()
    assert sorted(result.outputs["sink"]) == [(n,) for n in range(6)]
    warnings = [r.getMessage() for r in caplog.records if "no progress" in r.getMessage()]
    assert warnings and "slowpoke[0] takes no input (numbers[0] wait on it)" in warnings[0]


def test_a_row_that_cannot_be_sent_stops_the_run_naming_the_channel(ray_session: str) -> None:
    import threading

    from rayflow import Spout

    class LockSpout(Spout):
        outputs = ["lock"]

        def next_tuple(self) -> None:
            self.emit([threading.Lock()])
            self.finish()

    t = Topology("unpicklable")
    t.spout("locks", LockSpout)
    t.bolt("sink", ListSink).shuffle("locks")
    with pytest.raises(TaskError) as info:
        t.run()
    assert info.value.component == "locks"
    assert "sending to sink[0] failed" in str(info.value) and "pickle" in str(info.value)


def test_keyed_state_on_ray(ray_session: str) -> None:
    from tests.api.test_state import WORDS, counting

    result = counting().run()
    final: dict[str, int] = {}
    for word, count, seen, parity in result.outputs["sink"]:
        assert count == seen == sum(parity.values())
        final[word] = max(final.get(word, 0), count)
    assert final == dict(Counter(WORDS))
