"""Per-component figures for ``rayflow status``, the REST API and the UI, from task stats.

Counters are summed over a component's tasks; ``capacity`` (the share of wall time a task spent
executing, Storm's figure: near 1 means add parallelism) and ``backpressure`` (the share of time
its outputs had no credit) come from the change since the previous sample, the worst task's.

>>> t0 = {"component": "c", "task": 0, "kind": "bolt", "counters": {"executed": 0,
...       "exec_seconds": 0.0, "blocked_seconds": 0.0}, "inbox": 0, "inbox_capacity": 10}
>>> t1 = {**t0, "counters": {"executed": 100, "exec_seconds": 0.5, "blocked_seconds": 0.0}}
>>> c = summarize([t1], [t0], 1.0)["c"]
>>> c["executed"], c["capacity"], c["rates"]["executed"]
(100, 0.5, 100.0)
"""

from __future__ import annotations

import time
from typing import Any

from rayflow.master.history import Owner
from rayflow.master.samples import RATES, sample
from rayflow.runtime.chaining import Chains
from rayflow.spec.model import TopologySpec

COUNTERS = RATES  # summed per component, and their rates over the interval


def summarize(
    stats: list[dict[str, Any]],
    previous: list[dict[str, Any]],
    seconds: float,
    figures: dict[Owner, dict[str, float]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Component id -> summed counters, rates per second, latencies, capacity, backpressure.

    The interval's figures (rates, capacity, backpressure) are those of
    :func:`~rayflow.master.samples.sample`: pass its ``figures`` when you have them, so the
    deltas are worked out once."""
    if figures is None:
        figures = sample(stats, previous, seconds, time.time())
    out: dict[str, dict[str, Any]] = {}
    exec_seconds: dict[str, float] = {}
    complete: dict[str, tuple[float, float]] = {}  # sum of latency x acked, sum of acked
    for task in sorted(stats, key=lambda s: (s["component"], s["task"])):
        comp = out.setdefault(
            task["component"],
            {
                "kind": task.get("kind", ""),
                "tasks": 0,
                **{k: 0 for k in COUNTERS},
                "rates": {},
                "execute_latency_ms": 0.0,
                "complete_latency_ms": 0.0,
                "capacity": 0.0,
                "backpressure": 0.0,
                "inbox_fill": 0.0,
                "pending": 0,
                "states": {},
            },
        )
        counters = task.get("counters", {})
        comp["tasks"] += 1
        for key in COUNTERS:
            comp[key] += counters.get(key, 0)
        capacity = task.get("inbox_capacity") or 0
        if capacity:
            comp["inbox_fill"] = max(comp["inbox_fill"], task.get("inbox", 0) / capacity)
        comp["pending"] += task.get("pending", 0)
        state = task.get("state", "unknown")
        comp["states"][state] = comp["states"].get(state, 0) + 1
        _merge_user_metrics(comp.setdefault("metrics", {}), task.get("metrics") or {})
        comp_id = task["component"]
        exec_seconds[comp_id] = exec_seconds.get(comp_id, 0.0) + counters.get("exec_seconds", 0.0)
        acked = counters.get("acked", 0)
        total, weight = complete.get(comp_id, (0.0, 0.0))
        complete[comp_id] = (total + acked * task.get("complete_latency_ms", 0.0), weight + acked)
    for comp_id, comp in out.items():  # means over all the component's tuples, not its tasks
        interval = figures.get((comp_id, None), {})
        comp["rates"] = {k: interval.get(k, 0.0) for k in COUNTERS}
        comp["capacity"] = round(interval.get("capacity", 0.0), 3)  # the worst task's
        comp["backpressure"] = round(interval.get("backpressure", 0.0), 3)
        if comp["executed"]:
            comp["execute_latency_ms"] = 1000 * exec_seconds[comp_id] / comp["executed"]
        total, weight = complete[comp_id]
        if weight:
            comp["complete_latency_ms"] = total / weight
    return out


def _merge_user_metrics(into: dict[str, Any], task: dict[str, Any]) -> None:
    """Sum a task's user metrics into its component's (gauges keep their max too).

    >>> into = {}
    >>> _merge_user_metrics(into, {"lag": {"type": "gauge", "value": 3}})
    >>> _merge_user_metrics(into, {"lag": {"type": "gauge", "value": 5}})
    >>> into["lag"]
    {'type': 'gauge', 'value': 8, 'max': 5}
    """
    for name, metric in task.items():
        kind = metric["type"]
        mine = into.setdefault(name, {"type": kind})
        if kind == "histogram":
            mine["count"] = mine.get("count", 0) + metric["count"]
            mine["sum"] = mine.get("sum", 0) + metric["sum"]
        else:
            mine["value"] = mine.get("value", 0) + metric["value"]
            if kind == "gauge":
                mine["max"] = max(mine.get("max", metric["value"]), metric["value"])


def recent_errors(stats: list[dict[str, Any]], limit: int = 20) -> list[dict[str, Any]]:
    """The newest user errors of all tasks, newest first."""
    errors = [e for s in stats for e in s.get("errors", ())]
    return sorted(errors, key=lambda e: e.get("time", 0), reverse=True)[:limit]


def graph_of(
    spec: TopologySpec, chains: Chains
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A topology's components and streams as the REST detail and the UI's graph show them.

    >>> from rayflow import Topology
    >>> from rayflow.testing import ListSink, TestingSpout
    >>> t = Topology("t")
    >>> _ = t.spout("s", TestingSpout, args=([[1]],))
    >>> _ = t.bolt("b", ListSink).forward("s")
    >>> spec = t.build()
    >>> components, streams = graph_of(spec, Chains(spec))
    >>> [(c["id"], c["chain"]) for c in components], streams[0]["chained"]
    ([('s', 's'), ('b', 's')], True)
    """
    components = [
        {
            "id": comp.id,
            "kind": comp.kind,
            "class": comp.class_ref.path,
            "parallelism": comp.parallelism,
            "chain": chains.head_of(comp.id),  # the component whose actors host it
            # a flow's component: the operators fused in it (rayflow.streams.plan)
            "operators": comp.config.get("flow.operators"),
        }
        for comp in spec.components
    ]
    streams = [
        {
            "from": s.source,
            "to": s.target,
            "stream": s.stream,
            "grouping": s.grouping.type,
            "fields": list(s.grouping.fields_),
            "chained": chains.head_of(s.target) == chains.head_of(s.source),
        }
        for s in spec.streams
    ]
    return components, streams
