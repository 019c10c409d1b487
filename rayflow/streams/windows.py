"""Flow windows: ``keyed.window(spec)`` aggregated with count, reduce, aggregate or process, and
``window_join``. Each key's open windows live in the bolt's keyed state (a table: they move
with their key group on a rescale), each holding its accumulator, not its items (but for
``process``, which gets them all). A window fires when event time (the watermark) or the clock
passes its end; with ``allowed_lateness`` it stays that much longer, and a late item within it
fires the window again with the item counted. Items later still go to ``late()`` or are dropped
and counted (``late_dropped``).

>>> from rayflow import Flow, testing
>>> flow = Flow("windows")
>>> events = flow.source([("a", 1_000), ("a", 4_000), ("b", 5_000), ("a", 12_000)])
>>> counts = (events.with_timestamps(lambda e: e[1]).key_by(lambda e: e[0])
...                 .window({"type": "tumbling", "size": "10s"}).count())
>>> _ = counts.map(lambda r: (r[0], r[1].start, r[2])).collect("counts")
>>> sorted(testing.run(flow).outputs["counts"])
[('a', 0, 2), ('a', 10000, 1), ('b', 0, 1)]
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from rayflow.api.components import Context, Timer
from rayflow.streams.keyed import KeyedHead
from rayflow.streams.pipeline import Step

if TYPE_CHECKING:
    from rayflow.streams.operators import FlowBolt

log = logging.getLogger("rayflow.streams")
LATE_LOG_EVERY = 60.0


class TimeWindow(NamedTuple):
    """A window's ``[start, end)`` in ms."""

    start: int
    end: int


def window_starts(ts: int, size: int, slide: int) -> range:
    """The starts of the tumbling (``slide == size``) or sliding windows holding ``ts``.

    >>> list(window_starts(12_500, 10_000, 5_000))
    [10000, 5000]
    >>> list(window_starts(-1, 10, 10))
    [-10]
    """
    last = ts - ts % slide  # Python's % floors: right for negative times too
    return range(last, ts - size, -slide)


class WindowHead(KeyedHead):
    """``keyed.window(spec).count() / reduce / aggregate / process``."""

    def __init__(self, step: Step, bolt: FlowBolt, context: Context) -> None:
        super().__init__(step, bolt, context)
        params = step.params
        self.window = w = params["window"]
        self.event = w["time"] == "event"
        self.session = w["type"] == "session"
        self.size, self.slide, self.gap = w["size"], w["slide"], w["gap"]
        self.lateness = w["allowed_lateness"]
        self.agg, self.init, self.merge = params["agg"], params.get("init"), params.get("merge")
        self.fn = params.get("fn")  # the aggregation's (window() itself takes none)
        # key index -> {start: [end, accumulator, fired]} (sessions: the same, by start)
        self.table = self.state.table("window")
        # window end -> key indexes with a window ending there (one timer per end)
        self.due = self.state.due("window", self.owned_groups(), self.timers_at)
        self.late_logged = -LATE_LOG_EVERY

    # -------------------------------------------------------------- items
    def now(self) -> int:
        if self.event:
            return self.bolt.current_watermark()
        return self.bolt.current_processing_time()

    def take(self, items: list, tss: list | None, keys: list, wire: str) -> None:
        now = self.now()
        clock = None if self.event else now
        late: list[int] = []
        for i, (key, item) in enumerate(zip(keys, items, strict=True)):
            ts = tss[i] if self.event else clock  # type: ignore[index]
            try:
                placed = self.place(key, item, ts, now, i)  # type: ignore[arg-type]
            except Exception as exc:
                self.failed(i, exc)
                continue
            if not placed:
                late.append(i)
        if late:
            self.too_late(
                [items[i] for i in late], None if tss is None else [tss[i] for i in late], late
            )

    def place(self, key: Any, item: Any, ts: int, now: int, origin: int) -> bool:
        """Add the item to its windows; False when it is too late for all of them."""
        at = self.index(key)
        windows = self.table.get(at)
        if windows is None:
            windows = self.table[at] = {}
        if self.session:
            return self.place_session(at, key, windows, item, ts, now, origin)
        placed = False
        size, lateness = self.size, self.lateness
        for start in window_starts(ts, size, self.slide):
            end = start + size
            if self.event and end - 1 + lateness <= now:
                continue  # closed, and its allowed lateness is over
            placed = True
            window = windows.get(start)
            if window is None:
                window = windows[start] = [end, self.fresh(), False]
                self.watch(at, end)
            window[1] = self.add(window[1], item)
            if window[2] or (self.event and end - 1 <= now):
                self.fire(key, start, window, origin)  # late, but within allowed lateness
        if not windows:
            del self.table[at]
        return placed

    def place_session(
        self, at: Any, key: Any, windows: dict, item: Any, ts: int, now: int, origin: int
    ) -> bool:
        end = ts + self.gap
        if self.event and end - 1 + self.lateness <= now:
            if not windows:
                del self.table[at]
            return False
        start, acc, fired = ts, self.add(self.fresh(), item), False
        for other in [s for s, w in windows.items() if s <= end and ts <= w[0]]:
            other_end, other_acc, other_fired = windows.pop(other)
            start, end = min(start, other), max(end, other_end)
            acc = self.merged(other_acc, acc)
            fired = fired or other_fired
        window = windows[start] = [end, acc, fired]
        self.watch(at, end)
        if fired or (self.event and end - 1 <= now):
            self.fire(key, start, window, origin)
        return True

    def fresh(self) -> Any:
        agg = self.agg
        if agg == "count":
            return 0
        if agg == "aggregate":
            return self.init()  # type: ignore[misc]
        if agg == "process":
            return []
        return _EMPTY  # reduce: the first item is the accumulator

    def add(self, acc: Any, item: Any) -> Any:
        agg = self.agg
        if agg == "count":
            return acc + 1
        if agg == "process":
            acc.append(item)
            return acc
        if agg == "reduce" and acc is _EMPTY:
            return item
        return self.fn(acc, item)

    def merged(self, a: Any, b: Any) -> Any:
        """Two sessions' accumulators, when an item joins them."""
        agg = self.agg
        if agg == "count":
            return a + b
        if agg == "process":
            return a + b
        if agg == "reduce":
            return self.fn(a, b)
        return self.merge(a, b)  # type: ignore[misc]

    def too_late(self, items: list, tss: list | None, origins: list[int]) -> None:
        if self.late is not None:
            self.bolt.runner.run(self.late, items, tss, None, origins)
            return
        self.bolt.metrics.counter("late_dropped").inc(len(items))
        now = time.monotonic()
        if now - self.late_logged >= LATE_LOG_EVERY:
            self.late_logged = now
            log.warning(
                "%s: dropped %d item(s) that came after their window closed and its allowed "
                "lateness; use .late() on the window to keep them",
                self.step.name,
                len(items),
            )

    # ------------------------------------------------------------- firing
    def watch(self, at: Any, end: int) -> None:
        self.due.add(at, end)

    def timers_at(self, end: int) -> None:
        """The first window ending at ``end``: its timers (firing, and the end of lateness)."""
        self.bolt.register_timer(end - 1, self.event, ("window", end))
        if self.lateness and self.event:
            self.bolt.register_timer(end - 1 + self.lateness, True, ("expire", end))

    def fire(self, key: Any, start: int, window: list, origin: int | None) -> None:
        window[2] = True
        end, acc = window[0], window[1]
        result = acc
        if self.agg == "process":
            try:
                result = self.fn(key, TimeWindow(start, end), list(acc))
            except Exception as exc:
                self.bolt.runner.report([origin] if origin is not None else [], exc)
                return
            if result is None:
                return
        self.put((key, TimeWindow(start, end), result), end - 1, origin)

    def on_timer(self, timer: Timer) -> None:
        payload = timer.payload
        if not (isinstance(payload, tuple) and payload and payload[0] in ("window", "expire")):
            return
        what, end = payload
        self.out, self.origins = [], []
        self.out_ts = [] if self.event else None
        keep = self.lateness and self.event
        for at in self.due.keys(end):
            windows = self.table.get(at)
            if windows is None:
                continue
            key = self.state.original(at)
            for start in [s for s, w in windows.items() if w[0] == end]:
                window = windows[start]
                if what == "window" and not window[2]:
                    self.fire(key, start, window, None)
                if what == "expire" or not keep:
                    del windows[start]
            if not windows:
                del self.table[at]
            self.state.settle_some()
        if what == "expire" or not keep:
            self.due.drop(end)
        self.send()

    def resume_timers(self) -> None:
        """The timers of the windows this task holds now (restored from keyed state)."""
        self.due.resume(
            (at, window[0]) for at, windows in self.table.items() for window in windows.values()
        )


_EMPTY = object()  # a reduce window's accumulator before its first item (add() replaces it)


class WindowJoinHead(KeyedHead):
    """``left.window_join(right, window, fn)``: ``fn(l, r)`` for every pair of equal key in the
    same (tumbling or sliding) window, when it closes."""

    def __init__(self, step: Step, bolt: FlowBolt, context: Context) -> None:
        super().__init__(step, bolt, context)
        w = step.params["window"]
        self.event = w["time"] == "event"
        self.size, self.slide, self.lateness = w["size"], w["slide"], w["allowed_lateness"]
        self.table = self.state.table("window_join")  # key index -> {start: [end, lefts, rights]}
        self.due = self.state.due("window_join", self.owned_groups(), self.timers_at)
        self.side = 0

    def on_rows(self, index: int, wire: str, rows: list[Any]) -> None:
        self.side = index
        super().on_rows(index, wire, rows)

    def take(self, items: list, tss: list | None, keys: list, wire: str) -> None:
        now = self.bolt.current_watermark() if self.event else self.bolt.current_processing_time()
        side = 1 + self.side  # 1: left, 2: right
        dropped = 0
        for i, (key, item) in enumerate(zip(keys, items, strict=True)):
            ts = tss[i] if self.event else now  # type: ignore[index]
            at = self.index(key)
            windows = self.table.get(at)
            if windows is None:
                windows = self.table[at] = {}
            placed = False
            for start in window_starts(ts, self.size, self.slide):
                end = start + self.size
                if self.event and end - 1 <= now:
                    continue
                placed = True
                window = windows.get(start)
                if window is None:
                    window = windows[start] = [end, [], []]
                    self.watch(at, end)
                window[side].append(item)
            if not placed:
                dropped += 1
            if not windows:
                del self.table[at]
        if dropped:
            self.bolt.metrics.counter("late_dropped").inc(dropped)

    def watch(self, at: Any, end: int) -> None:
        self.due.add(at, end)

    def timers_at(self, end: int) -> None:
        self.bolt.register_timer(end - 1, self.event, ("join", end))

    def on_timer(self, timer: Timer) -> None:
        payload = timer.payload
        if not (isinstance(payload, tuple) and payload and payload[0] == "join"):
            return
        end = payload[1]
        self.out, self.origins = [], []
        self.out_ts = [] if self.event else None
        fn = self.fn
        for at in self.due.keys(end):
            windows = self.table.get(at)
            if windows is None:
                continue
            for start in [s for s, w in windows.items() if w[0] == end]:
                _end, lefts, rights = windows.pop(start)
                for left in lefts:
                    for right in rights:
                        try:
                            joined = fn(left, right)
                        except Exception as exc:
                            self.bolt.runner.report([], exc)
                            continue
                        self.put(joined, end - 1, None)
            if not windows:
                del self.table[at]
            self.state.settle_some()
        self.due.drop(end)
        self.send()

    resume_timers = WindowHead.resume_timers  # the same: a timer per window end held
