"""What a task reports: user errors (counted, kept for the UI, logged with the user's traceback)
and its counters and gauges (:meth:`Report.stats`, safe to call from another thread).

Under exactly-once a raise in ``process``, ``process_batch``, ``next_tuple`` or a timer fails the
task instead of the tuple: those calls change state that the next checkpoint keeps, so the job
recovers from the last complete checkpoint, as after a crash (dropping the tuple while keeping its
state change would break the promise).

>>> sorted(FATAL_UNDER_EXACTLY_ONCE)
['next_tuple', 'on_timer', 'process', 'process_batch']
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rayflow.api.metrics import LATENCY_BUCKETS, Histogram
from rayflow.errors import TaskError
from rayflow.runtime.acking.binding import acking_stats
from rayflow.runtime.io.channels import OutputChannel

if TYPE_CHECKING:
    from rayflow.api.tuple import Tuple
    from rayflow.runtime.task.core import TaskCore

log = logging.getLogger("rayflow.task")

FATAL_UNDER_EXACTLY_ONCE = frozenset({"process", "process_batch", "next_tuple", "on_timer"})
_MAX_ERRORS_KEPT = 10


class Report:
    """A task's counters and its recent user errors.

    The loop adds to ``executed``, ``exec_seconds`` and ``blocked_seconds`` as it goes; acks and
    fails of unreliable bolts, and user errors, come through the methods below.
    """

    def __init__(self, task: TaskCore) -> None:
        self.task = task
        self.executed = 0
        self.failed = 0
        self.acked = 0
        self.exec_seconds = 0.0
        self.execute_histogram = Histogram(LATENCY_BUCKETS)  # per tuple, batch means
        self.blocked_seconds = 0.0
        self.started_at = time.time()
        self.errors: deque[dict[str, Any]] = deque(maxlen=_MAX_ERRORS_KEPT)
        self._logged_errors = 0

    # ----------------------------------------------------------- user errors
    def call_user(self, fn: Callable[..., Any], what: str, *args: Any) -> None:
        """Call a user method; a raise is a user error (see :meth:`user_error`)."""
        try:
            fn(*args)
        except Exception as exc:
            self.user_error(what, exc, count=0)

    def user_error(self, what: str, exc: BaseException, count: int = 1) -> None:
        """A user exception fails its tuple(s): counted, kept for the UI, logged with traceback.

        Under exactly-once, a raise in ``process``, ``process_batch``, ``next_tuple`` or a timer
        fails the task instead: this raises :class:`TaskError` (chained to ``exc``)."""
        task = self.task
        fatal = task.exactly_once and what in FATAL_UNDER_EXACTLY_ONCE
        self.failed += count
        text = "".join(traceback.format_exception(exc))
        cls = task.component.class_ref.path
        self.errors.append(
            {
                "time": time.time(),
                "component": task.key[0],
                "task": task.key[1],
                "where": f"{cls}.{what}",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": text,
            }
        )
        self._logged_errors += 1
        outcome = (
            "under exactly_once the task fails and the job recovers from its last checkpoint"
            if fatal
            else "the tuple failed"
        )
        if fatal or self._logged_errors <= 20 or self._logged_errors % 1000 == 0:
            log.error(
                "%s %s (%s.%s) raised; %s (%d errors so far)\n%s",
                task.component.kind,
                task.name,
                cls,
                what,
                outcome,
                self._logged_errors,
                text,
            )
        if fatal:
            raise TaskError(
                task.key[0],
                task.key[1],
                f"{cls}.{what} raised {type(exc).__name__}: {exc} ({outcome})",
                text,
            ) from exc

    def user_ack(self, tup: Tuple) -> None:
        """``ack`` of a bolt without acking (reliability none): only counted."""
        self.acked += 1

    def user_fail(self, tup: Tuple) -> None:
        """``fail`` of a bolt without acking: only counted."""
        self.failed += 1

    def ack_unreliable(self) -> None:
        """Reliability none: ack each msg_id right after its emit, as Storm does without ackers."""
        collector = self.task.collector
        due = collector.acks_due[:]
        collector.acks_due.clear()  # the same list: the spout's emit closure holds it
        ack = self.task.user.obj.ack  # type: ignore[union-attr]
        for msg_id in due:
            self.acked += 1
            self.call_user(ack, "ack", msg_id)

    # --------------------------------------------------------------- metrics
    def stats(self) -> dict[str, Any]:
        """Counters and gauges, safe to call from another thread."""
        task = self.task
        s = task.collector.stats
        inputs = task.inputs
        acking = task.user.acking
        obj = task.user.obj
        executed = self.executed
        outputs = list(task.outputs.values())
        histograms = self.histograms()
        return {
            "component": task.key[0],
            "task": task.key[1],
            "kind": task.component.kind,
            "state": task.state,
            "counters": {
                "emitted": s.emitted,
                "transferred": s.transferred,
                "executed": executed,
                "failed": self.failed + (acking.failed if acking else 0),
                "acked": self.acked + (acking.acked if acking else 0),
                "duplicates": inputs.duplicates,
                "exec_seconds": self.exec_seconds,
                "blocked_seconds": self.blocked_seconds,
            },
            "execute_latency_ms": 1000 * self.exec_seconds / executed if executed else 0.0,
            "inbox": len(inputs.inbox),
            "inbox_peak": inputs.peak,
            "inbox_capacity": task.settings.channel_credits * len(inputs.channels),
            "pending_batches": sum(len(ch.pending) for ch in outputs),
            "blocked_on": [f"{ch.key[0]}[{ch.key[1]}]" for ch in outputs if ch.pending],
            # Receivers lost (being restarted): what goes to them is dropped meanwhile.
            "dropping_to": [f"{ch.key[0]}[{ch.key[1]}]" for ch in outputs if ch.broken],
            "dropped_batches": sum(ch.dropped for ch in outputs),
            "round_trip_ms": _mean_round_trip_ms(outputs),
            "active": task.active,
            "paused": task.paused,
            "aligning": task.aligner.waiting_for(),
            "waits_for": task.waits_for,  # at the end of its input
            # A spout's loop goes round even with nothing to read; one stuck in next_tuple not.
            "round_age": time.monotonic() - task.event_time.last_round if task.is_spout else None,
            "last_checkpoint": task.aligner.last_barrier,
            "watermark": task.event_time.watermark,
            "uptime": time.time() - self.started_at,
            # CPU time of the task's whole process (all threads; shared with other tasks when they
            # live in one process): what a task costs, where wall-clock latencies hide contention.
            "process_cpu_seconds": time.process_time(),
            "errors": list(self.errors),
            "metrics": obj.metrics.snapshot() if obj is not None else {},
            "histograms": histograms,
            **(acking_stats(acking, histograms) if acking is not None else {}),
        }

    def histograms(self) -> dict[str, Any]:
        """The built-in latency histograms (seconds), for ``/metrics``."""
        return {"execute_latency_seconds": self.execute_histogram.snapshot()}


def _mean_round_trip_ms(channels: list[OutputChannel]) -> float:
    batches = sum(ch.sent_batches - ch.inflight for ch in channels)
    return 1000 * sum(ch.round_trip_seconds for ch in channels) / batches if batches else 0.0
