"""What a task reports: user errors (counted, kept for the UI, logged with the user's traceback)
and its counters and gauges. A mixin of :class:`rayflow.runtime.task.TaskCore`.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from rayflow.errors import TaskError
from rayflow.runtime.channels import OutputChannel

log = logging.getLogger("rayflow.task")

# Under exactly-once these user calls change state that the next checkpoint keeps: a raise there
# fails the task and the job recovers from the last complete checkpoint, as after a crash
# (dropping the tuple while keeping its state change would break the promise).
FATAL_UNDER_EXACTLY_ONCE = frozenset({"process", "process_batch", "next_tuple", "on_timer"})


class ReportMixin:
    """User errors and stats."""

    def _call_user(self, fn: Callable[..., Any], what: str, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._user_error(what, exc, count=0)

    def _user_error(self, what: str, exc: BaseException, count: int = 1) -> None:
        """A user exception fails its tuple(s): counted, kept for the UI, logged with traceback.

        Under exactly-once, a raise in ``process``, ``process_batch``, ``next_tuple`` or a timer
        fails the task instead: this raises :class:`TaskError` (chained to ``exc``)."""
        fatal = self.exactly_once and what in FATAL_UNDER_EXACTLY_ONCE
        self.failed += count
        text = "".join(traceback.format_exception(exc))
        cls = self.component.class_ref.path
        self.errors.append(
            {
                "time": time.time(),
                "component": self.key[0],
                "task": self.key[1],
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
                self.component.kind,
                self.name,
                cls,
                what,
                outcome,
                self._logged_errors,
                text,
            )
        if fatal:
            raise TaskError(
                self.key[0],
                self.key[1],
                f"{cls}.{what} raised {type(exc).__name__}: {exc} ({outcome})",
                text,
            ) from exc

    # --------------------------------------------------------------- metrics
    def stats(self) -> dict[str, Any]:
        """Counters and gauges, safe to call from another thread."""
        s = self.collector.stats
        executed = self.executed
        return {
            "component": self.key[0],
            "task": self.key[1],
            "kind": self.component.kind,
            "state": self.state,
            "counters": {
                "emitted": s.emitted,
                "transferred": s.transferred,
                "executed": executed,
                "failed": self.failed + (self.acking.failed if self.acking else 0),
                "acked": self.acked + (self.acking.acked if self.acking else 0),
                "duplicates": self.duplicates,
                "exec_seconds": self.exec_seconds,
                "blocked_seconds": self.blocked_seconds,
            },
            "execute_latency_ms": 1000 * self.exec_seconds / executed if executed else 0.0,
            "inbox": len(self.inbox),
            "inbox_peak": self.inbox_peak,
            "inbox_capacity": self.settings.channel_credits * len(self.inputs),
            "pending_batches": sum(len(ch.pending) for ch in list(self.outputs.values())),
            "blocked_on": [f"{k[0]}[{k[1]}]" for k, ch in list(self.outputs.items()) if ch.pending],
            "round_trip_ms": _mean_round_trip_ms(list(self.outputs.values())),
            "active": self.active,
            "uptime": time.time() - self.started_at,
            # CPU time of the task's whole process (all threads; shared with other tasks when they
            # live in one process): what a task costs, where wall-clock latencies hide contention.
            "process_cpu_seconds": time.process_time(),
            "errors": list(self.errors),
            "metrics": self.obj.metrics.snapshot() if self.obj is not None else {},
            "histograms": self._histograms(),
            **(self._acking_stats() if self.acking is not None else {}),
        }

    def _histograms(self) -> dict[str, Any]:
        """The built-in latency histograms (seconds), for ``/metrics``."""
        return {"execute_latency_seconds": self.execute_histogram.snapshot()}


def _mean_round_trip_ms(channels: list[OutputChannel]) -> float:
    batches = sum(ch.sent_batches - ch.inflight for ch in channels)
    return 1000 * sum(ch.round_trip_seconds for ch in channels) / batches if batches else 0.0
