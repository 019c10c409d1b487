"""User metrics (``self.metrics``) reach the task stats that status, REST and /metrics read."""

from __future__ import annotations

import pytest

from rayflow import Bolt, Topology, Tuple
from rayflow.api.metrics import Metrics
from rayflow.master.summary import summarize
from rayflow.testing import ListSink, TestingSpout, run


class Measure(Bolt):
    outputs = ["n"]

    def process(self, tup: Tuple) -> None:
        self.metrics.counter("seen").inc()
        self.metrics.gauge("last").set(tup["value"])
        self.metrics.histogram("value", buckets=(5, 50)).observe(tup["value"])
        self.emit([tup["value"]])


def test_a_bolts_metrics_are_reported_per_task_and_summed_per_component() -> None:
    t = Topology("metered")
    t.spout("numbers", TestingSpout, args=(list(range(10)),))
    t.bolt("measure", Measure, parallelism=2).shuffle("numbers")
    t.bolt("sink", ListSink).global_("measure")
    result = run(t)
    tasks = result.tasks["measure"]
    assert sum(s["metrics"].get("seen", {}).get("value", 0) for s in tasks) == 10
    merged = summarize([s for comp in result.tasks.values() for s in comp], [], 0.0)
    metrics = merged["measure"]["metrics"]
    assert metrics["seen"] == {"type": "counter", "value": 10}
    assert metrics["value"]["count"] == 10 and metrics["value"]["sum"] == sum(range(10))
    assert metrics["last"]["max"] <= 9


def test_metric_names_and_kinds_are_checked() -> None:
    m = Metrics()
    m.counter("a")
    with pytest.raises(ValueError, match="is a counter, not a gauge"):
        m.gauge("a")
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        m.counter("bad name")
    with pytest.raises(ValueError, match="only grows"):
        m.counter("a").inc(-1)


def test_latency_histograms_are_in_the_task_stats_and_in_prometheus_text() -> None:
    from types import SimpleNamespace

    from rayflow.master.prometheus import render_metrics
    from rayflow.testing import ListSink, TestingSpout, run

    t = Topology("lat")
    t.spout("nums", TestingSpout, args=([[i] for i in range(100)],))
    t.bolt("sink", ListSink).shuffle("nums")
    result = run(t, overrides={"reliability": "at_least_once"})
    sink, spout = result.tasks["sink"][0], result.tasks["nums"][0]
    assert sink["histograms"]["execute_latency_seconds"]["count"] == 100
    assert spout["histograms"]["complete_latency_seconds"]["count"] == 100
    deployment = SimpleNamespace(tasks=[("nums", 0), ("sink", 0)], restarts={}, checkpoints=None)
    job = SimpleNamespace(name="lat", status="ACTIVE", stats=[sink, spout], deployment=deployment)
    lines = render_metrics(SimpleNamespace(jobs={"lat": job})).splitlines()  # type: ignore[arg-type]

    def sample(metric: str, component: str) -> float:
        found = [
            line for line in lines
            if line.startswith(metric + "{") and f'component="{component}"' in line
        ]  # fmt: skip
        assert len(found) == 1, (metric, component, found)
        return float(found[0].rsplit(" ", 1)[1])

    assert sample("rayflow_execute_latency_seconds_count", "sink") == 100
    assert sample("rayflow_complete_latency_seconds_count", "nums") == 100
    assert 0 < sample("rayflow_complete_latency_seconds_sum", "nums") < 60
