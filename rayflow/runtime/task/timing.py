"""A task's event time: watermarks generated at spouts and merged at bolts, timers, tick tuples.

A spout with ``watermark.timestamp_field`` tracks the largest timestamp it emitted and sends a
watermark (that minus ``watermark.max_out_of_orderness``) every ``watermark.interval``; with
``watermark.idle_timeout`` it marks itself idle when it emits nothing for that long, so it does
not hold event time back downstream. A bolt's event time is the minimum over its inputs
(:class:`InputWatermarks`); when it advances, due event-time timers fire, then the watermark goes
on downstream.

>>> _duration_ms("5s", "watermark.interval"), _duration_ms(250, "tick.interval")
(5000, 250)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rayflow.api.components import Timer
from rayflow.api.tuple import TICK_STREAM, Tuple, TupleSource
from rayflow.errors import TopologyError
from rayflow.runtime.io.channels import InputChannel
from rayflow.runtime.io.messages import WATERMARK
from rayflow.runtime.task.eventtime import MAX_TIME, MIN_TIME, InputWatermarks, Timers
from rayflow.spec.durations import parse_duration

if TYPE_CHECKING:
    from rayflow.runtime.task.core import TaskCore

TICK = "__tick"  # the payload of the timer behind tick tuples
IDLE = None  # a watermark message whose payload is None marks the sender idle


class EventTime:
    """Watermarks in and out, timers and ticks of one task (see module docstring)."""

    def __init__(self, task: TaskCore, config: dict[str, Any]) -> None:
        self.task = task
        self.config = config
        self.tick_interval = _duration_ms(config.get("tick.interval"), "tick.interval")
        self.watermark_interval = _duration_ms(
            config.get("watermark.interval", "200ms"), "watermark.interval"
        )
        self.out_of_orderness = _duration_ms(
            config.get("watermark.max_out_of_orderness", 0), "watermark.max_out_of_orderness"
        )
        self.idle_timeout = _duration_ms(
            config.get("watermark.idle_timeout"), "watermark.idle_timeout"
        )
        self.reset()

    def reset(self) -> None:
        """Back to the start of time (a new task, or one reset in place)."""
        self.watermarks = InputWatermarks(self.task.inputs.channels)
        self.timers = Timers()
        self.max_event_time: int | None = None  # spouts: the largest timestamp emitted
        self.sent_watermark = MIN_TIME
        self.idle_sent = False
        self.next_watermark = 0.0  # spouts: when (monotonic seconds) the next one is due
        self.last_emit = 0.0  # spouts: when the last round emitted something
        self.last_round = 0.0  # spouts: when the loop last finished a round (a hung one: long)

    @property
    def watermark(self) -> int | None:
        """The task's event time in ms (a spout's last watermark sent, a bolt's input
        watermark); None before the first one and after the end of time."""
        mark = self.sent_watermark if self.task.is_spout else self.watermarks.current
        return None if mark in (MIN_TIME, MAX_TIME) else mark

    def start_spout(self, now: float) -> None:
        """A spout's loop starts (again) at ``now``: idleness counts from here."""
        self.next_watermark = self.last_emit = self.last_round = now

    # ---------------------------------------------------------------- spouts
    def spout_emit(self, emit: Callable[..., None]) -> Callable[..., None]:
        """The spout's emit; with ``watermark.timestamp_field`` it also tracks event time."""
        field = self.config.get("watermark.timestamp_field")
        if not field:
            return emit
        task = self.task
        fields = task.component.outputs.get("default", ())
        if field not in fields:
            raise TopologyError(
                f"spout '{task.key[0]}': watermark.timestamp_field '{field}' is not a field of "
                f"its default stream {list(fields)}"
            )
        index = fields.index(field)

        def emit_timestamped(values: list, msg_id: Any = None, stream: str = "default") -> None:
            emit(values, msg_id, stream)
            if stream == "default":
                ts = values[index]
                if self.max_event_time is None or ts > self.max_event_time:
                    self.max_event_time = ts

        return emit_timestamped

    def after_spout_round(self, now: float, emitted: bool) -> None:
        """A spout's round ended at ``now``: the periodic watermark, and idleness."""
        self.last_round = now
        if emitted:
            self.last_emit = now
            self.idle_sent = False
        if self.max_event_time is not None and now >= self.next_watermark:
            self.next_watermark = now + self.watermark_interval / 1000
            self.emit_watermark(self.max_event_time - self.out_of_orderness - 1)
        if self.idle_timeout and now - self.last_emit >= self.idle_timeout / 1000:
            self.mark_idle()

    def emit_watermark(self, timestamp: int) -> None:
        if timestamp > self.sent_watermark:
            self.sent_watermark = timestamp
            self.task.collector.broadcast(WATERMARK, timestamp)

    def mark_idle(self) -> None:
        if not self.idle_sent:
            self.idle_sent = True
            self.task.collector.broadcast(WATERMARK, IDLE)

    # ----------------------------------------------------------------- bolts
    def current_watermark(self) -> int:
        return self.watermarks.current

    def on_data(self, channel: InputChannel) -> None:
        """Data from ``channel`` while some input is idle: that input counts again (it cannot
        move time back)."""
        self.watermarks.activate(channel.key)
        self.idle_sent = False

    def on_watermark(self, channel: InputChannel, payload: int | None) -> None:
        if payload is IDLE:
            advanced = self.watermarks.set_idle(channel.key)
            if advanced is None and self.watermarks.all_idle:
                self.mark_idle()  # every input is idle: so is this task, downstream
        else:
            self.idle_sent = False
            advanced = self.watermarks.update(channel.key, payload)
        if advanced is not None:
            self._advance(advanced)

    def on_end(self, channel: InputChannel) -> None:
        """``channel`` ended: it counts as the end of time."""
        advanced = self.watermarks.end(channel.key)
        if advanced is not None:
            self._advance(advanced)

    def _advance(self, watermark: int) -> None:
        """Fire the event-time timers the watermark passed, then forward it downstream."""
        for timestamp, event_time, payload in self.timers.due(watermark, True):
            self._fire(timestamp, event_time, payload)
        self.task.collector.broadcast(WATERMARK, watermark)

    # ---------------------------------------------------------------- timers
    def start_ticks(self) -> None:
        if self.tick_interval:
            self.timers.register(self.task.clock() + self.tick_interval, False, TICK)

    def fire_processing_timers(self) -> None:
        """Fire the processing-time timers that are due."""
        for timestamp, event_time, payload in self.timers.due(self.task.clock(), False):
            self._fire(timestamp, event_time, payload)

    def fire_all(self) -> None:
        """The end of the input is the end of time: every timer but the ticks fires."""
        for timestamp, event_time, payload in self.timers.due(MAX_TIME, False):
            if payload != TICK:
                self._fire(timestamp, event_time, payload)

    def _fire(self, timestamp: int, event_time: bool, payload: Any) -> None:
        task = self.task
        obj = task.user.obj
        if payload is TICK:
            self.timers.register(timestamp + self.tick_interval, False, TICK)
            tick = Tuple([], TupleSource(TICK_STREAM, "__system", -1, ()))
            task.report.call_user(obj.process, "process", tick)  # type: ignore[union-attr]
            return
        timer = Timer(timestamp, event_time, payload)
        task.report.call_user(obj.on_timer, "on_timer", timer)  # type: ignore[union-attr]
        acking = task.user.acking
        if acking is not None:
            acking.flush_acks()  # acks made in on_timer


def _duration_ms(value: Any, key: str) -> int:
    """A duration from a component's config (``5s``; a bare number is ms) in ms; 0 if unset."""
    if value in (None, "", 0):
        return 0
    try:
        return int(parse_duration(value, "ms") * 1000)
    except ValueError as exc:
        raise TopologyError(f"config '{key}': {exc}") from None
