"""At-least-once for the task core: binds anchored emits, acks and fails on the user's object,
and runs spouts' ``ack``/``fail`` (see :mod:`rayflow.runtime.acking`). A mixin of
:class:`rayflow.runtime.task.TaskCore`.
"""

from __future__ import annotations

from typing import Any

from rayflow.api.tuple import Tuple
from rayflow.runtime.acker import ACKER
from rayflow.runtime.acking import Acking, spout_tasks


class AckingMixin:
    """The at-least-once part of a task (and the acks of spouts without acking)."""

    def _bind_acking(self, obj: Any) -> None:
        """At-least-once: emits anchor, ``ack``/``fail`` reach the ackers (see runtime.acking)."""
        if self.key[0] == ACKER:
            tasks = spout_tasks(self.spec)
            feedback = self.feedback
            assert feedback is not None, "an acker needs a way back to the spouts"
            obj.send_to_spout = lambda index, items: feedback(tasks[index], items)
            return
        settings = self.settings
        spout_index = spout_tasks(self.spec).index(self.key) if self.is_spout else -1
        acking = self.acking = Acking(
            self.collector,
            spout_index,
            settings.message_timeout,
            settings.max_spout_pending,
            on_ack=obj.ack,
            on_fail=obj.fail,
            on_error=lambda what, exc: self._user_error(what, exc, count=0),
        )
        if self.is_spout:
            obj.emit = self._spout_emit(acking.make_spout_emit())
            obj.emit_direct = acking.spout_emit_direct
            return
        obj.emit = acking.make_emit()
        obj.emit_many = acking.bolt_emit_many
        obj.emit_direct = acking.emit_direct
        obj.ack = acking.ack
        obj.fail = acking.fail

    def _acking_stats(self) -> dict[str, Any]:
        acking = self.acking
        assert acking is not None
        return {
            "pending": acking.pending_messages,
            "pending_peak": max(acking.pending_peak, acking.pending_messages),
            "complete_latency_ms": (
                1000 * acking.complete_histogram.sum / acking.complete_histogram.count
                if acking.complete_histogram.count
                else 0.0
            ),
            "histograms": {
                **self._histograms(),
                "complete_latency_seconds": acking.complete_histogram.snapshot(),
            },
        }

    def receive_acks(self, items: tuple[Any, Any]) -> None:
        """Complete roots from an acker, with the tags of their failed tuples (call on the
        loop's thread)."""
        if self.acking is not None:
            self.acking.completions.append(items)
            self._wake_loop()

    def _user_ack(self, tup: Tuple) -> None:
        self.acked += 1

    def _user_fail(self, tup: Tuple) -> None:
        self.failed += 1

    def _ack_unreliable(self) -> None:
        """Reliability none: ack each msg_id right after its emit, as Storm does without ackers."""
        due = self.collector.acks_due[:]
        self.collector.acks_due.clear()  # the same list: the spout's emit closure holds it
        ack = self.obj.ack  # type: ignore[union-attr]
        for msg_id in due:
            self.acked += 1
            self._call_user(ack, "ack", msg_id)

    # ----------------------------------------------------------------- bolts
