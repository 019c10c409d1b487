"""``/metrics``: the master's topologies in Prometheus' text format (``prometheus_client``).

One sample per task, labelled ``topology``, ``component`` and ``task``: the counters
(``rayflow_emitted_total``, ``..._executed_total``, ``..._acked_total``, ``..._failed_total``),
busy and backpressure time (``..._execute_seconds_total``, ``..._backpressure_seconds_total``),
gauges (``rayflow_inbox_fill``, ``rayflow_execute_latency_mean_seconds`` and
``rayflow_complete_latency_mean_seconds`` since the task started, ``rayflow_pending`` trees,
``rayflow_watermark_lag_seconds`` where event time runs), latency histograms
(``rayflow_execute_latency_seconds`` per tuple, ``rayflow_complete_latency_seconds`` per spout
tree under at-least-once), one
``rayflow_topology_up`` per topology with its status, ``rayflow_restarts_total`` per task, for
exactly-once topologies ``rayflow_checkpoints_completed_total``, ``..._failed_total`` and the
latest checkpoint's ``rayflow_checkpoint_duration_seconds``, ``..._size_bytes`` and
``..._alignment_seconds``, and the components' own metrics (``self.metrics``) as
``rayflow_user_<name>`` with the same labels. ``deploy/grafana/rayflow.json`` is a dashboard over
these names.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from rayflow.master.master import JobMaster

LABELS = ["topology", "component", "task"]
COUNTERS = {
    "emitted": ("emitted", "tuples emitted"),
    "executed": ("executed", "tuples executed"),
    "acked": ("acked", "tuples acked"),
    "failed": ("failed", "tuples failed"),
    "execute_seconds": ("exec_seconds", "time spent in the user's code"),
    "backpressure_seconds": ("blocked_seconds", "time the outputs had no credit"),
}
HISTOGRAMS = {
    "execute_latency_seconds": "time in the user's code per tuple (each batch's mean)",
    "complete_latency_seconds": "time from a spout tuple to its tree's completion",
}
GAUGES = {  # name -> (the task's stats key, its scale, help)
    "inbox_fill": ("inbox_fill", 1.0, "share of the task's input credits in use"),
    "execute_latency_mean_seconds": (
        "execute_latency_ms",
        0.001,
        "mean time per executed tuple since the task started",
    ),
    "complete_latency_mean_seconds": (
        "complete_latency_ms",
        0.001,
        "mean time from a spout tuple to its tree's completion",
    ),
    "pending": ("pending", 1.0, "spout tuples awaiting their acks"),
    "watermark_lag_seconds": ("watermark_lag_s", 1.0, "how far the task's event time is behind"),
}


class _Collector:
    def __init__(self, master: JobMaster) -> None:
        self.master = master

    def collect(self) -> Iterator[Metric]:
        counters = {
            name: CounterMetricFamily(f"rayflow_{name}", help_, labels=LABELS)
            for name, (_key, help_) in COUNTERS.items()
        }
        gauges = {
            name: GaugeMetricFamily(f"rayflow_{name}", help_, labels=LABELS)
            for name, (_key, _scale, help_) in GAUGES.items()
        }
        histograms = {
            name: HistogramMetricFamily(f"rayflow_{name}", help_, labels=LABELS)
            for name, help_ in HISTOGRAMS.items()
        }
        up = GaugeMetricFamily(
            "rayflow_topology_up", "1 while the topology runs", labels=["topology", "status"]
        )
        restarts = CounterMetricFamily(
            "rayflow_restarts", "times the task was restarted or reset to a checkpoint",
            labels=LABELS,
        )  # fmt: skip
        checkpoints = _CheckpointFamilies()
        user: dict[str, Metric] = {}
        for job in list(self.master.jobs.values()):
            up.add_metric([job.name, job.status], 1.0 if job.status == "ACTIVE" else 0.0)
            deployment = job.deployment
            for component, index in deployment.tasks:
                count = deployment.restarts.get((component, index), 0)
                restarts.add_metric([job.name, component, str(index)], float(count))
            if deployment.checkpoints is not None:
                checkpoints.add(job.name, deployment.checkpoints.stats())
            for task in job.stats:
                labels = [job.name, task["component"], str(task["task"])]
                values = task.get("counters", {})
                for name, (key, _help) in COUNTERS.items():
                    counters[name].add_metric(labels, float(values.get(key, 0)))
                for name, (key, scale, _help) in GAUGES.items():
                    value = _gauge(task, key)
                    if value is not None:
                        gauges[name].add_metric(labels, scale * value)
                for name, metric in (task.get("metrics") or {}).items():
                    _add_user_metric(user, name, metric, labels)
                for name, metric in (task.get("histograms") or {}).items():
                    if name in histograms:
                        _add_histogram(histograms[name], metric, labels)
        yield up
        yield restarts
        yield from checkpoints.families()
        yield from counters.values()
        yield from gauges.values()
        yield from histograms.values()
        yield from user.values()


class _CheckpointFamilies:
    """Per exactly-once topology: checkpoints completed and failed, and the latest completed
    one's duration, size and alignment time."""

    def __init__(self) -> None:
        labels = ["topology"]
        self.completed = CounterMetricFamily(
            "rayflow_checkpoints_completed", "checkpoints completed", labels=labels
        )
        self.failed = CounterMetricFamily(
            "rayflow_checkpoints_failed", "checkpoints declined, timed out or unreadable",
            labels=labels,
        )  # fmt: skip
        self.duration = GaugeMetricFamily(
            "rayflow_checkpoint_duration_seconds",
            "the latest completed checkpoint's time from trigger to complete",
            labels=labels,
        )
        self.size = GaugeMetricFamily(
            "rayflow_checkpoint_size_bytes", "the latest completed checkpoint's size", labels=labels
        )
        self.alignment = GaugeMetricFamily(
            "rayflow_checkpoint_alignment_seconds",
            "the latest completed checkpoint's longest barrier alignment",
            labels=labels,
        )

    def add(self, topology: str, stats: dict[str, Any]) -> None:
        self.completed.add_metric([topology], float(stats["completed"]))
        self.failed.add_metric([topology], float(stats["failed"]))
        done = [h for h in stats["history"] if h.get("status") == "COMPLETED"]
        if done:  # the history is newest first
            latest = done[0]
            self.duration.add_metric([topology], (latest.get("duration_ms") or 0.0) / 1000)
            self.size.add_metric([topology], float(latest.get("bytes") or 0))
            self.alignment.add_metric([topology], (latest.get("align_ms") or 0.0) / 1000)

    def families(self) -> list[Metric]:
        return [self.completed, self.failed, self.duration, self.size, self.alignment]


def _add_user_metric(
    families: dict[str, Metric], name: str, metric: dict[str, Any], labels: list[str]
) -> None:
    kind = metric["type"]
    family = families.get(name)
    if family is None:
        make = {
            "counter": CounterMetricFamily,
            "gauge": GaugeMetricFamily,
            "histogram": HistogramMetricFamily,
        }[kind]
        family = families[name] = make(f"rayflow_user_{name}", f"user {kind}", labels=LABELS)
    if family.type != ("counter" if kind == "counter" else kind):
        return  # the same name with another type in another component: keep the first
    if kind == "histogram":
        _add_histogram(family, metric, labels)
    else:
        family.add_metric(labels, float(metric["value"]))  # type: ignore[call-arg]


def _add_histogram(family: Metric, metric: dict[str, Any], labels: list[str]) -> None:
    buckets = [(_bound(le), float(n)) for le, n in metric["buckets"]]
    family.add_metric(labels, buckets, float(metric["sum"]))  # type: ignore[attr-defined]


def _bound(le: Any) -> str:
    return "+Inf" if le == "+Inf" else repr(float(le))


def _gauge(task: dict[str, Any], key: str) -> float | None:
    """A task's gauge; None where it has none (no watermark yet: no sample, not a zero)."""
    if key == "inbox_fill":
        capacity = task.get("inbox_capacity") or 0
        return task.get("inbox", 0) / capacity if capacity else 0.0
    if key == "watermark_lag_s":
        mark = task.get("watermark")
        return None if mark is None else max(0.0, time.time() - mark / 1000)
    return float(task.get(key, 0) or 0.0)


def render_metrics(master: JobMaster) -> str:
    """The text a Prometheus scrape of ``/metrics`` gets."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(master))  # type: ignore[arg-type]
    return generate_latest(registry).decode()
