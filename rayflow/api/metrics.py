"""User metrics: ``self.metrics.counter(name)``, ``.gauge(name)``, ``.histogram(name)`` in any
spout or bolt, reported with the built-in counters (``rayflow status``, REST, ``/metrics``).

>>> m = Metrics()
>>> m.counter("parsed").inc(); m.counter("parsed").inc(2); m.gauge("queue").set(7)
>>> m.histogram("size", buckets=(10, 100)).observe(42)
>>> snap = m.snapshot()
>>> snap["parsed"]["value"], snap["queue"]["value"], snap["size"]["buckets"]
(3, 7, [[10, 0], [100, 1], ['+Inf', 1]])
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from typing import Any

DEFAULT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
LATENCY_BUCKETS = (1e-6, 1e-5, 1e-4, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)
"""Seconds, for the built-in latency histograms (a tuple's execute time is often microseconds)."""
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Counter:
    """A count that only grows."""

    kind = "counter"

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("a counter only grows; use a gauge for values that go down")
        self.value += amount

    def snapshot(self) -> dict[str, Any]:
        return {"type": self.kind, "value": self.value}


class Gauge:
    """A value that is set (a queue length, a lag)."""

    kind = "gauge"

    def __init__(self) -> None:
        self.value: float = 0

    def set(self, value: float) -> None:
        self.value = value

    def snapshot(self) -> dict[str, Any]:
        return {"type": self.kind, "value": self.value}


class Histogram:
    """Observations counted into cumulative buckets (Prometheus' layout), with count and sum."""

    kind = "histogram"

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.bounds = sorted(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        """Record ``value`` (``times`` observations of it: a batch's mean per tuple)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.count += times
        self.sum += value * times

    def snapshot(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for bound, n in zip([*self.bounds, "+Inf"], self.counts, strict=True):
            running += n
            cumulative.append([bound, running])
        return {"type": self.kind, "count": self.count, "sum": self.sum, "buckets": cumulative}


class Metrics:
    """One task's user metrics by name; asking twice for a name gives the same metric."""

    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}

    def counter(self, name: str) -> Counter:
        return self._get(name, Counter)  # type: ignore[return-value]

    def gauge(self, name: str) -> Gauge:
        return self._get(name, Gauge)  # type: ignore[return-value]

    def histogram(self, name: str, buckets: Sequence[float] | None = None) -> Histogram:
        return self._get(name, Histogram, buckets or DEFAULT_BUCKETS)  # type: ignore[return-value]

    def _get(self, name: str, kind: type, *args: Any) -> Counter | Gauge | Histogram:
        metric = self._metrics.get(name)
        if metric is None:
            if not _NAME.match(name):
                raise ValueError(
                    f"metric name {name!r}: use letters, digits and underscores "
                    "(it becomes a Prometheus metric name)"
                )
            metric = self._metrics[name] = kind(*args)
        elif not isinstance(metric, kind):
            raise ValueError(f"metric {name!r} is a {metric.kind}, not a {kind.kind}")
        return metric

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: metric.snapshot() for name, metric in list(self._metrics.items())}
