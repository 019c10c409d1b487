"""map_async in process: order, bounded concurrency, failures and timeouts, and no result
overtaking a watermark that followed its input."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from rayflow import Flow, testing
from rayflow.testing import Pause, TestingSpout


class Events(TestingSpout):
    outputs = ["key", "ts"]


def test_results_come_in_input_order_or_as_they_complete() -> None:
    async def slow(n: int) -> int:
        await asyncio.sleep(0.002 * (10 - n))  # later items finish first
        return n

    flow = Flow("async-order", config={"batch.size": 100})
    numbers = flow.source(list(range(10)))
    numbers.map_async(slow).collect("ordered")
    numbers.map_async(slow, ordered=False).collect("unordered")
    out = testing.run(flow).outputs
    assert out["ordered"] == list(range(10))
    assert sorted(out["unordered"]) == list(range(10))
    assert out["unordered"] != list(range(10)), "completion order, not input order"


def test_in_flight_requests_stay_within_concurrency() -> None:
    live = {"now": 0, "most": 0}

    async def call(n: int) -> int:
        live["now"] += 1
        live["most"] = max(live["most"], live["now"])
        await asyncio.sleep(0.001)
        live["now"] -= 1
        return n

    flow = Flow("async-bounded", config={"batch.size": 50})
    flow.source(list(range(200))).map_async(call, concurrency=7).collect("out")
    assert sorted(testing.run(flow).outputs["out"]) == list(range(200))
    assert live["most"] == 7


def test_a_raise_or_a_timeout_fails_only_that_item() -> None:
    async def call(n: int) -> int:
        if n == 3:
            raise ConnectionError("down")
        if n == 5:
            await asyncio.sleep(1)  # past the timeout
        return n

    flow = Flow("async-fail")
    flow.source(list(range(8))).map_async(call, timeout="50ms").collect("out")
    result = testing.run(flow)
    assert result.outputs["out"] == [0, 1, 2, 4, 6, 7]
    assert result.counter("map_async", "failed") == 2


def test_no_result_overtakes_a_watermark_that_followed_its_input() -> None:
    """Results come late at random; the windows after map_async still count every item (a
    result behind the watermark would be late and dropped)."""
    rng = random.Random(3)
    script: list[Any] = []
    for t in range(0, 6000, 50):
        script.append(("k", t))
        if t % 500 == 450:
            script.append(Pause(0.01))

    async def jitter(event: tuple[str, int]) -> tuple[str, int]:
        await asyncio.sleep(rng.random() * 0.005)
        return event

    flow = Flow("async-watermarks", config={"watermark.interval": "0ms"})
    (
        flow.source(Events, args=(script,))
        .with_timestamps(lambda e: e[1])
        .map_async(jitter, ordered=False)
        .key_by(lambda e: e[0])
        .window({"type": "tumbling", "size": "1s"}, name="per_second")
        .count()
        .map(lambda r: (r[1].start, r[2]))
        .collect("counts")
    )
    result = testing.run(flow)
    assert sorted(result.outputs["counts"]) == [(s, 20) for s in range(0, 6000, 1000)]
    assert "late_dropped" not in result.tasks["per_second.map"][0]["metrics"]
