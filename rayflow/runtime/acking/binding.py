"""At-least-once on a task's user object: anchored emits, ``ack`` and ``fail`` that reach the
ackers, and a spout's ``ack``/``fail`` called when its trees complete (the protocol is in
:mod:`rayflow.runtime.acking.tracker`). An acker bolt gets its way back to the spouts instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rayflow.runtime.acking.acker import ACKER
from rayflow.runtime.acking.tracker import Acking, spout_tasks

if TYPE_CHECKING:
    from rayflow.runtime.task.core import TaskCore


def bind_acking(task: TaskCore, obj: Any) -> Acking | None:
    """Bind at-least-once onto ``obj``; returns the task's :class:`Acking` (None for an acker)."""
    spec = task.spec
    if task.key[0] == ACKER:
        tasks = spout_tasks(spec)
        feedback = task.feedback
        assert feedback is not None, "an acker needs a way back to the spouts"
        obj.send_to_spout = lambda index, items: feedback(tasks[index], items)
        return None
    settings = task.settings
    spout_index = spout_tasks(spec).index(task.key) if task.is_spout else -1
    report = task.report
    acking = Acking(
        task.collector,
        spout_index,
        settings.message_timeout,
        settings.max_spout_pending,
        on_ack=obj.ack,
        on_fail=obj.fail,
        on_error=lambda what, exc: report.user_error(what, exc, count=0),
    )
    if task.is_spout:
        obj.emit = task.event_time.spout_emit(acking.make_spout_emit())
        obj.emit_direct = acking.spout_emit_direct
        return acking
    obj.emit = acking.make_emit()
    obj.emit_many = acking.bolt_emit_many
    obj.emit_direct = acking.emit_direct
    obj.ack = acking.ack
    obj.fail = acking.fail
    return acking


def acking_stats(acking: Acking, histograms: dict[str, Any]) -> dict[str, Any]:
    """The at-least-once part of a task's stats: pending trees, complete latency."""
    complete = acking.complete_histogram
    return {
        "pending": acking.pending_messages,
        "pending_peak": max(acking.pending_peak, acking.pending_messages),
        "complete_latency_ms": 1000 * complete.sum / complete.count if complete.count else 0.0,
        "histograms": {**histograms, "complete_latency_seconds": complete.snapshot()},
    }
