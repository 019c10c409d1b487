"""The Streams API variants of the benchmarks (:mod:`benchmarks.wordcount` runs them).

* ``streams wordcount``: ``flow.source(Sentences, parallelism=P).flat_map(str.split)
  .key_by(word).count_final()`` into a sink: the issue's flow, against the same baseline;
* ``streams map/filter``: ``flow.source(Numbers, parallelism=P).map(f).filter(g).sink(h)``, all
  fused into the source's task, against a one-process loop doing ``f``, ``g`` and ``h`` per item.

Each source task writes when it started, the sinks when they ended (files in a temporary folder,
as the Bytewax variants do): Ray's start-up and the deployment are left out, as for the other
rayflow rows.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from examples.wordcount import SENTENCES
from rayflow import Bolt, Context, Flow, Spout, Tuple


class TimedSentences(Spout):
    """Sentence ``i`` = ``SENTENCES[i % 5]`` for ``i < limit`` (task k of n: k, k+n, ...), one
    per ``next_tuple`` (as the topology benchmark's spout); writes its start to ``outdir``."""

    outputs = ["sentence"]

    def __init__(self, limit: int, outdir: str) -> None:
        self.limit = limit
        self.outdir = outdir

    def open(self, context: Context) -> None:
        self.task = context.task_index
        self.next_index = context.task_index
        self.step = context.parallelism
        Path(self.outdir, f"start-{self.task}").write_text(str(time.time()))

    def next_tuple(self) -> None:
        i = self.next_index
        if i >= self.limit:
            self.finish()
            return
        self.emit([SENTENCES[i % 5]])
        self.next_index = i + self.step

    def snapshot(self) -> int:
        return self.next_index

    def restore(self, snapshot: int) -> None:
        self.next_index = snapshot


class TimedNumbers(Spout):
    """``limit`` numbers between them (task k of n: its share), a thousand per ``next_tuple``:
    the same thousand rows (0..999) each time, made once in ``open`` (as the loop's numbers
    are not timed being made); writes its start when it opens and its end when it closes (its
    fused sink is done then)."""

    outputs = ["n"]

    def __init__(self, limit: int, outdir: str) -> None:
        self.limit = limit
        self.outdir = outdir

    def open(self, context: Context) -> None:
        self.task = context.task_index
        self.left = len(range(context.task_index, self.limit, context.parallelism))
        self.rows = [[n] for n in range(1000)]
        Path(self.outdir, f"start-{self.task}").write_text(str(time.time()))

    def next_tuple(self) -> None:
        if self.left <= 0:
            self.finish()
            return
        self.emit_many(self.rows if self.left >= 1000 else self.rows[: self.left])
        self.left -= 1000

    def close(self) -> None:
        Path(self.outdir, f"end-{self.task}").write_text(str(time.time()))

    def snapshot(self) -> int:
        return self.left

    def restore(self, snapshot: int) -> None:
        self.left = snapshot


class TimedEvents(Spout):
    """``(key, ts)`` events, ``ts`` = the event's index in ms (1,000 a second of event time)
    and one of ``keys`` keys, a thousand per ``next_tuple`` (task k of n: k, k+n, ...); writes
    its start to ``outdir``."""

    outputs = ["key", "ts"]

    def __init__(self, limit: int, outdir: str, keys: int = 100) -> None:
        self.limit = limit
        self.outdir = outdir
        self.keys = keys

    def open(self, context: Context) -> None:
        self.task = context.task_index
        self.next_index = context.task_index
        self.step = context.parallelism
        Path(self.outdir, f"start-{context.component_id}-{self.task}").write_text(str(time.time()))

    def next_tuple(self) -> None:
        i = self.next_index
        if i >= self.limit:
            self.finish()
            return
        stop = min(self.limit, i + 1000 * self.step)
        keys = self.keys
        self.emit_many([[f"k{n % keys}", n] for n in range(i, stop, self.step)])
        self.next_index = stop + (i - stop) % self.step

    def snapshot(self) -> int:
        return self.next_index

    def restore(self, snapshot: int) -> None:
        self.next_index = snapshot


class EndFile(Bolt):
    """Counts what it gets and writes the count and its end time to ``outdir``."""

    outputs: list[str] = []

    def __init__(self, outdir: str) -> None:
        self.outdir = outdir

    def prepare(self, context: Context) -> None:
        self.task = context.task_index
        self.seen = 0

    def process(self, tup: Tuple) -> None:
        self.seen += 1

    def cleanup(self) -> None:
        report = {"end": time.time(), "seen": self.seen}
        Path(self.outdir, f"end-{self.task}.json").write_text(json.dumps(report))


class CountsFile(Bolt):
    """The word counts (``(word, count)`` items), written with the end time to ``outdir``."""

    outputs: list[str] = []

    def __init__(self, outdir: str) -> None:
        self.outdir = outdir

    def prepare(self, context: Context) -> None:
        self.task = context.task_index
        self.counts: dict[str, int] = {}

    def process(self, tup: Tuple) -> None:
        word, count = tup[0]
        self.counts[word] = count

    def cleanup(self) -> None:
        report = {"end": time.time(), "counts": self.counts}
        Path(self.outdir, f"end-{self.task}.json").write_text(json.dumps(report))


def word(w: str) -> str:
    return w


def times_three_plus_one(n: int) -> int:
    return 3 * n + 1


def is_even(n: int) -> bool:
    return n % 2 == 0


class Total:
    """A function sink that sums what it gets (and the loop's as well)."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(self, n: int) -> None:
        self.total += n


def wordcount_flow(sentences: int, parallelism: int, outdir: str, config: dict[str, Any]) -> Flow:
    flow = Flow("bench-streams-wordcount", config=config)
    (
        flow.source(TimedSentences, parallelism=parallelism, args=(sentences, outdir))
        .flat_map(str.split)
        .key_by(word)
        .count_final()
        .sink(CountsFile, parallelism=1, args=(outdir,))
    )
    return flow


def map_filter_flow(items: int, parallelism: int, outdir: str, config: dict[str, Any]) -> Flow:
    flow = Flow("bench-streams-map-filter", config=config)
    (
        flow.source(TimedNumbers, parallelism=parallelism, args=(items, outdir))
        .map(times_three_plus_one)
        .filter(is_even)
        .sink(Total())
    )
    return flow


def _times(outdir: str) -> tuple[list[float], list[float]]:
    starts = [float(p.read_text()) for p in Path(outdir).glob("start-*")]
    ends = []
    for path in Path(outdir).glob("end-*"):
        text = path.read_text()
        ends.append(json.loads(text)["end"] if path.suffix == ".json" else float(text))
    return starts, ends


def run_wordcount(
    sentences: int, parallelism: int, config: dict[str, Any]
) -> tuple[dict[str, int], float, float]:
    """The flow's counts, its seconds (first source start to last sink end) and run() wall."""
    with tempfile.TemporaryDirectory(prefix="rayflow-bench-streams-") as outdir:
        began = time.time()
        result = wordcount_flow(sentences, parallelism, outdir, config).run()
        wall = time.time() - began
        if result.ended != "finished":
            raise RuntimeError(f"streams wordcount: the run ended {result.ended!r}")
        starts, ends = _times(outdir)
        counts: dict[str, int] = {}
        for path in Path(outdir).glob("end-*.json"):
            counts.update(json.loads(path.read_text())["counts"])
    return counts, max(ends) - min(starts), wall


def run_map_filter(items: int, parallelism: int, config: dict[str, Any]) -> tuple[float, float]:
    """Seconds (first source start to last source end) and run() wall of the fused flow."""
    with tempfile.TemporaryDirectory(prefix="rayflow-bench-streams-") as outdir:
        began = time.time()
        result = map_filter_flow(items, parallelism, outdir, config).run()
        wall = time.time() - began
        if result.ended != "finished":
            raise RuntimeError(f"streams map/filter: the run ended {result.ended!r}")
        starts, ends = _times(outdir)
    return max(ends) - min(starts), wall


def map_filter_loop(items: int, repeat: int = 3) -> float:
    """The one-process loop doing what the fused flow does per item: seconds (median)."""
    times = []
    for _ in range(repeat):
        total = Total()
        started = time.perf_counter()
        for n in range(items):
            m = times_three_plus_one(n)
            if is_even(m):
                total(m)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def event_key(event: tuple[str, int]) -> str:
    return event[0]


def event_time(event: tuple[str, int]) -> int:
    return event[1]


def windows_flow(events: int, parallelism: int, outdir: str, config: dict[str, Any]) -> Flow:
    """Events -> with_timestamps -> key_by -> 1 s tumbling counts per key -> a sink."""
    flow = Flow("bench-streams-windows", config=config)
    (
        flow.source(TimedEvents, parallelism=parallelism, args=(events, outdir))
        .with_timestamps(event_time, "100ms")
        .key_by(event_key)
        .window({"type": "tumbling", "size": "1s"})
        .count()
        .sink(EndFile, parallelism=1, args=(outdir,))
    )
    return flow


def join_flow(events: int, parallelism: int, outdir: str, config: dict[str, Any]) -> Flow:
    """Two event sources -> interval join (right within [left - 5 ms, left + 5 ms]) -> a sink;
    with 100 keys and 1,000 events a second each, about one match per left event."""
    flow = Flow("bench-streams-join", config=config)
    left = flow.source(TimedEvents, parallelism=parallelism, args=(events, outdir), name="left")
    right = flow.source(TimedEvents, parallelism=parallelism, args=(events, outdir), name="right")
    (
        left.with_timestamps(event_time, "100ms")
        .key_by(event_key)
        .interval_join(right.with_timestamps(event_time, "100ms").key_by(event_key), -5, 5, pair)
        .sink(EndFile, parallelism=1, args=(outdir,))
    )
    return flow


def pair(left: Any, right: Any) -> tuple[Any, Any]:
    return left, right


def run_events(
    build: Any, events: int, parallelism: int, config: dict[str, Any]
) -> tuple[float, int]:
    """Seconds (first source start to the sink's end) of a flow over ``events`` events, and
    what its sink got."""
    with tempfile.TemporaryDirectory(prefix="rayflow-bench-streams-") as outdir:
        result = build(events, parallelism, outdir, config).run()
        if result.ended != "finished":
            raise RuntimeError(f"{build.__name__}: the run ended {result.ended!r}")
        starts, ends = _times(outdir)
        seen = sum(json.loads(p.read_text())["seen"] for p in Path(outdir).glob("end-*.json"))
    return max(ends) - min(starts), seen
