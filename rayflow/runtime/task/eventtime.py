"""Event time and timers for the task core: input watermarks and the timer queues.

A task's watermark is the minimum over its input channels' watermarks, leaving out idle channels
(an idle source does not hold time back) and counting an ended channel as the end of time.
Timestamps are integers in milliseconds since the epoch, as in Kafka and Flink.

>>> marks = InputWatermarks([("a", 0), ("a", 1)])
>>> marks.update(("a", 0), 100), marks.update(("a", 1), 50), marks.current
(None, 50, 50)
>>> marks.set_idle(("a", 1)), marks.end(("a", 0))
(100, 9223372036854775807)
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from typing import Any

MIN_TIME = -(2**63)
MAX_TIME = 2**63 - 1


class InputWatermarks:
    """Watermark per input channel; ``current`` is the task's event time."""

    def __init__(self, channels: Iterable[Any]) -> None:
        self.marks: dict[Any, int] = dict.fromkeys(channels, MIN_TIME)
        self.idle: set[Any] = set()
        self.current = MIN_TIME if self.marks else MAX_TIME

    def update(self, channel: Any, timestamp: int) -> int | None:
        """A watermark arrived; returns the task's new watermark if it advanced."""
        self.idle.discard(channel)
        if timestamp > self.marks[channel]:
            self.marks[channel] = timestamp
        return self._advance()

    def set_idle(self, channel: Any) -> int | None:
        self.idle.add(channel)
        return self._advance()

    @property
    def all_idle(self) -> bool:
        """Every input that has not ended is idle."""
        live = [c for c, mark in self.marks.items() if mark != MAX_TIME]
        return bool(live) and all(c in self.idle for c in live)

    def activate(self, channel: Any) -> None:
        """Data arrived on an idle channel: it counts again (it cannot move time back)."""
        self.idle.discard(channel)

    def end(self, channel: Any) -> int | None:
        self.idle.discard(channel)
        self.marks[channel] = MAX_TIME
        return self._advance()

    def _advance(self) -> int | None:
        active = [mark for channel, mark in self.marks.items() if channel not in self.idle]
        if not active:
            return None  # every input is idle: time stands still until one speaks again
        new = min(active)
        if new > self.current:
            self.current = new
            return new
        return None


class Timers:
    """Event-time and processing-time timers, each fired once, in timestamp order.

    >>> t = Timers()
    >>> t.register(20, True, "w2"); t.register(10, True, "w1"); t.register(10, True, "w1")
    >>> [(ts, payload) for ts, _, payload in t.due(15, event_time=True)]
    [(10, 'w1')]
    """

    def __init__(self) -> None:
        self._queues: dict[bool, list[tuple[int, int, Any]]] = {True: [], False: []}
        self._pending: set[tuple[bool, int, Any]] = set()
        self._order = itertools.count()

    def register(self, timestamp: int, event_time: bool = True, payload: Any = None) -> None:
        key = (event_time, timestamp, _hashable(payload))
        if key in self._pending:
            return  # Flink semantics: one timer per (time, payload)
        self._pending.add(key)
        heapq.heappush(self._queues[event_time], (timestamp, next(self._order), payload))

    def due(self, now: int, event_time: bool) -> list[tuple[int, bool, Any]]:
        """Pop every timer at or before ``now`` (a watermark or a processing-time clock)."""
        queue, fired = self._queues[event_time], []
        while queue and queue[0][0] <= now:
            timestamp, _, payload = heapq.heappop(queue)
            self._pending.discard((event_time, timestamp, _hashable(payload)))
            fired.append((timestamp, event_time, payload))
        return fired

    def entries(self) -> list[tuple[int, bool, Any]]:
        """Every pending timer as (timestamp, event_time, payload), for a snapshot."""
        return sorted(
            (
                (ts, event_time, payload)
                for event_time, queue in self._queues.items()
                for ts, _, payload in queue
            ),
            key=lambda entry: (entry[0], not entry[1]),
        )

    def next_processing_time(self) -> int | None:
        queue = self._queues[False]
        return queue[0][0] if queue else None

    def __len__(self) -> int:
        return len(self._queues[True]) + len(self._queues[False])


def _hashable(payload: Any) -> Any:
    try:
        hash(payload)
    except TypeError:
        return id(payload)
    return payload
