"""Event time for the task core: watermarks (generated at spouts, merged at bolts), timers and
tick tuples. A mixin of :class:`rayflow.runtime.task.TaskCore`, kept apart so each file has one
job; it uses the core's collector, user object and executor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rayflow.api.components import Timer
from rayflow.api.tuple import TICK_STREAM, Tuple, TupleSource
from rayflow.errors import TopologyError
from rayflow.runtime.channels import WATERMARK, InputChannel
from rayflow.spec.durations import parse_duration

if TYPE_CHECKING:
    pass

TICK = "__tick"  # the payload of the timer behind tick tuples
IDLE = None  # a watermark message whose payload is None marks the sender idle


class EventTimeMixin:
    """Watermark generation (spouts), watermark merging and timers (bolts), tick tuples."""

    def _spout_emit(self, emit: Callable[..., None]) -> Callable[..., None]:
        """The spout's emit; with ``watermark.timestamp_field`` it also tracks event time."""
        field = self.config.get("watermark.timestamp_field")
        if not field:
            return emit
        fields = self.component.outputs.get("default", ())
        if field not in fields:
            raise TopologyError(
                f"spout '{self.key[0]}': watermark.timestamp_field '{field}' is not a field of "
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

    def _emit_watermark(self, timestamp: int) -> None:
        if timestamp > self.sent_watermark:
            self.sent_watermark = timestamp
            self.collector.broadcast(WATERMARK, timestamp)

    def _mark_idle(self) -> None:
        if not self.idle_sent:
            self.idle_sent = True
            self.collector.broadcast(WATERMARK, IDLE)

    def _current_watermark(self) -> int:
        return self.watermarks.current

    def _on_watermark(self, channel: InputChannel, payload: int | None) -> None:
        if payload is IDLE:
            advanced = self.watermarks.set_idle(channel.key)
            if advanced is None and self.watermarks.all_idle:
                self._mark_idle()  # every input is idle: so is this task, downstream
        else:
            self.idle_sent = False
            advanced = self.watermarks.update(channel.key, payload)
        if advanced is not None:
            self._advance_event_time(advanced)

    def _advance_event_time(self, watermark: int) -> None:
        """Fire the event-time timers the watermark passed, then forward it downstream."""
        for timestamp, event_time, payload in self.timers.due(watermark, True):
            self._fire(timestamp, event_time, payload)
        self.collector.broadcast(WATERMARK, watermark)

    def _fire_processing_timers(self) -> float | None:
        """Fire due processing-time timers; returns seconds until the next one (or None)."""
        now = self.clock()
        for timestamp, event_time, payload in self.timers.due(now, False):
            self._fire(timestamp, event_time, payload)
        upcoming = self.timers.next_processing_time()
        return None if upcoming is None else max(0.0, (upcoming - self.clock()) / 1000)

    def _fire(self, timestamp: int, event_time: bool, payload: Any) -> None:
        if payload is TICK:
            self.timers.register(timestamp + self.tick_interval, False, TICK)
            tick = Tuple([], TupleSource(TICK_STREAM, "__system", -1, ()))
            self._call_user(self.obj.process, "process", tick)  # type: ignore[union-attr]
            return
        self._call_user(self.obj.on_timer, "on_timer", Timer(timestamp, event_time, payload))  # type: ignore[union-attr]
        if self.acking is not None:
            self.acking.flush_acks()  # acks made in on_timer


def _duration_ms(value: Any, key: str) -> int:
    """A duration from a component's config (``5s``; a bare number is ms) in ms; 0 if unset."""
    if value in (None, "", 0):
        return 0
    try:
        return int(parse_duration(value, "ms") * 1000)
    except ValueError as exc:
        raise TopologyError(f"config '{key}': {exc}") from None
