"""Components and reference computations for the window tests (importable by task actors)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rayflow import Bolt, Context, Timer, Topology, Tuple, Window, WindowedBolt
from rayflow.testing import ListSink, Pause, TestingSpout


class Events(TestingSpout):
    """Scripted (key, ts) events."""

    outputs = ["key", "ts"]


class WindowCount(WindowedBolt):
    """Emits (key, start, end, count, sorted timestamps) per window; late tuples to 'late'."""

    outputs = {"default": ["key", "start", "end", "count", "stamps"], "late": ["key", "ts"]}

    def process_window(self, window: Window, tuples: list[Tuple]) -> None:
        key = window.key[0] if window.key else None
        stamps = tuple(sorted(t["ts"] for t in tuples))
        self.emit([key, window.start, window.end, window.count, stamps])


class Tagger(ListSink):
    """Collects (stream, *values) so one sink can take several streams."""

    def process(self, tup: Tuple) -> None:
        self.rows.append((tup.stream, *tup.values))


class TickCounter(Bolt):
    outputs = ["ticks"]

    def prepare(self, context: Context) -> None:
        self.ticks = 0

    def process(self, tup: Tuple) -> None:
        if tup.is_tick:
            self.ticks += 1

    def cleanup(self) -> None:
        self.emit([self.ticks])


class TimerBolt(Bolt):
    """Registers an event-time timer at each tuple's ts + 10; emits (fired at, watermark)."""

    outputs = ["at", "watermark"]

    def process(self, tup: Tuple) -> None:
        self.register_timer(tup["ts"] + 10, payload=tup["key"])

    def on_timer(self, timer: Timer) -> None:
        self.emit([timer.timestamp, self.current_watermark()])


def window_topology(
    window: dict[str, Any],
    items: list[Any] | None = None,
    per_task: dict[int, list[Any]] | None = None,
    spout_config: dict[str, Any] | None = None,
    keyed: bool = True,
    parallelism: int = 2,
) -> Topology:
    t = Topology("windows", config={"batch.size": 16})
    spouts = len(per_task) if per_task else 1
    t.spout(
        "events",
        Events,
        parallelism=spouts,
        kwargs={"items": items or [], "per_task": per_task},
        config=spout_config or {},
    )
    declare = t.bolt(
        "window", WindowCount, parallelism=parallelism if keyed else 1, config={"window": window}
    )
    if keyed:
        declare.fields("events", "key")
    else:
        declare.global_("events")
    sink = t.bolt("sink", Tagger)
    sink.global_("window")
    sink.global_("window", stream="late")
    return t


def reference_windows(
    events: list[tuple[str, int]], size: int, slide: int | None = None
) -> Counter[tuple[Any, ...]]:
    """What tumbling (or sliding) event-time windows must produce, computed the plain way."""
    slide = slide or size
    out: Counter[tuple[Any, ...]] = Counter()
    groups: dict[tuple[str, int], list[int]] = {}
    for key, ts in events:
        start = ts - ts % slide
        while start > ts - size:
            groups.setdefault((key, start), []).append(ts)
            start -= slide
    for (key, start), stamps in groups.items():
        out[(key, start, start + size, len(stamps), tuple(sorted(stamps)))] += 1
    return out


def reference_sessions(events: list[tuple[str, int]], gap: int) -> Counter[tuple[Any, ...]]:
    out: Counter[tuple[Any, ...]] = Counter()
    by_key: dict[str, list[int]] = {}
    for key, ts in events:
        by_key.setdefault(key, []).append(ts)
    for key, stamps in by_key.items():
        stamps.sort()
        session = [stamps[0]]
        for ts in stamps[1:]:
            if ts < session[-1] + gap:
                session.append(ts)
            else:
                out[(key, session[0], session[-1] + gap, len(session), tuple(session))] += 1
                session = [ts]
        out[(key, session[0], session[-1] + gap, len(session), tuple(session))] += 1
    return out


def windows_of(rows: list[tuple[Any, ...]]) -> Counter[tuple[Any, ...]]:
    return Counter(row[1:] for row in rows if row[0] == "default")


def late_of(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [row[1:] for row in rows if row[0] == "late"]


__all__ = ["Pause"]
