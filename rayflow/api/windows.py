"""Windowed bolts: tumbling, sliding and session windows, by count or by time, in processing or
event time, keyed or not, with allowed lateness and a late stream.

A windowed bolt is an ordinary bolt built on the core's timers and watermarks (no special case in
the runtime): it keeps the tuples of each open window and calls :meth:`WindowedBolt.process_window`
when the window closes: when the watermark passes its end (event time), when the clock does
(processing time), or when it holds ``size`` tuples (count windows).

The open windows are in the bolt's snapshot, or, with ``state.backend: rocksdb``, time windows
keyed by the grouping's fields are in the task's RocksDB (:mod:`rayflow.api.stored_windows`).

>>> from rayflow import Topology, testing
>>> from rayflow.testing import ListSink, TestingSpout
>>> class Events(TestingSpout):
...     outputs = ["word", "ts"]
>>> class CountWords(WindowedBolt):
...     outputs = ["word", "count", "start"]
...     window = {"type": "tumbling", "size": "10s", "timestamp_field": "ts"}
...     def process_window(self, window, tuples):
...         self.emit([window.key[0], len(tuples), window.start])
>>> t = Topology("windows")
>>> _ = t.spout("events", Events, args=([("a", 1_000), ("b", 2_000), ("a", 12_000)],))
>>> _ = t.bolt("count", CountWords).fields("events", "word")
>>> _ = t.bolt("sink", ListSink).global_("count")
>>> sorted(testing.run(t).outputs["sink"])
[('a', 1, 0), ('a', 1, 10000), ('b', 1, 0)]
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rayflow.api.components import Bolt, Timer
from rayflow.api.stored_windows import StoredWindows, windows_in_memory
from rayflow.api.tuple import Tuple
from rayflow.errors import TopologyError
from rayflow.keys import key_groups_of_task
from rayflow.spec.windows import WindowSpec
from rayflow.state.rocksdb import RocksStore

_END_OF_TIME = 2**63 - 2  # the last timer the end of the input fires


def event_millis(value: Any, field_name: str) -> int:
    """A tuple's event time as whole milliseconds: windows start, end and fire at ints, with
    either state backend (a float or numpy timestamp is floored).

    >>> event_millis(1_500.9, "ts"), event_millis(-0.5, "ts")
    (1500, -1)
    >>> event_millis("noon", "ts")
    Traceback (most recent call last):
    ...
    TypeError: timestamp_field 'ts' holds 'noon', not milliseconds since the epoch
    """
    if type(value) is int:
        return value
    if not isinstance(value, bool):  # a bool floors to 0 or 1: no timestamp
        try:
            return math.floor(value)
        except (TypeError, ValueError, OverflowError):
            pass
    raise TypeError(
        f"timestamp_field {field_name!r} holds {value!r}, not milliseconds since the epoch"
    )


LATE_LOG_EVERY = 60.0  # seconds between log lines about dropped late tuples

log = logging.getLogger("rayflow.windows")


@dataclass(frozen=True)
class Window:
    """One window: ``[start, end)`` in ms for time windows (None for count windows), its key
    (the values of the key fields, or None when not keyed) and how many tuples it holds."""

    start: int | None
    end: int | None
    key: tuple[Any, ...] | None
    count: int


@dataclass
class _Pane:
    start: int
    end: int
    tuples: list[Tuple] = field(default_factory=list)
    fired: bool = False


class WindowedBolt(Bolt):
    """Subclass it, set ``window`` (or the component's ``window:`` in YAML) and define
    ``process_window(window, tuples)``; emit results from there.

    ``window`` keys: ``type`` (tumbling, sliding, session), ``size`` (``5s`` or a count such as
    ``100``), ``slide``, ``gap`` (sessions), ``time`` (processing or event), ``timestamp_field``,
    ``max_out_of_orderness`` (event time from the tuples themselves, when no spout sends
    watermarks), ``allowed_lateness``, ``late_stream`` (tuples too late for any window go there,
    never dropped silently), ``key`` (key fields; by default the fields of the fields grouping).
    """

    window: ClassVar[Mapping[str, Any] | None] = None

    def process_window(self, window: Window, tuples: list[Tuple]) -> None:
        """A window closed (or, within allowed lateness, changed): handle its tuples."""
        raise NotImplementedError(f"{type(self).__name__} must define process_window()")

    # ------------------------------------------------------------------ setup
    def _windows_setup(self) -> None:
        context = self.context  # type: ignore[attr-defined]
        raw = context.config.get("window") or type(self).window
        if raw is None:
            raise TopologyError(
                f"windowed bolt '{context.component_id}' has no window: set the class's `window` "
                "or the component's `window:`"
            )
        self._spec = spec = WindowSpec.parse(raw)
        self._key_fields = spec.key if spec.key is not None else context.key_fields
        self._copy = context.reuses_tuples  # the executor hands out one reused Tuple
        self._own_time = spec.time == "event" and spec.max_out_of_orderness is not None
        if self._own_time:  # windows left at the end of the input fire then
            self.register_timer(_END_OF_TIME, True, ("flush", None, 0))
        self._panes: dict[tuple[Any, int], _Pane] = {}
        self._sessions: dict[Any, list[_Pane]] = {}
        self._counts: dict[Any, deque[Tuple]] = {}
        self._seen: dict[Any, int] = {}
        self._own_marks: dict[tuple[str, int], int] = {}
        self._own_watermark = -(2**63)
        self._stored = self._store_windows(context)

    def _store_windows(self, context: Any) -> StoredWindows | None:
        """The windows in the task's RocksDB (``state.backend: rocksdb``) when they are time
        windows keyed by the grouping's fields (so they move with their key groups); None:
        in the bolt's own snapshot."""
        state = self.__dict__.get("_rayflow_state")
        store = getattr(state, "store", None)
        keyed_as_routed = bool(self._key_fields) and tuple(self._key_fields) == tuple(
            context.key_fields
        )
        if not isinstance(store, RocksStore) or self._spec.count or not keyed_as_routed:
            return None
        if context.reliability == "at_least_once" and not self.auto_ack:
            return None  # the bolt acks or anchors to its windows' tuples: keep them as they are
        groups = key_groups_of_task(context.task_index, state.max_parallelism, context.parallelism)
        return StoredWindows(self, store, lambda name, on_new: state.due(name, groups, on_new))

    # --------------------------------------------------------------- tuples
    def process(self, tup: Tuple) -> None:
        if not hasattr(self, "_spec"):
            self._windows_setup()
        if self._copy and self._stored is None:
            tup = Tuple(tup.values, tup.source)
        spec = self._spec
        key = tuple(tup[f] for f in self._key_fields) if self._key_fields else None
        if spec.count:
            self._add_counted(key, tup)
            return
        if spec.time == "event":
            ts = event_millis(tup[spec.timestamp_field], spec.timestamp_field)  # type: ignore[index]
            if spec.max_out_of_orderness is not None:
                self._observe(tup, ts)
        else:
            ts = self.current_processing_time()
        if spec.type == "session":
            self._add_to_session(key, tup, ts)
        else:
            self._add_to_panes(key, tup, ts)

    def _now(self) -> int:
        if self._spec.time == "processing":
            return self.current_processing_time()
        return max(self.current_watermark(), self._own_watermark)

    def _is_late(self, end: int) -> bool:
        return self._spec.time == "event" and end - 1 + self._spec.allowed_lateness <= self._now()

    def _late(self, tup: Tuple) -> None:
        """A tuple after its window closed and its allowed lateness: to the late stream, or
        dropped, counted (``late_dropped``) and logged once in a while, as Flink does (an error
        here would fail tuples, or under exactly-once restart the job, for every late one)."""
        if self._spec.late_stream:
            self.emit(tup.values, stream=self._spec.late_stream)
            return
        self.metrics.counter("late_dropped").inc()  # type: ignore[attr-defined]
        now = time.monotonic()
        if now - getattr(self, "_late_logged", -LATE_LOG_EVERY) >= LATE_LOG_EVERY:
            self._late_logged = now
            log.warning(
                "%s: dropped a tuple at %s ms that came after its window closed and its allowed "
                "lateness (%d so far); set window.late_stream to keep such tuples",
                self.context.component_id,  # type: ignore[attr-defined]
                tup[self._spec.timestamp_field],  # type: ignore[index]
                self.metrics.counter("late_dropped").value,  # type: ignore[attr-defined]
            )

    def _add_to_panes(self, key: Any, tup: Tuple, ts: int) -> None:
        spec = self._spec
        step = spec.slide or spec.size
        last = ts - (ts % step)
        starts = range(last, ts - spec.size, -step)
        if all(self._is_late(start + spec.size) for start in starts):
            self._late(tup)
            return
        for start in starts:
            end = start + spec.size
            if self._is_late(end):
                continue
            if self._stored is not None:
                self._stored.add_to_pane(key, start, end, tup)
                continue
            pane = self._panes.get((key, start))
            if pane is None:
                pane = self._panes[(key, start)] = _Pane(start, end)
                self._timer(end - 1, ("fire", key, start))
            pane.tuples.append(tup)
            if pane.fired or (spec.time == "event" and end - 1 <= self._now()):
                self._fire(key, pane)  # late but within allowed lateness: fire (again) now

    def _add_to_session(self, key: Any, tup: Tuple, ts: int) -> None:
        spec = self._spec
        if self._is_late(ts + spec.gap):
            self._late(tup)
            return
        if self._stored is not None:
            self._stored.add_to_session(key, ts, spec.gap, tup)  # type: ignore[arg-type]
            return
        sessions = self._sessions.setdefault(key, [])
        merged = _Pane(ts, ts + spec.gap, [tup])
        for pane in [p for p in sessions if p.start <= merged.end and merged.start <= p.end]:
            sessions.remove(pane)  # touching or overlapping sessions merge (as in Flink)
            merged = _Pane(
                min(pane.start, merged.start),
                max(pane.end, merged.end),
                pane.tuples + merged.tuples,
            )
        sessions.append(merged)
        if spec.time == "event" and merged.end - 1 <= self._now():
            self._fire(key, merged)  # event time already passed its end: fire now
        self._timer(merged.end - 1, ("session", key, merged.end))

    def _timer(self, at: int, payload: tuple) -> None:
        """A window timer on the runtime's clock; with event time read from the tuples the bolt
        fires windows itself as its own watermark moves (see ``_observe``)."""
        if not self._own_time:
            self.register_timer(at, self._spec.time == "event", payload)

    def _add_counted(self, key: Any, tup: Tuple) -> None:
        spec = self._spec
        window = self._counts.setdefault(key, deque(maxlen=spec.size))
        window.append(tup)
        seen = self._seen[key] = self._seen.get(key, 0) + 1
        if spec.type == "tumbling" and len(window) == spec.size:
            self.process_window(Window(None, None, key, spec.size), list(window))
            window.clear()
        elif spec.type == "sliding" and seen % spec.slide == 0:
            self.process_window(Window(None, None, key, len(window)), list(window))

    def _observe(self, tup: Tuple, ts: int) -> None:
        """Watermarks from the tuples themselves: max timestamp per input task, minus the
        allowed out-of-orderness; the bolt's event time is the minimum over its inputs."""
        source = (tup.component, tup.task)
        if ts > self._own_marks.get(source, -(2**63)):
            self._own_marks[source] = ts
            inputs = self.context.inputs  # type: ignore[attr-defined]
            if all(task in self._own_marks for task in inputs):
                low = min(self._own_marks.values()) - self._spec.max_out_of_orderness - 1  # type: ignore[operator]
                if low > self._own_watermark:
                    self._own_watermark = low
                    self._fire_own(low)

    def _fire_own(self, upto: int) -> None:
        """Own event time reached ``upto``: fire the windows it passed, retire expired ones."""
        if self._stored is not None:
            self._stored.fire_own(upto)
            return
        for at, payload in sorted(self._pending_own(upto), key=lambda d: d[0]):
            self.on_timer(Timer(at, True, payload))
        lateness = self._spec.allowed_lateness
        for pane_key, pane in list(self._panes.items()):
            if pane.fired and pane.end - 1 + lateness <= upto:
                del self._panes[pane_key]
        for sessions in self._sessions.values():
            sessions[:] = [p for p in sessions if not (p.fired and p.end - 1 + lateness <= upto)]

    # ---------------------------------------------------- exactly-once state
    _STATE = ("_panes", "_sessions", "_counts", "_seen", "_own_marks", "_own_watermark")

    def snapshot(self) -> Any:
        """The window contents (the runtime keeps their timers); subclasses that keep more
        state of their own extend it."""
        if not hasattr(self, "_spec"):
            return None
        return {name: getattr(self, name) for name in self._STATE}

    def restore(self, snapshot: Any) -> None:
        if snapshot is None:
            return
        if not hasattr(self, "_spec"):
            self._windows_setup()
        for name in self._STATE:
            setattr(self, name, snapshot[name])
        self._windows_restored()

    def _windows_restored(self) -> None:
        """Move restored windows to where this backend keeps them: those of a memory-backend
        snapshot into the store, those of a RocksDB one (restored into the memory store) out of
        it, with their timers."""
        if self._stored is not None:
            self._stored.take_over(self._panes, self._sessions)
            self._panes, self._sessions = {}, {}
            self._stored.resume()
            return
        state = self.__dict__.get("_rayflow_state")
        if state is None:
            return
        panes, sessions = windows_in_memory(
            state.store,
            range(state.max_parallelism),
            lambda start, end, tuples, fired: _Pane(start, end, tuples, fired),
        )
        for (key, start), pane in panes.items():
            self._panes[(key, start)] = pane
            self._timer(pane.end - 1, ("fire", key, start))
        for key, held in sessions.items():
            self._sessions.setdefault(key, []).extend(held)
            for pane in held:
                self._timer(pane.end - 1, ("session", key, pane.end))

    def restore_rescaled(self, snapshots: list[Any]) -> None:
        """After a change of parallelism: the windows of the keys this task now owns, with
        their timers (after a rescale the runtime keeps only old task 0's timers)."""
        # the frozen key encoding fields grouping routes by
        from rayflow.keys import encode_fields, key_group_of, key_groups_of_task

        if not hasattr(self, "_spec"):
            self._windows_setup()
        context = self.context  # type: ignore[attr-defined]
        max_parallelism = context.config.get("max_parallelism", 128)
        mine = key_groups_of_task(context.task_index, max_parallelism, context.parallelism)

        def owned(key: Any) -> bool:
            if key is None:
                return context.task_index == 0
            return key_group_of(encode_fields(key), max_parallelism) in mine

        for snapshot in filter(None, snapshots):
            for (key, start), pane in snapshot["_panes"].items():
                if owned(key):
                    self._panes[(key, start)] = pane
                    self._timer(pane.end - 1, ("fire", key, start))
            for key, panes in snapshot["_sessions"].items():
                if owned(key):
                    self._sessions[key] = panes
                    for pane in panes:
                        self._timer(pane.end - 1, ("session", key, pane.end))
            for key, window in snapshot["_counts"].items():
                if owned(key):
                    self._counts[key] = window
                    self._seen[key] = snapshot["_seen"].get(key, 0)
            for source, mark in snapshot["_own_marks"].items():
                self._own_marks[source] = max(mark, self._own_marks.get(source, mark))
        self._windows_restored()

    # --------------------------------------------------------------- timers
    def on_timer(self, timer: Timer) -> None:
        if not hasattr(self, "_spec"):
            self._windows_setup()
        what, key, at = timer.payload
        if what == "flush":  # own event time: the input ended, so every window closes
            self._own_watermark = _END_OF_TIME
            self._fire_own(_END_OF_TIME)
            return
        if (what == "due") != (self._stored is not None):
            return  # a timer of the other backend's windows: restoring them made their own
        if what == "due":
            self._stored.fire_due(at)  # type: ignore[union-attr]
            return
        if what == "fire":
            pane = self._panes.get((key, at))
            if pane is None:
                return
            if timer.timestamp >= pane.end - 1 + self._spec.allowed_lateness and pane.fired:
                del self._panes[(key, at)]  # the allowed lateness is over
                return
            if not pane.fired:
                self._fire(key, pane)
            self._expire(timer, pane, ("fire", key, at), lambda: self._panes.pop((key, at), None))
        elif what == "session":
            for pane in list(self._sessions.get(key, ())):
                if pane.end != at:
                    continue  # merged into a longer session since; its own timer will come
                if pane.fired and timer.timestamp >= pane.end - 1 + self._spec.allowed_lateness:
                    self._sessions[key].remove(pane)
                    continue
                if not pane.fired:
                    self._fire(key, pane)
                self._expire(
                    timer, pane, ("session", key, at), lambda p=pane: self._sessions[key].remove(p)
                )

    def _expire(self, timer: Timer, pane: _Pane, payload: tuple, drop: Any) -> None:
        lateness = self._spec.allowed_lateness
        if self._own_time:
            return  # _fire_own retires panes once lateness has passed
        if lateness and timer.event_time:
            self.register_timer(pane.end - 1 + lateness, True, payload)
        else:
            drop()

    def _pending_own(self, upto: int) -> list[tuple[int, tuple]]:
        """Windows whose end the bolt's own watermark has passed (event time from tuples)."""
        due = [
            (p.end - 1, ("fire", k, s))
            for (k, s), p in self._panes.items()
            if not p.fired and p.end - 1 <= upto
        ]
        due += [
            (p.end - 1, ("session", k, p.end))
            for k, ps in self._sessions.items()
            for p in ps
            if not p.fired and p.end - 1 <= upto
        ]
        return due

    def _fire_stored(self, key: Any, start: int, end: int, tuples: list[Tuple]) -> None:
        self.process_window(Window(start, end, key, len(tuples)), tuples)

    def _fire(self, key: Any, pane: _Pane) -> None:
        pane.fired = True
        tuples = pane.tuples
        self.process_window(Window(pane.start, pane.end, key, len(tuples)), list(tuples))
