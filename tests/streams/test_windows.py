"""Windows and joins in process, against results worked out by hand (or by brute force) for
out-of-order input; watermarks move between the scripted pauses."""

from __future__ import annotations

import random
from typing import Any

from rayflow import Flow, testing
from rayflow.testing import ManualClock, Pause, TestingSpout

FAST_WATERMARKS = {"watermark.interval": "0ms"}  # a watermark after each source round


class Events(TestingSpout):
    """Scripted (key, ts) events; a Pause lets a watermark through."""

    outputs = ["key", "ts"]


def windows_of(out: list[Any]) -> list[tuple[Any, int, int, Any]]:
    return sorted((key, w.start, w.end, result) for key, w, result in out)


def event_flow(name: str, script: list[Any], lag: str = "5s") -> tuple[Flow, Any]:
    flow = Flow(name, config=FAST_WATERMARKS)
    events = flow.source(Events, args=(script,)).with_timestamps(lambda e: e[1], lag)
    return flow, events.key_by(lambda e: e[0])


SCRIPT = [("a", 1000), ("a", 11_000), Pause(0.05), ("a", 4000), ("a", 16_000), Pause(0.05),
          ("a", 2000)]  # fmt: skip


def test_tumbling_event_time_with_out_of_order_items_and_a_late_stream() -> None:
    # watermarks: 11000 - 5000 - 1 = 5999 after the first round (4000 still counts), then
    # 10999 (closes [0, 10s)), so 2000 comes too late.
    flow, keyed = event_flow("tumbling", SCRIPT)
    windowed = keyed.window({"type": "tumbling", "size": "10s"})
    windowed.count().collect("counts")
    windowed.late().collect("late")
    out = testing.run(flow).outputs
    assert windows_of(out["counts"]) == [("a", 0, 10_000, 2), ("a", 10_000, 20_000, 2)]
    assert out["late"] == [("a", 2000)]


def test_allowed_lateness_fires_a_window_again_with_the_late_item() -> None:
    flow, keyed = event_flow("lateness", SCRIPT)
    windowed = keyed.window({"type": "tumbling", "size": "10s", "allowed_lateness": "2s"})
    windowed.count().collect("counts")
    windowed.late().collect("late")
    out = testing.run(flow).outputs
    assert windows_of(out["counts"]) == [
        ("a", 0, 10_000, 2),
        ("a", 0, 10_000, 3),
        ("a", 10_000, 20_000, 2),
    ]
    assert out["late"] == []


def test_late_items_without_a_late_stream_are_dropped_and_counted() -> None:
    flow, keyed = event_flow("dropped", SCRIPT)
    keyed.window({"type": "tumbling", "size": "10s"}).count(name="counted").collect("counts")
    result = testing.run(flow)
    assert windows_of(result.outputs["counts"]) == [("a", 0, 10_000, 2), ("a", 10_000, 20_000, 2)]
    dropped = sum(t["metrics"]["late_dropped"]["value"] for t in result.tasks["counted"])
    assert dropped == 1


def test_sliding_windows_reduce_and_process() -> None:
    script = [("a", 1000), ("a", 6000), ("b", 6500), ("a", 12_000)]
    flow, keyed = event_flow("sliding", script)
    spec = {"type": "sliding", "size": "10s", "slide": "5s"}
    keyed.window(spec).reduce(lambda x, y: (x[0], x[1] + y[1])).map(
        lambda r: (r[0], r[1].start, r[2][1])
    ).collect("sums")
    keyed.window(spec).process(lambda key, w, items: sorted(ts for _k, ts in items)).collect(
        "items"
    )
    out = testing.run(flow).outputs
    assert sorted(out["sums"]) == [
        ("a", -5000, 1000),
        ("a", 0, 7000),
        ("a", 5000, 18_000),
        ("a", 10_000, 12_000),
        ("b", 0, 6500),
        ("b", 5000, 6500),
    ]
    assert windows_of(out["items"]) == [
        ("a", -5000, 5000, [1000]),
        ("a", 0, 10_000, [1000, 6000]),
        ("a", 5000, 15_000, [6000, 12_000]),
        ("a", 10_000, 20_000, [12_000]),
        ("b", 0, 10_000, [6500]),
        ("b", 5000, 15_000, [6500]),
    ]


def test_session_windows_merge_with_the_aggregate_merge_function() -> None:
    script = [("a", 1000), ("b", 1000), ("a", 10_000), ("a", 2500)]  # 2500 bridges nothing
    flow, keyed = event_flow("sessions", script, lag="20s")
    keyed.window({"type": "session", "gap": "3s"}).aggregate(
        lambda: [], lambda acc, e: [*acc, e[1]], lambda x, y: sorted(x + y)
    ).collect("sessions")
    out = testing.run(flow).outputs
    assert windows_of(out["sessions"]) == [
        ("a", 1000, 5500, [1000, 2500]),
        ("a", 10_000, 13_000, [10_000]),
        ("b", 1000, 4000, [1000]),
    ]


def test_processing_time_windows_follow_the_clock() -> None:
    clock = ManualClock(start=0)
    script = ["a", "a", "b", clock.advance(10_000), "a"]
    flow = Flow("processing")
    keyed = flow.source(TestingSpout, args=(script,)).key_by(lambda w: w)
    keyed.window({"type": "tumbling", "size": "10s"}).count().collect("counts")
    out = testing.run(flow, clock=clock).outputs
    assert windows_of(out["counts"]) == [
        ("a", 0, 10_000, 2),
        ("a", 10_000, 20_000, 1),
        ("b", 0, 10_000, 1),
    ]


def test_window_join_pairs_equal_keys_of_one_window() -> None:
    flow = Flow("window-join", config=FAST_WATERMARKS)
    left = flow.source(Events, args=([("a", 1000), ("a", 2000), ("b", 3000)],), name="left")
    right = flow.source(Events, args=([("a", 1500), ("b", 12_000), ("a", 9000)],), name="right")
    stamp = lambda e: e[1]  # noqa: E731
    joined = (
        left.with_timestamps(stamp)
        .key_by(lambda e: e[0])
        .window_join(
            right.with_timestamps(stamp).key_by(lambda e: e[0]),
            {"type": "tumbling", "size": "10s"},
            lambda left, right: (left[0], left[1], right[1]),
        )
    )
    joined.collect("pairs")
    out = testing.run(flow).outputs
    assert sorted(out["pairs"]) == [
        ("a", 1000, 1500),
        ("a", 1000, 9000),
        ("a", 2000, 1500),
        ("a", 2000, 9000),
    ]


def _disordered(events: list[tuple[str, int]], rng: random.Random) -> list[Any]:
    """Sorted by time, then shuffled within runs of 4 (disorder under 1 s), paused every 10."""
    events = sorted(events, key=lambda e: e[1])
    script: list[Any] = []
    for i in range(0, len(events), 4):
        run = events[i : i + 4]
        rng.shuffle(run)
        script += run
        if i % 10 == 0:
            script.append(Pause(0.005))
    return script


def test_interval_join_matches_brute_force_on_out_of_order_input() -> None:
    rng = random.Random(7)
    keys = ["a", "b", "c"]
    lefts = [(rng.choice(keys), t * 250 + rng.randrange(200)) for t in range(120)]
    rights = [(rng.choice(keys), t * 250 + rng.randrange(200)) for t in range(120)]
    lower, upper = -2000, 1000
    expected = sorted(
        (a, b)
        for a in lefts
        for b in rights
        if a[0] == b[0] and a[1] + lower <= b[1] <= a[1] + upper
    )
    flow = Flow("interval-join", config=FAST_WATERMARKS)
    stamp = lambda e: e[1]  # noqa: E731
    left = flow.source(Events, args=(_disordered(lefts, rng),), name="left")
    right = flow.source(Events, args=(_disordered(rights, rng),), name="right")
    left.with_timestamps(stamp, "1s").key_by(lambda e: e[0]).interval_join(
        right.with_timestamps(stamp, "1s").key_by(lambda e: e[0]),
        "-2s",
        upper,
        lambda a, b: (a, b),
    ).collect("pairs")
    result = testing.run(flow)
    assert sorted(result.outputs["pairs"]) == expected
    join = next(c for c in result.tasks if c.startswith("interval_join"))
    assert "late_dropped" not in result.tasks[join][0]["metrics"]
