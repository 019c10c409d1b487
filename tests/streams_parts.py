"""Flows and functions for the Streams tests on Ray (importable by task actors)."""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from typing import Any

from rayflow import Flow
from rayflow.connectors.files import FileSink
from rayflow.testing import TestingSpout
from tests.exactly_once import Words, events


class Events(TestingSpout):
    """Scripted (word, ts) events."""

    outputs = ["word", "ts"]


def running_count(count: int | None, word: str) -> tuple[int, int]:
    """A map_state function: the word's running count, in keyed state."""
    count = (count or 0) + 1
    return count, count


def first(item: Any) -> Any:
    return item[0]


def second(item: Any) -> Any:
    return item[1]


def counting_flow(out: str, items: list[Any], parallelism: int = 2, **config: Any) -> Flow:
    """Words -> key_by -> map_state running count -> a transactional FileSink."""
    flow = Flow(
        "streams-exactly",
        config={
            "reliability": "exactly_once",
            "checkpoint.interval": "300ms",
            "checkpoint.storage": os.path.join(out, "checkpoints"),
            "batch.size": 64,
            **config,
        },
    )
    (
        flow.source(Words, kwargs={"items": items}, name="words")
        .key_by(str, name="by_word")
        .map_state(running_count, name="running", parallelism=parallelism)
        .sink(FileSink, kwargs={"path": os.path.join(out, "files")}, name="sink")
    )
    return flow


def per_second_flow(out: str, items: list[Any], by: str, **config: Any) -> Flow:
    """(word, ts) events -> event-time counts per word and second -> a transactional sink, the
    counts made ``by`` a 1 s tumbling ``window`` or by ``process`` with per-key timers."""
    flow = Flow(
        f"streams-{by}-exactly",
        config={
            "reliability": "exactly_once",
            "checkpoint.interval": "300ms",
            "checkpoint.storage": os.path.join(out, "checkpoints"),
            "batch.size": 16,
            "watermark.interval": "50ms",
            **config,
        },
    )
    keyed = flow.source(Events, kwargs={"items": items}, name="events")
    keyed = keyed.with_timestamps(second, "500ms").key_by(first)
    if by == "window":
        counts = keyed.window({"type": "tumbling", "size": "1s"}, name="per_second", parallelism=2)
        rows = counts.count().map(lambda r: (r[0], r[1].start, r[2]))
    else:
        per_second = keyed.process(count_in_second, emit_second, name="per_second", parallelism=2)
        rows = per_second.map(lambda r: (r[0], r[1][0], r[1][1]))
    rows.sink(FileSink, kwargs={"path": os.path.join(out, "files")}, name="sink")
    return flow


def count_in_second(ctx: Any, item: tuple[str, int]) -> None:
    """A process function: counts a word's events per second in map state, with an event-time
    timer at the second's end."""
    second = item[1] - item[1] % 1000
    counts = ctx.state.map("per_second")
    counts[second] = counts.get(second, 0) + 1
    ctx.register_timer(second + 999)


def emit_second(ctx: Any, timestamp: int) -> None:
    """The timer of ``count_in_second``: the second's count, out and forgotten."""
    counts = ctx.state.map("per_second")
    second = timestamp - 999
    ctx.emit((second, counts[second]))
    del counts[second]


def timed_events(n: int, pause_every: int, pause: float) -> list[Any]:
    """``events`` with a timestamp each: 20 ms apart, in order."""
    out: list[Any] = []
    t = 0
    for item in events(n, pause_every, pause):
        if isinstance(item, str):
            out.append((item, t))
            t += 20
        else:
            out.append(item)
    return out


def committed_items(out: str) -> Counter:
    """The items a flow's FileSink committed (a row per item: ``[item]``)."""
    rows: Counter = Counter()
    for path in glob.glob(os.path.join(out, "files", "part-*")):
        with open(path, encoding="utf-8") as f:
            rows.update(tuple(json.loads(line)[0]) for line in f)
    return rows


async def lookup(n: int) -> int:
    """A map_async function: an I/O wait, then the item."""
    import asyncio

    await asyncio.sleep(0.001)
    return n
