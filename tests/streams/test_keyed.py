"""Keyed operators in process: rolling and final aggregations, map_state, process with timers,
the combiner, and a raising function failing only its item."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest

from rayflow import Flow, testing
from rayflow.testing import ManualClock

WORDS = ["the", "cow", "jumped", "over", "the", "moon", "the", "end"]


def word_flow(name: str, parallelism: int = 2, **config: Any) -> tuple[Flow, Any]:
    flow = Flow(name, config={"batch.size": 3, **config})
    words = flow.source(WORDS * 5, parallelism=parallelism).key_by(lambda w: w)
    return flow, words


def test_count_reduce_and_fold_final_give_one_result_per_key() -> None:
    flow, words = word_flow("finals")
    words.count_final().collect("counts")
    words.map(lambda w: (w, 1)).key_by(lambda p: p[0]).reduce_final(
        lambda a, b: (a[0], a[1] + b[1])
    ).map(lambda kv: (kv[0], kv[1][1])).collect("reduced")
    words.fold_final(list, lambda acc, w: [*acc, len(w)]).collect("folded")
    out = testing.run(flow).outputs
    expected = Counter(WORDS * 5)
    assert dict(out["counts"]) == expected
    assert dict(out["reduced"]) == expected
    assert {k: len(v) for k, v in out["folded"]} == expected
    assert all(set(v) == {len(k)} for k, v in out["folded"])


def test_the_combiner_gives_what_no_combiner_gives() -> None:
    """count_final pre-aggregates each batch before the exchange; fold_final cannot (it has no
    way to merge): both count the same."""
    flow, words = word_flow("combined")
    words.count_final().collect("combined")
    words.fold_final(lambda: 0, lambda n, _w: n + 1).collect("folded")
    out = testing.run(flow).outputs
    assert sorted(out["combined"]) == sorted(out["folded"])
    assert "combined per batch" in flow.explain()


def test_keys_of_different_types_stay_apart() -> None:
    flow = Flow("key-types")
    items = [1, 1.0, True, "1", b"1", (1,), None, 1, 1.0]
    flow.source(items).key_by(lambda x: x).count_final().collect("counts")
    out = testing.run(flow).outputs["counts"]
    got = {(type(k).__name__, k): n for k, n in out}
    assert got == {
        ("int", 1): 2,
        ("float", 1.0): 2,
        ("bool", True): 1,
        ("str", "1"): 1,
        ("bytes", b"1"): 1,
        ("tuple", (1,)): 1,
        ("NoneType", None): 1,
    }


def test_rolling_reduce_emits_after_every_item() -> None:
    flow = Flow("rolling")
    flow.source([("a", 1), ("b", 10), ("a", 2), ("a", 3)]).key_by(lambda p: p[0]).reduce(
        lambda acc, p: (acc[0], acc[1] + p[1])
    ).map(lambda kv: (kv[0], kv[1][1])).collect("sums")
    assert testing.run(flow).outputs["sums"] == [("a", 1), ("b", 10), ("a", 3), ("a", 6)]


def test_map_state_keeps_deletes_and_emits() -> None:
    def dedupe(seen: set[int] | None, item: tuple[str, int]) -> tuple[Any, Any]:
        seen = seen or set()
        if item[1] in seen:
            return seen, None  # nothing out
        if item[1] < 0:
            return None, "reset"  # state deleted
        return seen | {item[1]}, item[1]

    flow = Flow("map-state")
    items = [("a", 1), ("a", 1), ("a", 2), ("b", 1), ("a", -1), ("a", 1)]
    flow.source(items).key_by(lambda p: p[0]).map_state(dedupe).collect("out")
    assert testing.run(flow).outputs["out"] == [
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("a", "reset"),
        ("a", 1),
    ]


def test_process_with_state_timestamps_and_event_time_timers() -> None:
    def on_item(ctx: Any, item: tuple[str, int]) -> None:
        total = ctx.state.value("total", default=0)
        total.set(total.get() + 1)
        ctx.emit(("seen", ctx.timestamp))
        ctx.register_timer(ctx.timestamp + 1000)

    def on_timer(ctx: Any, ts: int) -> None:
        ctx.emit(("timer", ts, ctx.state.value("total", default=0).get()))

    flow = Flow("process")
    events = flow.source([("a", 100), ("b", 200), ("a", 300)]).with_timestamps(lambda e: e[1])
    events.key_by(lambda e: e[0]).process(on_item, on_timer=on_timer).collect("out")
    out = testing.run(flow).outputs["out"]
    assert [o for o in out if o[1][0] == "seen"] == [
        ("a", ("seen", 100)),
        ("b", ("seen", 200)),
        ("a", ("seen", 300)),
    ]
    assert sorted(o for o in out if o[1][0] == "timer") == [
        ("a", ("timer", 1100, 2)),
        ("a", ("timer", 1300, 2)),
        ("b", ("timer", 1200, 1)),
    ]


def test_process_timers_of_tuple_keys_get_their_key_back() -> None:
    def on_item(ctx: Any, item: tuple[str, int]) -> None:
        ctx.state.value("seen", default=0).set(1)
        ctx.register_timer(ctx.timestamp + 10)

    def on_timer(ctx: Any, ts: int) -> None:
        ctx.emit((ts, ctx.key, ctx.state.value("seen", default=0).get()))

    flow = Flow("process-tuple-keys")
    events = flow.source([("a", 1), ("b", 2)]).with_timestamps(lambda e: e[1])
    events.key_by(lambda e: (e[0], 1.0)).process(on_item, on_timer=on_timer).collect("out")
    out = testing.run(flow).outputs["out"]
    assert sorted(out) == [(("a", 1.0), (11, ("a", 1.0), 1)), (("b", 1.0), (12, ("b", 1.0), 1))]


def test_process_timers_in_processing_time() -> None:
    clock = ManualClock(start=10_000)

    def on_item(ctx: Any, item: str) -> None:
        ctx.register_timer(ctx.current_processing_time() + 500)

    def on_timer(ctx: Any, ts: int) -> None:
        ctx.emit(ts)

    flow = Flow("process-clock")
    flow.source(["x", "y"]).key_by(str).process(on_item, on_timer).collect("out")
    assert sorted(testing.run(flow, clock=clock).outputs["out"]) == [("x", 10_500), ("y", 10_500)]


def test_a_raising_function_fails_only_its_item(caplog: pytest.LogCaptureFixture) -> None:
    def picky(n: int) -> int:
        if n == 13:
            raise ValueError("thirteen")
        return n

    flow = Flow("failing", config={"batch.size": 8})
    flow.source(list(range(40))).map(picky).collect("out")
    numbers = flow.source(list(range(40)), name="numbers")
    numbers.key_by(lambda n: n % 2).reduce(lambda acc, n: picky(n) + acc).collect("sums")
    with caplog.at_level(logging.ERROR, logger="rayflow.task"):
        result = testing.run(flow)
    assert result.outputs["out"] == [n for n in range(40) if n != 13]
    odd_sums = [total for key, total in result.outputs["sums"] if key == 1]
    assert odd_sums[-1] == sum(n for n in range(40) if n % 2 and n != 13)
    assert result.counter("source.map", "failed") == 1
    assert result.counter("reduce", "failed") == 1
    assert "ValueError: thirteen" in caplog.text
    assert "picky" in caplog.text, "the user's traceback is logged"


def test_a_raising_function_under_at_least_once_is_replayed() -> None:
    attempts: Counter[int] = Counter()

    def flaky(n: int) -> int:
        attempts[n] += 1
        if n == 7 and attempts[n] == 1:
            raise RuntimeError("once")
        return n

    flow = Flow("flaky", config={"reliability": "at_least_once", "batch.size": 4})
    flow.source(list(range(20))).rebalance().map(flaky).collect("out")
    result = testing.run(flow)
    assert sorted(result.outputs["out"]) == list(range(20))
    assert attempts[7] == 2
