"""A savepoint written by an earlier rayflow, kept under ``tests/fixtures/`` so that every later
rayflow is tested to restore it (the checkpoint format is a contract: key bytes, key groups and
the module paths of what a snapshot pickles).

The topology holds every kind of state a checkpoint carries: a source position (the spout's
cursor), keyed value state (a running count), window panes and the watermark that closes them
(tumbling event-time windows), and event-time timers. Its one sink is a transactional FileSink.

The savepoint is taken while the spout pauses halfway, so it holds half of the events; the sink's
files committed by then are kept beside it. Restored and run to the end, the committed output of
both runs together must equal :func:`expected_rows` exactly. Written with::

    python -m tests.savepoint_fixture tests/fixtures/savepoint-v1
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import time
from collections import Counter
from typing import Any

from rayflow import Bolt, Timer, Topology, Tuple, Window, WindowedBolt
from rayflow.connectors.files import FileSink
from rayflow.testing import Pause, TestingSpout

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "savepoint-v1")
EVENTS = [(f"k{i % 4}", 1_000 + i * 250 - (i % 3) * 400) for i in range(160)]
HALF = len(EVENTS) // 2
WINDOW_MS = 5_000
TIMER_AFTER_MS = 2_000


class Events(TestingSpout):
    outputs = ["key", "ts"]


class Count(Bolt):
    """Keyed value state: ("count", key, how many so far)."""

    outputs = ["kind", "key", "n"]

    def process(self, tup: Tuple) -> None:
        count = self.state.value("n", default=0)
        count.set(count.get() + 1)
        self.emit(["count", tup["key"], count.get()])


class Windows(WindowedBolt):
    """Tumbling event-time windows: ("window", key, start, count, sorted stamps)."""

    outputs = ["kind", "key", "start", "n", "stamps"]

    def process_window(self, window: Window, tuples: list[Tuple]) -> None:
        stamps = sorted(t["ts"] for t in tuples)
        self.emit(["window", window.key[0], window.start, window.count, stamps])


class Timers(Bolt):
    """An event-time timer per event, ``TIMER_AFTER_MS`` after it: ("timer", key, at)."""

    outputs = ["kind", "key", "at"]

    def process(self, tup: Tuple) -> None:
        self.register_timer(tup["ts"] + TIMER_AFTER_MS, payload=tup["key"])

    def on_timer(self, timer: Timer) -> None:
        self.emit(["timer", timer.payload, timer.timestamp])


def topology(out: str, pause: float = 0.0) -> Topology:
    """The fixture's topology; its sink writes under ``out/files``."""
    t = Topology(
        "fixture",
        config={
            "reliability": "exactly_once",
            "checkpoint.interval": "1h",  # only the savepoint
            "checkpoint.storage": os.path.join(out, "checkpoints"),
            "batch.size": 8,
        },
    )
    items: list[Any] = [*EVENTS[:HALF], Pause(pause), *EVENTS[HALF:]]
    t.spout(
        "events",
        Events,
        kwargs={"items": items},
        config={"watermark.timestamp_field": "ts", "watermark.max_out_of_orderness": "1s"},
    )
    t.bolt("count", Count, parallelism=2).fields("events", "key")
    window = {"type": "tumbling", "timestamp_field": "ts", "size": f"{WINDOW_MS}ms"}
    t.bolt("windows", Windows, parallelism=2, config={"window": window}).fields("events", "key")
    t.bolt("timers", Timers, parallelism=2).fields("events", "key")
    sink = t.bolt("sink", FileSink, kwargs={"path": os.path.join(out, "files")})
    for upstream in ("count", "windows", "timers"):
        sink.shuffle(upstream)
    return t


def expected_rows() -> Counter:
    """What the whole stream commits, computed the plain way."""
    rows: Counter = Counter()
    seen: Counter = Counter()
    panes: dict[tuple[str, int], list[int]] = {}
    for key, ts in EVENTS:
        seen[key] += 1
        rows[("count", key, seen[key])] += 1
        rows[("timer", key, ts + TIMER_AFTER_MS)] += 1
        panes.setdefault((key, ts - ts % WINDOW_MS), []).append(ts)
    for (key, start), stamps in panes.items():
        rows[("window", key, start, len(stamps), tuple(sorted(stamps)))] += 1
    return rows


def committed_rows(files: str) -> Counter:
    """The rows in the visible (committed) files of a FileSink folder."""
    rows: Counter = Counter()
    for path in glob.glob(os.path.join(files, "part-*")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                rows[tuple(tuple(v) if isinstance(v, list) else v for v in row)] += 1
    return rows


def write(target: str, work: str) -> None:
    """Run the topology until the spout pauses halfway, take a savepoint, and keep it (with the
    sink's committed files) under ``target``."""
    import ray

    from rayflow.runtime.driver.deploy import RayDeployment

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    deployment = RayDeployment(topology(work, pause=120.0).build())
    deployment.start()
    deadline = time.monotonic() + 120

    def executed(component: str) -> int:
        return sum(
            s["counters"]["executed"] for s in deployment.stats() if s["component"] == component
        )

    while any(executed(c) < HALF for c in ("count", "windows", "timers")):
        deployment.wait(timeout=0.2)
        assert time.monotonic() < deadline, "the first half was not processed in time"
    url = deployment.checkpoints.savepoint(timeout=60)
    files = os.path.join(work, "files")
    while not glob.glob(os.path.join(files, "part-*")) or glob.glob(os.path.join(files, ".*")):
        time.sleep(0.05)  # the sink commits the savepoint's output once it completes
        assert time.monotonic() < deadline, "the sink did not commit the savepoint's output"
    deployment.kill()
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(url, os.path.join(target, "savepoint"))
    os.makedirs(os.path.join(target, "files"))
    for path in glob.glob(os.path.join(files, "part-*")):
        shutil.copy(path, os.path.join(target, "files"))


if __name__ == "__main__":
    import tempfile

    write(sys.argv[1] if len(sys.argv) > 1 else FIXTURE, tempfile.mkdtemp())
