"""Each topology's figures over time, for the UI's charts and ``GET .../history``.

Storm's three windows: every sample for 10 minutes (one a second, the master's stats interval),
means over 10 s for 3 hours, and means over a minute for a day. Each series (a component or one
of its tasks, and a metric) is a ``float32`` array per window, allocated whole when the series
first appears, so memory is known up front: a task's series keep the first two windows
(``TASK_BYTES``, 6.7 KB), a component's all three (``COMPONENT_BYTES``, 12.5 KB). 500 tasks with
every one of the 17 built-in metrics hold 59 MB of rings, 64 MB in all as measured by
``tests/master/test_history.py`` (a task without acking or event time has 11 of them: 40 MB).
History lives in the master's memory: a restarted master starts it afresh (Prometheus, fed by
``/metrics``, keeps the long view).

>>> h = History()
>>> h.record(100.0, {("split", 0): {"executed": 10.0}, ("split", None): {"executed": 10.0}})
>>> h.record(101.0, {("split", 0): {"executed": 30.0}, ("split", None): {"executed": 30.0}})
>>> answer = h.query([("split", 0)], ["executed"], since=0.0, now=101.0)
>>> answer["step"], answer["times"], answer["series"][0]["values"]
(1.0, [100.0, 101.0], [10.0, 30.0])
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

# (seconds per slot, slots): 10 minutes of samples, 3 hours of 10 s means, a day of minutes
WINDOWS = ((1.0, 600), (10.0, 1080), (60.0, 1440))
TASK_WINDOWS = 2  # a task's series keep the first two; a component's all three
NAN = math.nan

SeriesKey = tuple[str, int | None, str]  # component, task (None: the whole component), metric
Owner = tuple[str, int | None]

TASK_BYTES = 4 * sum(slots for _step, slots in WINDOWS[:TASK_WINDOWS])
COMPONENT_BYTES = 4 * sum(slots for _step, slots in WINDOWS)


class Window:
    """One resolution: a ring of ``slots`` times and, per series, a ring of values.

    The first window stores every sample as it comes; the others fill a slot with the mean of
    the samples in its ``step`` seconds and write it when a sample of a later slot arrives."""

    def __init__(self, step: float, slots: int, raw: bool) -> None:
        self.step, self.slots, self.raw = step, slots, raw
        self.times = array("d", [NAN]) * slots
        self.values: dict[SeriesKey, array[float]] = {}
        self.head = 0  # the slot written next
        self.open_slot: float | None = None  # the start of the slot being averaged
        self.sums: dict[SeriesKey, float] = {}
        self.counts: dict[SeriesKey, int] = {}

    def add(self, now: float, sample: dict[SeriesKey, float]) -> None:
        if self.raw:
            self._write(now, sample)
            return
        start = now - now % self.step
        if self.open_slot is not None and start != self.open_slot:
            means = {key: total / self.counts[key] for key, total in self.sums.items()}
            self._write(self.open_slot, means)
            self.sums, self.counts = {}, {}
        self.open_slot = start
        sums, counts = self.sums, self.counts
        for key, value in sample.items():
            if value == value:  # not NaN
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1

    def _write(self, when: float, sample: dict[SeriesKey, float]) -> None:
        head = self.head
        self.times[head] = when
        for key, ring in self.values.items():
            ring[head] = sample.get(key, NAN)
        for key in sample.keys() - self.values.keys():
            ring = self.values[key] = array("f", [NAN]) * self.slots
            ring[head] = sample[key]
        self.head = (head + 1) % self.slots

    def reaches(self, since: float) -> bool:
        """Whether this window holds everything from ``since`` on (or all there ever was)."""
        oldest = self.times[self.head]
        return oldest != oldest or oldest <= since  # never wrapped, or old enough

    def read(self, keys: Sequence[SeriesKey], since: float) -> tuple[list[float], list[list]]:
        """The times at or after ``since``, oldest first, and each key's values (None: no value;
        a key this window does not hold reads as all None)."""
        order = [(self.head + i) % self.slots for i in range(self.slots)]
        slots = [i for i in order if self.times[i] == self.times[i] and self.times[i] >= since]
        times = [self.times[i] for i in slots]
        columns = []
        for key in keys:
            ring = self.values.get(key)
            columns.append(
                [None] * len(slots) if ring is None else [_finite(ring[i]) for i in slots]
            )
        return times, columns

    def forget(self, owners: set[Owner]) -> None:
        for key in [k for k in self.values if (k[0], k[1]) in owners]:
            del self.values[key]


class History:
    """A topology's series in the :data:`WINDOWS` (see module docstring)."""

    def __init__(self) -> None:
        self.windows = [Window(step, slots, raw=n == 0) for n, (step, slots) in enumerate(WINDOWS)]
        self.owners: dict[Owner, set[str]] = {}  # what each component or task has a series of

    def record(self, now: float, figures: dict[Owner, dict[str, float]]) -> None:
        """One sample: for each (component, task or None for the component), metric -> value."""
        everything = {(c, t, m): v for (c, t), values in figures.items() for m, v in values.items()}
        components = {key: v for key, v in everything.items() if key[1] is None}
        for n, window in enumerate(self.windows):
            # a task's series end with the task windows; the component's go on
            window.add(now, everything if n < TASK_WINDOWS else components)
        for (component, task), values in figures.items():
            self.owners.setdefault((component, task), set()).update(values)

    def forget_tasks(self, keep: Iterable[tuple[str, int]]) -> None:
        """Drop the series of tasks not in ``keep`` (a rebalance changed the parallelism)."""
        alive = set(keep)
        gone = {o for o in self.owners if o[1] is not None and (o[0], o[1]) not in alive}
        for window in self.windows:
            window.forget(gone)
        for owner in gone:
            del self.owners[owner]

    def metrics(self, owner: Owner) -> list[str]:
        return sorted(self.owners.get(owner, ()))

    def query(
        self,
        owners: Sequence[Owner],
        metrics: Sequence[str],
        since: float,
        now: float,
        step: float | None = None,
    ) -> dict[str, Any]:
        """Every owner's ``metrics`` from ``since`` (epoch seconds) on, from the window of
        ``step`` seconds if there is one for them, else the finest that reaches back that far
        (a task's: from the first two). A client that holds a window's answer asks for the
        same ``step`` from its last time on: a slot, once served, never changes."""
        tasks_asked = any(task is not None for _c, task in owners)
        usable = self.windows[:TASK_WINDOWS] if tasks_asked else self.windows
        # the finest that reaches back that far, else the longest view there is
        window = next((w for w in usable if w.step == step), None) or next(
            (w for w in usable if w.reaches(since)), usable[-1]
        )
        keys = [(component, task, metric) for component, task in owners for metric in metrics]
        times, columns = window.read(keys, since)
        return {
            "step": window.step,
            "times": times,
            "series": [
                {"component": c, "task": t, "metric": m, "values": values}
                for (c, t, m), values in zip(keys, columns, strict=True)
            ],
        }

    def nbytes(self) -> int:
        """The bytes of every ring held (the values; the times are a few KB)."""
        return sum(
            ring.itemsize * len(ring) for window in self.windows for ring in window.values.values()
        )


def _finite(value: float) -> float | None:
    """A JSON-safe value: NaN (no sample) becomes None."""
    return None if value != value else round(value, 6)
