"""The master's history (``rayflow.master.history``) and what it samples of task stats
(``rayflow.master.samples``): downsampling, rings that wrap, tasks that go, the memory bound for
500 tasks, percentiles from histogram deltas, and the checks of ``GET .../history``."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import pytest

from rayflow.master.history import COMPONENT_BYTES, TASK_BYTES, WINDOWS, History
from rayflow.master.http import BadRequest, _history_query
from rayflow.master.samples import METRICS, sample


def test_each_window_keeps_its_span_at_its_resolution() -> None:
    history = History()
    start = 60 * 16_667.0  # a multiple of 60: windows' slots start on it
    for second in range(3 * 60 + 1):  # the value is the second: means are easy to check
        history.record(start + second, {("c", None): {"executed": float(second)}})
    recent = history.query([("c", None)], ["executed"], since=start + 170, now=start + 180)
    assert recent["step"] == 1.0
    assert recent["times"] == [start + s for s in range(170, 181)]
    assert recent["series"][0]["values"] == [float(s) for s in range(170, 181)]

    old = History()
    for second in range(0, 700):  # past the first window's 600 samples
        old.record(start + second, {("c", None): {"executed": float(second)}})
    ten = old.query([("c", None)], ["executed"], since=start, now=start + 700)
    assert ten["step"] == 10.0, "the first window no longer reaches back to the start"
    assert ten["times"][:2] == [start, start + 10]
    assert ten["series"][0]["values"][:2] == [4.5, 14.5], "each slot is its samples' mean"
    assert len(ten["times"]) == 69, "the slot still filling is not shown"
    young = old.query([("c", None)], ["executed"], since=start - 3600, now=start + 700)
    assert young["step"] == 10.0, "the 10 s window holds all there ever was"
    assert young["series"][0]["values"][5] == 54.5


def test_a_client_follows_a_window_by_asking_for_its_step_from_its_last_time() -> None:
    history = History()
    start = 60 * 16_667.0
    for second in range(700):
        history.record(start + second, {("c", None): {"executed": float(second)}})
    held = history.query([("c", None)], ["executed"], since=start, now=start + 700)
    assert held["step"] == 10.0
    for second in range(700, 725):
        history.record(start + second, {("c", None): {"executed": float(second)}})
    last = held["times"][-1]
    newer = history.query([("c", None)], ["executed"], since=last + 0.001, now=start + 725, step=10)
    assert newer["step"] == 10.0, "not the 1 s window, though it reaches back that far"
    assert newer["times"] == [start + 690, start + 700, start + 710]
    assert newer["series"][0]["values"] == [694.5, 704.5, 714.5]
    whole = history.query([("c", None)], ["executed"], since=start, now=start + 725)
    assert held["times"] + newer["times"] == whole["times"], "nothing served changed, none lost"
    tasks = history.query([("c", 0)], ["executed"], since=start, now=start + 725, step=60)
    assert tasks["step"] == 10.0, "a task has no 1-minute window: the usual choice"


def test_a_ring_wraps_and_keeps_only_its_newest_slots() -> None:
    history = History()
    _step, slots = WINDOWS[0]
    for n in range(slots + 25):
        history.record(float(n), {("c", 0): {"executed": float(n)}})
    window = history.windows[0]
    times, [values] = window.read([("c", 0, "executed")], since=0.0)
    assert len(times) == slots and times[0] == 25.0 and times[-1] == slots + 24
    assert values == [float(n) for n in range(25, slots + 25)]


def test_a_series_that_starts_late_or_stops_reads_none_where_it_had_no_sample() -> None:
    history = History()
    history.record(1.0, {("c", 0): {"executed": 1.0}})
    history.record(2.0, {("c", 0): {"executed": 2.0}, ("c", 1): {"executed": 5.0}})
    history.record(3.0, {("c", 1): {"executed": 6.0}})
    answer = history.query([("c", 0), ("c", 1)], ["executed"], since=0.0, now=3.0)
    assert [s["values"] for s in answer["series"]] == [[1.0, 2.0, None], [None, 5.0, 6.0]]
    history.forget_tasks([("c", 1)])
    assert history.metrics(("c", 0)) == [] and history.metrics(("c", 1)) == ["executed"]
    answer = history.query([("c", 0)], ["executed"], since=0.0, now=3.0)
    assert answer["series"][0]["values"] == [None, None, None]


def test_a_tasks_series_stop_at_three_hours_a_components_go_on_for_a_day() -> None:
    history = History()
    end = 4 * 3600  # a sample every 10 s for 4 hours: the 10 s window has wrapped
    for second in range(0, end, 10):
        history.record(float(second), {("c", 0): {"run": second}, ("c", None): {"run": second}})
    assert ("c", 0, "run") not in history.windows[2].values
    component = history.query([("c", None)], ["run"], since=0.0, now=end)
    assert component["step"] == 60.0 and component["series"][0]["values"][:2] == [25.0, 85.0]
    task = history.query([("c", 0)], ["run"], since=0.0, now=end)
    assert task["step"] == 10.0, "a task's longest view is the 3-hour window"
    assert task["times"][0] == end - 1080 * 10 - 10 and len(task["times"]) == 1080


def test_the_memory_of_500_tasks_history_is_what_the_module_states() -> None:
    """Every series is allocated whole on its first sample: one sample of every metric of 500
    tasks in 10 components takes the memory a day of them would."""
    tasks = {(f"c{n % 10}", n // 10): dict.fromkeys(METRICS, 1.0) for n in range(500)}
    components = {(f"c{n}", None): dict.fromkeys(METRICS, 1.0) for n in range(10)}
    tracemalloc.start()
    history = History()
    before = tracemalloc.get_traced_memory()[0]
    history.record(0.0, {**tasks, **components})
    history.record(11.0, {**tasks, **components})  # the 10 s window writes its first slot
    history.record(61.0, {**tasks, **components})  # and the minute window
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    rings = 500 * len(METRICS) * TASK_BYTES + 10 * len(METRICS) * COMPONENT_BYTES
    assert history.nbytes() == rings
    print(f"500 tasks x {len(METRICS)} metrics: {used / 1e6:.1f} MB ({rings / 1e6:.1f} MB rings)")
    assert used < rings * 1.1 + 2_000_000, "the rings are the memory; the rest is small"
    assert used < 70_000_000, "the bound the module docstring states for 500 tasks"


def _task(executed: int, busy: float, buckets: list[int], watermark: int | None = None) -> dict:
    bounds = [0.001, 0.01, 0.1, "+Inf"]
    cumulative = [[b, sum(buckets[: i + 1])] for i, b in enumerate(bounds)]
    return {
        "component": "split",
        "task": 0,
        "counters": {"executed": executed, "exec_seconds": busy, "blocked_seconds": 0.0},
        "inbox": 5,
        "inbox_capacity": 10,
        "watermark": watermark,
        "histograms": {
            "execute_latency_seconds": {
                "count": sum(buckets),
                "sum": busy,
                "buckets": cumulative,
            }
        },
        "metrics": {"lag": {"type": "gauge", "value": 7}, "seen": {"type": "counter", "value": 0}},
    }


def test_a_sample_holds_rates_shares_percentiles_watermarks_and_user_metrics() -> None:
    first = _task(0, 0.0, [0, 0, 0, 0])
    second = {**_task(200, 0.5, [0, 100, 100, 0], watermark=9_000), "task": 0}
    second["metrics"] = {**second["metrics"], "seen": {"type": "counter", "value": 40}}
    other = {**_task(0, 0.0, [0, 0, 0, 0]), "task": 1}
    other_now = {**_task(100, 0.1, [100, 0, 0, 0], watermark=5_000), "task": 1}
    figures = sample([second, other_now], [first, other], 2.0, now=10.0)
    task = figures[("split", 0)]
    assert task["executed"] == 100.0 and task["capacity"] == 0.25 and task["inbox_fill"] == 0.5
    assert task["execute_latency_ms"] == 2.5
    assert round(task["execute_latency_p50_ms"], 6) == 10.0
    assert round(task["execute_latency_p99_ms"], 3) == 98.2
    assert task["watermark"] == 9000.0 and task["watermark_lag_s"] == 1.0
    assert task["user.lag"] == 7.0 and task["user.seen"] == 20.0
    component = figures[("split", None)]
    assert component["executed"] == 150.0, "rates add up"
    assert component["capacity"] == 0.25, "shares are the worst task's"
    assert component["watermark"] == 5000.0 and component["watermark_lag_s"] == 5.0
    assert math.isclose(component["execute_latency_ms"], 2.0), "600 ms over 300 tuples"
    assert component["execute_latency_p50_ms"] < task["execute_latency_p50_ms"], "merged buckets"
    assert component["user.lag"] == 14.0
    first_only = sample([first], [], 0.0, now=10.0)[("split", 0)]
    assert "executed" not in first_only, "no rate without an interval"


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"metrics": "executed,__import__"}, "unknown metric '__import__'"),
        ({"metrics": ",".join(["executed"] * 33)}, "at most 32 metrics"),
        ({"component": "c", "task": "1e9"}, "'task' must be a task index"),
        ({"task": "1"}, "'task' needs a 'component'"),
        ({"since": "nan"}, "finite"),
        ({"since": "yesterday"}, "'since' must be epoch seconds"),
        ({"metrics": "user." + "x" * 200}, "unknown metric"),
        ({"step": "5"}, "'step' must be one of 1, 10, 60"),
        ({"step": "1e1"}, "'step' must be one of"),
    ],
)
def test_a_history_query_out_of_bounds_is_refused(query: dict[str, Any], error: str) -> None:
    with pytest.raises(BadRequest, match=error.replace("(", r"\(").replace("*", r"\*")):
        _history_query(query)
