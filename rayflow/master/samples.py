"""What the master's history keeps of each task and component per sample: figures over the
interval since the previous sample (rates, busy and blocked shares, latency means and percentiles),
and gauges as they are now (inbox fill, pending trees, the watermark and its lag).

The metric names (``GET .../history?metrics=``; ``user.<name>`` for a component's own metrics):

>>> print(" ".join(METRICS))  # doctest: +NORMALIZE_WHITESPACE
emitted transferred executed acked failed capacity backpressure inbox_fill pending
execute_latency_ms execute_latency_p50_ms execute_latency_p99_ms complete_latency_ms
complete_latency_p50_ms complete_latency_p99_ms watermark watermark_lag_s

>>> t0 = {"component": "c", "task": 0, "counters": {"executed": 0, "exec_seconds": 0.0}}
>>> t1 = {"component": "c", "task": 0, "counters": {"executed": 50, "exec_seconds": 0.1}}
>>> task = sample([t1], [t0], 0.5, now=0.0)[("c", 0)]
>>> task["executed"], task["execute_latency_ms"], task["capacity"]
(100.0, 2.0, 0.2)
"""

from __future__ import annotations

import math
from typing import Any

from rayflow.master.history import Owner

RATES = ("emitted", "transferred", "executed", "acked", "failed")  # per second
SHARES = ("capacity", "backpressure", "inbox_fill")  # 0..1; a component shows its worst task
LATENCIES = ("execute_latency", "complete_latency")  # built-in histograms, in seconds
METRICS = (
    *RATES,
    *SHARES,
    "pending",
    *(f"{name}{part}_ms" for name in LATENCIES for part in ("", "_p50", "_p99")),
    "watermark",  # event time in ms since the epoch (the component's: its slowest task's)
    "watermark_lag_s",  # how far event time is behind the clock
)
NAN = math.nan
_LATENCY_METRICS = frozenset(name for name in METRICS if name.endswith("_ms"))

Buckets = list[tuple[float, float]]  # (upper bound, cumulative count), Prometheus' layout


def sample(
    stats: list[dict[str, Any]], previous: list[dict[str, Any]], seconds: float, now: float
) -> dict[Owner, dict[str, float]]:
    """(component, task) and (component, None) -> metric -> value for one sample at ``now``
    (epoch seconds), ``seconds`` after ``previous`` (interval figures need both)."""
    before = {(s["component"], s["task"]): s for s in previous}
    figures: dict[Owner, dict[str, float]] = {}
    parts: dict[str, list[tuple[dict[str, float], dict[str, Any], dict[str, Any] | None]]] = {}
    for task in stats:
        key = (task["component"], task["task"])
        prior = before.get(key) if seconds > 0 else None
        figures[key] = _task(task, prior, seconds, now)
        parts.setdefault(task["component"], []).append((figures[key], task, prior))
    for component, members in parts.items():
        figures[(component, None)] = _component(members, seconds)
    return figures


def _task(
    task: dict[str, Any], prior: dict[str, Any] | None, seconds: float, now: float
) -> dict[str, float]:
    counters = task.get("counters", {})
    capacity = task.get("inbox_capacity") or 0
    out: dict[str, float] = {
        "inbox_fill": task.get("inbox", 0) / capacity if capacity else 0.0,
        "pending": float(task.get("pending", 0)),
    }
    mark = task.get("watermark")
    if mark is not None:
        out["watermark"] = float(mark)
        out["watermark_lag_s"] = max(0.0, now - mark / 1000)
    if prior is not None:
        was = prior.get("counters", {})
        for name in RATES:
            out[name] = max(0, counters.get(name, 0) - was.get(name, 0)) / seconds
        busy = max(0.0, counters.get("exec_seconds", 0.0) - was.get("exec_seconds", 0.0))
        blocked = max(0.0, counters.get("blocked_seconds", 0.0) - was.get("blocked_seconds", 0.0))
        out["capacity"] = min(1.0, busy / seconds)
        out["backpressure"] = min(1.0, blocked / seconds)
        executed = out["executed"] * seconds
        out["execute_latency_ms"] = 1000 * busy / executed if executed else NAN
        complete = _delta(task, prior, "complete_latency_seconds")
        out.update(_percentiles("execute_latency", _delta(task, prior, "execute_latency_seconds")))
        out.update(_percentiles("complete_latency", complete))
        count, total = _count_sum(task, prior, "complete_latency_seconds")
        out["complete_latency_ms"] = 1000 * total / count if count else NAN
    for name, metric in (task.get("metrics") or {}).items():
        value = _user_value(metric, ((prior or {}).get("metrics") or {}).get(name), seconds)
        if value is not None:
            out[f"user.{name}"] = value
    return out


def _component(
    members: list[tuple[dict[str, float], dict[str, Any], dict[str, Any] | None]], seconds: float
) -> dict[str, float]:
    """A component's figures from its tasks': sums of rates, the worst share, the slowest
    watermark, latency over all its tuples (percentiles from the merged histograms)."""
    tasks = [figures for figures, _task, _prior in members]
    out: dict[str, float] = {}
    names = {name for figures in tasks for name in figures}
    for name in names:
        values = [f[name] for f in tasks if name in f and f[name] == f[name]]
        if not values:
            continue
        if name in SHARES or name == "watermark_lag_s":
            out[name] = max(values)
        elif name == "watermark":
            out[name] = min(values)
        elif name not in _LATENCY_METRICS:  # rates, pending, user metrics: summed
            out[name] = sum(values)
    timed = [(f, t, p) for f, t, p in members if p is not None]
    if timed:
        working = [f for f, _t, _p in timed if f.get("executed")]
        executed = sum(f["executed"] for f in working)
        busy_ms = sum(f["execute_latency_ms"] * f["executed"] for f in working)
        out["execute_latency_ms"] = busy_ms / executed if executed else NAN
        for name in LATENCIES:
            merged = _merge([_delta(t, p, f"{name}_seconds") for _f, t, p in timed])
            out.update(_percentiles(name, merged))
        count = total = 0.0
        for _f, t, p in timed:
            n, s = _count_sum(t, p, "complete_latency_seconds")
            count, total = count + n, total + s
        out["complete_latency_ms"] = 1000 * total / count if count else NAN
    return out


def _delta(task: dict[str, Any], prior: dict[str, Any] | None, name: str) -> Buckets | None:
    """A histogram's buckets counted since ``prior`` (None when either has none)."""
    now = (task.get("histograms") or {}).get(name)
    was = ((prior or {}).get("histograms") or {}).get(name)
    if now is None or was is None or len(now["buckets"]) != len(was["buckets"]):
        return None
    return [
        (math.inf if le == "+Inf" else float(le), max(0.0, float(n) - float(m)))
        for (le, n), (_le, m) in zip(now["buckets"], was["buckets"], strict=True)
    ]


def _count_sum(
    task: dict[str, Any], prior: dict[str, Any] | None, name: str
) -> tuple[float, float]:
    now = (task.get("histograms") or {}).get(name)
    was = ((prior or {}).get("histograms") or {}).get(name)
    if now is None or was is None:
        return 0.0, 0.0
    count = now["count"] - was["count"]
    return (count, now["sum"] - was["sum"]) if count > 0 else (0.0, 0.0)


def _merge(deltas: list[Buckets | None]) -> Buckets | None:
    present = [d for d in deltas if d is not None]
    if not present:
        return None
    return [(le, sum(d[i][1] for d in present)) for i, (le, _n) in enumerate(present[0])]


def _percentiles(name: str, buckets: Buckets | None) -> dict[str, float]:
    if buckets is None or not buckets[-1][1]:
        return {}
    return {
        f"{name}_p50_ms": 1000 * quantile(0.5, buckets),
        f"{name}_p99_ms": 1000 * quantile(0.99, buckets),
    }


def quantile(q: float, buckets: Buckets) -> float:
    """The ``q`` quantile of cumulative ``buckets``, interpolated within its bucket as
    Prometheus' ``histogram_quantile`` does (the top finite bound if it falls in ``+Inf``).

    >>> round(quantile(0.5, [(0.001, 0), (0.01, 100), (0.1, 200), (math.inf, 200)]), 6)
    0.01
    >>> round(quantile(0.75, [(0.001, 0), (0.01, 100), (0.1, 200), (math.inf, 200)]), 6)
    0.055
    """
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == math.inf:
                return lower
            span = count - below
            return lower + (bound - lower) * ((rank - below) / span if span else 1.0)
        lower, below = bound, count
    return lower


def _user_value(metric: dict[str, Any], was: dict[str, Any] | None, seconds: float) -> float | None:
    """A user metric's value per sample: a gauge as it is, a counter's rate per second, a
    histogram's mean over the interval."""
    kind = metric.get("type")
    if kind == "gauge":
        return float(metric["value"])
    if was is None or seconds <= 0:
        return None
    if kind == "counter":
        return max(0.0, metric["value"] - was["value"]) / seconds
    count = metric["count"] - was["count"]
    return (metric["sum"] - was["sum"]) / count if count > 0 else None
