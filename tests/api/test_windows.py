"""Windows and event time on the in-process host: results equal a reference computed here, with
the windows in the bolt's snapshot (``memory``) and in the task's RocksDB (``rocksdb``)."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rayflow import Topology, TopologyError, testing
from tests.windowing import (
    Events,
    Pause,
    TickCounter,
    TimerBolt,
    late_of,
    reference_sessions,
    reference_windows,
    window_topology,
    windows_of,
)


@pytest.fixture(autouse=True, params=["memory", "rocksdb"])
def state_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    if request.param == "rocksdb":
        init = Topology.__init__

        def with_backend(self: Topology, name: str, config: Any = None, **kw: Any) -> None:
            config = {"state.backend": "rocksdb", "state.rocksdb.dir": str(tmp_path / "state"),
                      **(config or {})}  # fmt: skip
            init(self, name, config, **kw)

        monkeypatch.setattr(Topology, "__init__", with_backend)
    yield request.param


WATERMARKS = {"watermark.timestamp_field": "ts", "watermark.max_out_of_orderness": "5s"}


def shuffled_events(n: int = 300, seed: int = 3) -> list[tuple[str, int]]:
    """Events over 60 s, each at most 4 s out of order (within the 5 s bound)."""
    rng = random.Random(seed)
    events = [(f"k{i % 5}", i * 200) for i in range(n)]
    out: list[tuple[str, int]] = []
    for i in range(0, n, 20):  # shuffle within blocks of 20 events (4 s)
        block = events[i : i + 20]
        rng.shuffle(block)
        out += block
    return out


@pytest.mark.parametrize(
    ("window", "reference"),
    [
        (
            {"type": "tumbling", "size": "10s", "timestamp_field": "ts"},
            lambda ev: reference_windows(ev, 10_000),
        ),
        (
            {"type": "sliding", "size": "10s", "slide": "5s", "timestamp_field": "ts"},
            lambda ev: reference_windows(ev, 10_000, 5_000),
        ),
        (
            {"type": "session", "gap": "3s", "timestamp_field": "ts"},
            lambda ev: reference_sessions(ev, 3_000),
        ),
    ],
    ids=["tumbling", "sliding", "session"],
)
def test_event_time_windows_equal_the_reference(window: dict, reference: object) -> None:
    events = shuffled_events()
    if window["type"] == "session":  # make gaps: drop events in a few 5 s stretches
        events = [(k, ts) for k, ts in events if not 20_000 <= ts % 30_000 < 25_000]
    result = testing.run(window_topology(window, events, spout_config=WATERMARKS))
    rows = result.outputs["sink"]
    assert late_of(rows) == []
    assert windows_of(rows) == reference(events)  # type: ignore[operator]


@pytest.mark.parametrize("kind", ["tumbling", "session"])
def test_float_timestamps_fall_in_the_windows_of_their_whole_milliseconds(kind: str) -> None:
    window = {"type": kind, "size": "10s", "gap": "3s", "timestamp_field": "ts"}
    del window["gap" if kind == "tumbling" else "size"]
    events = [(k, ts) for k, ts in shuffled_events() if not 20_000 <= ts % 30_000 < 25_000]
    floats = [(k, ts + 0.75) for k, ts in events]  # floored: each falls where its int falls
    rows = testing.run(window_topology(window, floats, spout_config=WATERMARKS)).outputs["sink"]
    expected = testing.run(window_topology(window, events, spout_config=WATERMARKS))
    floored = Counter(
        (key, start, end, count, tuple(int(ts) for ts in stamps))
        for key, start, end, count, stamps in windows_of(rows).elements()
    )
    assert late_of(rows) == [] and floored == windows_of(expected.outputs["sink"])
    assert all(type(w[1]) is int and type(w[2]) is int for w in windows_of(rows))


def test_a_timestamp_that_is_no_number_fails_its_tuple_naming_the_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    window = {"type": "tumbling", "size": "10s", "timestamp_field": "ts"}
    with caplog.at_level(logging.ERROR, logger="rayflow.task"):
        result = testing.run(window_topology(window, [("a", "noon"), ("a", 1_000)]))
    assert windows_of(result.outputs["sink"]) == Counter({("a", 0, 10_000, 1, (1_000,)): 1})
    assert result.counter("window", "failed") == 1
    assert "timestamp_field 'ts' holds 'noon', not milliseconds since the epoch" in caplog.text


def test_late_tuples_update_within_allowed_lateness_and_go_to_the_late_stream_after() -> None:
    window = {
        "type": "tumbling",
        "size": "10s",
        "timestamp_field": "ts",
        "allowed_lateness": "5s",
        "late_stream": "late",
    }
    events = [
        ("a", 1_000),
        ("a", 2_000),
        ("a", 12_000),
        ("a", 13_000),  # watermark 12_999
        Pause(0.3),
        ("a", 3_000),  # late, within lateness: window [0, 10s) fires again
        ("a", 18_000),
        Pause(0.3),
        ("a", 4_000),
    ]  # watermark 17_999: beyond lateness
    spout = {"watermark.timestamp_field": "ts", "watermark.interval": "10ms"}
    result = testing.run(window_topology(window, events, spout_config=spout))
    rows = result.outputs["sink"]
    first = [r for r in windows_of(rows) if r[1] == 0]
    assert sorted(first) == [
        ("a", 0, 10_000, 2, (1_000, 2_000)),
        ("a", 0, 10_000, 3, (1_000, 2_000, 3_000)),
    ]
    assert late_of(rows) == [("a", 4_000)]


@pytest.mark.parametrize("reliability", ["none", "exactly_once"])
def test_a_late_tuple_without_a_late_stream_is_dropped_and_counted(reliability: str) -> None:
    window = {"type": "tumbling", "size": "10s", "timestamp_field": "ts"}
    events = [("a", 1_000), ("a", 12_000), ("a", 13_000), Pause(0.3), ("a", 2_000)]
    spout = {"watermark.timestamp_field": "ts", "watermark.interval": "10ms"}
    topology = window_topology(window, events, spout_config=spout, parallelism=1)
    topology.config["reliability"] = reliability
    result = testing.run(topology)
    (task,) = result.tasks["window"]
    assert task["metrics"]["late_dropped"]["value"] == 1
    assert result.components["window"]["failed"] == 0 and task["errors"] == []
    assert ("a", 0, 10_000, 1, (1_000,)) in windows_of(result.outputs["sink"])


def test_a_slow_input_holds_event_time_back() -> None:
    window = {"type": "tumbling", "size": "10s", "timestamp_field": "ts", "late_stream": "late"}
    per_task = {
        0: [("a", ts) for ts in range(0, 40_000, 1_000)],  # quick, then finishes
        1: [("b", 1_000), Pause(0.5), ("b", 5_000)],  # slow: its watermark stays at 999
    }
    spout = {"watermark.timestamp_field": "ts", "watermark.interval": "10ms"}
    result = testing.run(window_topology(window, per_task=per_task, spout_config=spout))
    rows = result.outputs["sink"]
    assert late_of(rows) == []
    assert ("b", 0, 10_000, 2, (1_000, 5_000)) in windows_of(rows)


def test_an_idle_input_does_not_hold_event_time_back() -> None:
    window = {"type": "tumbling", "size": "10s", "timestamp_field": "ts", "late_stream": "late"}
    per_task = {
        0: [("a", ts) for ts in range(0, 40_000, 1_000)],
        # Idle after 100 ms: event time goes on without it, so its next tuple is late.
        # (Without idleness its watermark, 999, would hold every window open.)
        1: [("b", 1_000), Pause(0.8), ("b", 2_000)],
    }
    spout = {
        "watermark.timestamp_field": "ts",
        "watermark.interval": "10ms",
        "watermark.idle_timeout": "100ms",
    }
    result = testing.run(window_topology(window, per_task=per_task, spout_config=spout))
    rows = result.outputs["sink"]
    assert late_of(rows) == [("b", 2_000)]
    assert ("a", 0, 10_000, 10, tuple(range(0, 10_000, 1_000))) in windows_of(rows)


def test_event_time_from_the_tuples_when_no_spout_sends_watermarks() -> None:
    window = {
        "type": "tumbling",
        "size": "10s",
        "timestamp_field": "ts",
        "max_out_of_orderness": "5s",
    }
    events = shuffled_events()
    result = testing.run(window_topology(window, events, keyed=False))
    assert windows_of(result.outputs["sink"]) == reference_windows(
        [(None, ts) for _k, ts in events],
        10_000,  # type: ignore[misc]
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("tumbling", {("k0", 3), ("k1", 3)}),
        ("sliding", {("k0", 2), ("k0", 3), ("k1", 2), ("k1", 3)}),
    ],
)
def test_count_windows_per_key(kind: str, expected: set) -> None:
    window = (
        {"type": kind, "size": 3} if kind == "tumbling" else {"type": kind, "size": 3, "slide": 2}
    )
    events = [(f"k{i % 2}", i) for i in range(12)]
    result = testing.run(window_topology(window, events))
    got = {(row[1], row[4]) for row in result.outputs["sink"]}
    assert got == expected
    counts = [row for row in result.outputs["sink"] if row[1] == "k0"]
    if kind == "tumbling":
        assert sorted(r[5] for r in counts) == [(0, 2, 4), (6, 8, 10)]


def test_processing_time_windows_follow_the_clock() -> None:
    # Bursts in three consecutive 500 ms windows: each window counts one burst.
    import time

    now = time.time() * 1000
    first = (now // 500 + 2) * 500  # a window boundary at least 500 ms ahead
    items: list = [Pause((first - now) / 1000 + 0.1)]
    for burst in range(3):
        items += [("k", burst)] * (burst + 1) + [Pause(0.5)]
    window = {"type": "tumbling", "size": "500ms", "time": "processing"}
    result = testing.run(window_topology(window, items))
    counts = sorted((row[2], row[4]) for row in result.outputs["sink"])
    assert [count for _start, count in counts] == [1, 2, 3]
    starts = [start for start, _count in counts]
    assert starts == [first, first + 500, first + 1000]


def test_tick_tuples_arrive_at_the_configured_interval() -> None:
    t = Topology("ticks")
    t.spout("events", Events, kwargs={"items": [Pause(0.65)]})
    t.bolt("ticker", TickCounter, config={"tick.interval": "100ms"}).shuffle("events")
    t.bolt("sink", testing.ListSink).shuffle("ticker")
    ticks = testing.run(t).outputs["sink"][0][0]
    assert 4 <= ticks <= 7


def test_event_time_timers_fire_when_the_watermark_passes() -> None:
    t = Topology("timers")
    events = [("a", 100), ("a", 500), ("a", 2_000)]
    t.spout(
        "events",
        Events,
        kwargs={"items": events},
        config={"watermark.timestamp_field": "ts", "watermark.interval": "1ms"},
    )
    t.bolt("timer", TimerBolt).shuffle("events")
    t.bolt("sink", testing.ListSink).shuffle("timer")
    fired = testing.run(t).outputs["sink"]
    assert [at for at, _wm in fired] == [110, 510, 2_010]
    assert all(wm >= at for at, wm in fired)


def test_a_bad_window_is_rejected_naming_the_key() -> None:
    with pytest.raises(TopologyError, match=r"window\.size"):
        window_topology({"type": "tumbling", "size": "often"}, []).build()


def test_sessions_do_not_depend_on_arrival_order() -> None:
    window = {"type": "session", "gap": "10s", "timestamp_field": "ts", "allowed_lateness": "100s"}
    spout = {"watermark.timestamp_field": "ts", "watermark.interval": "1ms"}
    results = []
    for order in ([("a", 0), ("a", 12_000)], [("a", 12_000), ("a", 0)]):
        events = [*order, Pause(0.2), ("a", 8_000), ("a", 20_000)]
        rows = testing.run(window_topology(window, events, spout_config=spout)).outputs["sink"]
        results.append(max(windows_of(rows)))  # the last firing holds the final session
    assert results[0] == results[1] == ("a", 0, 30_000, 4, (0, 8_000, 12_000, 20_000))


def test_idleness_travels_through_a_bolt_in_between() -> None:
    from rayflow import Bolt
    from tests.windowing import Tagger, WindowCount

    class PassOn(Bolt):
        outputs = ["key", "ts"]

        def process(self, tup):  # type: ignore[no-untyped-def]
            self.emit(tup.values)

    t = Topology("idle-hop", config={"batch.size": 8})
    per_task = {
        0: [("a", ts) for ts in range(0, 40_000, 1_000)],
        1: [("b", 1_000), Pause(0.8), ("b", 2_000)],
    }
    t.spout(
        "events",
        Events,
        parallelism=2,
        kwargs={"per_task": per_task},
        config={
            "watermark.timestamp_field": "ts",
            "watermark.interval": "10ms",
            "watermark.idle_timeout": "100ms",
        },
    )
    t.bolt("pass", PassOn, parallelism=2).fields("events", "key")
    t.bolt(
        "window",
        WindowCount,
        config={
            "window": {
                "type": "tumbling",
                "size": "10s",
                "timestamp_field": "ts",
                "late_stream": "late",
            }
        },
    ).global_("pass")
    t.bolt("sink", Tagger).global_("window").global_("window", stream="late")
    rows = testing.run(t).outputs["sink"]
    assert late_of(rows) == [("b", 2_000)], "the idle spout's silence reached the window"


def test_windows_keep_their_tuples_when_tuples_are_reused() -> None:
    window = {"type": "tumbling", "size": 3}
    t = window_topology(window, [("k", i) for i in range(6)], keyed=False)
    t.config["tuple.reuse"] = True
    rows = testing.run(t).outputs["sink"]
    assert sorted(row[5] for row in rows) == [(0, 1, 2), (3, 4, 5)]


def test_processing_time_windows_with_a_manual_clock() -> None:
    clock = testing.ManualClock(start=10_000)
    items = [
        ("a", 0),
        ("b", 0),
        clock.advance(400),
        ("a", 0),
        clock.advance(200),  # 10_600
        ("a", 0),
        ("b", 0),
        clock.advance(1_000),
        ("b", 0),
    ]
    window = {"type": "tumbling", "size": "500ms", "time": "processing"}
    result = testing.run(window_topology(window, items), clock=clock)
    got = sorted((row[1], row[2], row[4]) for row in result.outputs["sink"])
    assert got == [
        ("a", 10_000, 2),
        ("a", 10_500, 1),
        ("b", 10_000, 1),
        ("b", 10_500, 1),
        ("b", 11_500, 1),
    ]


def test_tick_tuples_follow_a_manual_clock() -> None:
    clock = testing.ManualClock(start=0)
    t = Topology("ticks-manual")
    t.spout("events", Events, kwargs={"items": [clock.advance(100)] * 5})
    t.bolt("ticker", TickCounter, config={"tick.interval": "100ms"}).shuffle("events")
    t.bolt("sink", testing.ListSink).shuffle("ticker")
    assert testing.run(t, clock=clock).outputs["sink"] == [(5,)]
