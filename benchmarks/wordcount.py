"""Word count throughput: plain Python, rayflow (per-tuple and batch), Bytewax; and latency.

Every variant counts the words of the same ``--sentences`` sentences (Storm's five sentences in
turn, 6.4 words each on average) and must end with the same counts as the plain Python loop,
which is the per-core limit everything else is compared to. One run prints, in one process tree:

* ``baseline``: ``for s in sentences: for w in s.split(): counts[w] = counts.get(w, 0) + 1``;
* ``rayflow per-tuple``: spout -> split -> count (fields grouping on ``word``) on an embedded
  Ray, with ``process``/``emit`` per tuple (the example's ``SplitSentence`` and ``WordCount``);
* ``rayflow batch``: the same topology with ``process_batch``/``emit_many``;
* ``per-tuple at_least_once``, ``batch at_least_once``: the same two under
  ``reliability: at_least_once``, the spout emitting each sentence with a ``msg_id``; printed as
  a ratio to their unacked runs too (``--skip-acking`` leaves them out);
* ``streams (Flow)``: the Streams API word count (``benchmarks.streams``), fused and combined,
  and a line for a fused ``map``/``filter`` flow against its one-process loop
  (``--skip-streams`` leaves them out);
* ``bytewax``: Bytewax's ``flat_map`` + ``count_final`` over the same sentences, in one and in
  ``--parallelism`` processes (``python -m bytewax.run`` subprocesses), when it is installed;
* ``latency``: p50/p99 end-to-end latency of the per-tuple topology fed at ``--latency-load``
  (default half) of the per-tuple throughput just measured.

rayflow words/s are total words / (last count task's end - spout start): Ray start-up and the
deployment of the actors are left out and reported apart as "overhead" (the rest of
``Topology.run()``'s wall time). Bytewax is timed the same way (first source read to last sink
close) with its process start-up reported as overhead.

Run from the repository root::

    python -m benchmarks.wordcount [--sentences N] [--parallelism P] [--batch-size B]
                                   [--skip-bytewax] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from examples.wordcount import SENTENCES, SplitSentence, WordCount
from rayflow import Batch, Bolt, Context, Spout, Topology, Tuple
from rayflow.spec.settings import Settings

if TYPE_CHECKING:
    from bytewax.dataflow import Dataflow

ROOT = Path(__file__).resolve().parent.parent
TIMING = "timing"
"""The stream on which spouts and count tasks report when they started and ended."""
TIMING_FIELDS = ["component", "task", "start", "end"]
WORDS_PER_SENTENCE = sum(len(s.split()) for s in SENTENCES) / len(SENTENCES)
MAX_LATENCY_SAMPLES = 200_000
BYTEWAX_MISSING = "bytewax: not installed (make bench installs it: pip install 'rayflow[bench]')"


class BenchError(Exception):
    """A variant gave wrong counts or did not finish: the benchmark fails (exit status 1)."""


# ================================================================ rayflow components
class SentenceSpout(Spout):
    """Emits sentence ``i`` = ``SENTENCES[i % 5]`` for ``i < limit`` (task ``k`` of ``n`` emits
    ``k, k + n, ...``), ``per_call`` sentences per ``next_tuple``; reports its start on
    ``timing`` when done."""

    outputs = {"default": ["sentence"], TIMING: TIMING_FIELDS}

    def __init__(self, limit: int, per_call: int = 1, reliable: bool = False) -> None:
        self.limit = limit
        self.per_call = per_call
        self.reliable = reliable

    def open(self, context: Context) -> None:
        self.task = context.task_index
        self.next_index = context.task_index
        self.step = context.parallelism
        self.started = time.time()
        self.emitted = self.acked = 0

    def ack(self, msg_id: Any) -> None:
        self.acked += 1

    def next_tuple(self) -> None:
        i = self.next_index
        if i >= self.limit:
            if self.acked < self.emitted:
                return  # at-least-once: finish once every tree is acked
            self.emit(["spout", self.task, self.started, time.time()], stream=TIMING)
            self.finish()
            return
        if self.reliable:
            self.emit([SENTENCES[i % len(SENTENCES)]], msg_id=i)
            self.emitted += 1
            self.next_index = i + self.step
            return
        if self.per_call == 1:
            self.emit([SENTENCES[i % len(SENTENCES)]])
            self.next_index = i + self.step
            return
        emit, sentences, n = self.emit, SENTENCES, len(SENTENCES)
        stop = min(self.limit, i + self.per_call * self.step)
        for j in range(i, stop, self.step):
            emit([sentences[j % n]])
        self.next_index = i + self.per_call * self.step


class TimedWordCount(WordCount):
    """``examples.wordcount.WordCount`` (per-tuple ``process``) that also reports, on ``timing``,
    when its input ended."""

    outputs = {"default": ["word", "count"], TIMING: TIMING_FIELDS}

    def prepare(self, context: Context) -> None:
        super().prepare(context)
        self.task = context.task_index
        self.prepared = time.time()

    def cleanup(self) -> None:
        ended = time.time()
        super().cleanup()
        self.emit(["count", self.task, self.prepared, ended], stream=TIMING)


class SplitBatch(Bolt):
    """``SplitSentence`` with ``process_batch``/``emit_many``."""

    outputs = ["word"]

    def process_batch(self, batch: Batch) -> None:
        self.emit_many([[w] for s in batch.values for w in s[0].split()])


class CountBatch(TimedWordCount):
    """``TimedWordCount`` with ``process_batch``."""

    def process_batch(self, batch: Batch) -> None:
        counts = self.counts
        for (word,) in batch.values:
            counts[word] = counts.get(word, 0) + 1


class CountsSink(Bolt):
    """Collects the final counts and the timing reports as ``(stream, *values)`` rows."""

    outputs: list[str] = []

    def prepare(self, context: Context) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def process(self, tup: Tuple) -> None:
        self.rows.append((tup.stream, *tup.values))

    def collected_rows(self) -> list[tuple[Any, ...]]:
        return self.rows


class RateSpout(Spout):
    """Emits ``[sentence, time.time()]`` at ``rate`` sentences/s, ``limit`` in all."""

    outputs = ["sentence", "ts"]

    def __init__(self, rate: float, limit: int, max_burst: int = 1000) -> None:
        self.rate = rate
        self.limit = limit
        self.max_burst = max_burst

    def open(self, context: Context) -> None:
        self.started = time.time()
        self.sent = 0

    def next_tuple(self) -> None:
        sent = self.sent
        if sent >= self.limit:
            self.finish()
            return
        now = time.time()
        due = min(int((now - self.started) * self.rate), self.limit, sent + self.max_burst) - sent
        if due <= 0:
            return  # nothing due: the runtime flushes and sleeps 1 ms
        emit, sentences, n = self.emit, SENTENCES, len(SENTENCES)
        for i in range(sent, sent + due):
            emit([sentences[i % n], now])
        self.sent = sent + due


class LatencySplit(Bolt):
    """Per-tuple split that forwards the sentence's timestamp with each word."""

    outputs = ["word", "ts"]

    def process(self, tup: Tuple) -> None:
        sentence, ts = tup.values
        for word in sentence.split():
            self.emit([word, ts])


class LatencyCount(Bolt):
    """Per-tuple count that records ``(ts, time.time() - ts)`` of every ``stride``-th word."""

    outputs: list[str] = []

    def __init__(self, stride: int = 1) -> None:
        self.stride = stride

    def prepare(self, context: Context) -> None:
        self.counts: dict[str, int] = {}
        # Samples in float arrays: a tuple per sample is an object the cycle collector walks
        # at every pass while the run lasts (it made the tail latency it measured).
        self.sent, self.took = array("d"), array("d")
        self.until_sample = self.stride

    def process(self, tup: Tuple) -> None:
        word, ts = tup.values
        self.counts[word] = self.counts.get(word, 0) + 1
        self.until_sample -= 1
        if not self.until_sample:
            self.until_sample = self.stride
            self.sent.append(ts)
            self.took.append(time.time() - ts)

    def collected_rows(self) -> list[tuple[float, float]]:
        return list(zip(self.sent, self.took, strict=True))


# ================================================================ results
@dataclass
class Measured:
    """One throughput variant."""

    variant: str
    words: int
    seconds: float
    overhead: float | None = None
    note: str = ""

    @property
    def words_per_s(self) -> float:
        return self.words / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Latency:
    """Latency percentiles of the per-tuple topology under a fixed offered load."""

    load: float
    offered_words_per_s: float
    achieved_words_per_s: float
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class Report:
    sentences: int
    words: int
    parallelism: int
    batch_size: int
    linger_ms: float | None
    variants: list[Measured] = field(default_factory=list)
    latency: Latency | None = None
    skipped: list[str] = field(default_factory=list)


def human(rate: float) -> str:
    """``6300000.0`` -> ``6.3M``.

    >>> human(6_300_000), human(851_000), human(12)
    ('6.3M', '851K', '12')
    """
    if rate >= 1e6:
        return f"{rate / 1e6:.1f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.0f}K"
    return f"{rate:.0f}"


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    if not ordered:
        return float("nan")
    rank = math.ceil(q * len(ordered) - 1e-9)
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def check_counts(variant: str, counts: dict[str, int], expected: dict[str, int]) -> None:
    if counts == expected:
        return
    wrong = sorted(w for w in set(counts) | set(expected) if counts.get(w) != expected.get(w))
    shown = ", ".join(f"{w!r}: {counts.get(w)} != {expected.get(w)}" for w in wrong[:5])
    raise BenchError(
        f"{variant}: final counts differ from the baseline's for {len(wrong)} word(s) "
        f"(got != expected: {shown}{', ...' if len(wrong) > 5 else ''})"
    )


# ================================================================ the variants
def sentence_list(n: int) -> list[str]:
    return [SENTENCES[i % len(SENTENCES)] for i in range(n)]


def run_baseline(n: int, repeat: int = 3) -> tuple[dict[str, int], Measured]:
    """The plain single-process loop, median of ``repeat`` runs (building the list of sentences
    is not timed)."""
    sentences = sentence_list(n)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        counts: dict[str, int] = {}
        for s in sentences:
            for w in s.split():
                counts[w] = counts.get(w, 0) + 1
        times.append(time.perf_counter() - started)
    seconds = sorted(times)[len(times) // 2]
    return counts, Measured(
        "baseline (1 process)", sum(counts.values()), seconds, note=f"median of {repeat}"
    )


def build_topology(
    batch: bool,
    sentences: int,
    parallelism: int,
    per_call: int,
    reliable: bool = False,
    chained: bool = False,
) -> Topology:
    """spout x1 -> split xP (shuffle) -> count xP (fields) -> sink; ``chained``: spout xP ->
    split xP over FORWARD edges, so each split task runs in a spout task's actor."""
    split, count = (SplitBatch, CountBatch) if batch else (SplitSentence, TimedWordCount)
    t = Topology("bench-wordcount-" + ("batch" if batch else "tuple"))
    kwargs = {"limit": sentences, "per_call": per_call, "reliable": reliable}
    t.spout("sentences", SentenceSpout, kwargs=kwargs, parallelism=parallelism if chained else 1)
    splitter = t.bolt("split", split, parallelism=parallelism)
    splitter.forward("sentences") if chained else splitter.shuffle("sentences")
    t.bolt("count", count, parallelism=parallelism).fields("split", "word")
    (
        t.bolt("sink", CountsSink)
        .global_("count")
        .global_("count", stream=TIMING)
        .global_("sentences", stream=TIMING)
    )
    return t


def run_rayflow(
    variant: str,
    batch: bool,
    sentences: int,
    parallelism: int,
    overrides: dict[str, Any],
    per_call: int,
    expected: dict[str, int],
    reliable: bool = False,
    chained: bool = False,
) -> Measured:
    topology = build_topology(batch, sentences, parallelism, per_call, reliable, chained)
    began = time.time()
    result = topology.run(overrides=overrides)
    wall = time.time() - began
    failed = sum(result.counter(c, "failed") for c in result.components)
    if result.ended != "finished" or failed:
        raise BenchError(f"{variant}: the run ended {result.ended!r} with {failed:g} failed tuples")
    counts: dict[str, int] = {}
    starts: list[float] = []
    ends: list[float] = []
    for row in result.outputs.get("sink", []):
        if row[0] == TIMING:
            _, component, _task, start, end = row
            if component == "spout":
                starts.append(start)
            else:
                ends.append(end)
        else:
            _, word, count = row
            if word in counts:
                raise BenchError(f"{variant}: two count tasks reported {word!r}")
            counts[word] = count
    check_counts(variant, counts, expected)
    spouts = parallelism if chained else 1
    if len(starts) != spouts or len(ends) != parallelism:
        raise BenchError(
            f"{variant}: expected timing reports from {spouts} spout(s) and {parallelism} "
            f"count tasks, got {len(starts)} and {len(ends)}"
        )
    seconds = max(ends) - min(starts)
    return Measured(
        variant,
        sum(counts.values()),
        seconds,
        overhead=wall - seconds,
        note=f"run() took {wall:.2f}s",
    )


def run_latency(
    words_per_s: float, load: float, seconds: float, parallelism: int, overrides: dict[str, Any]
) -> Latency:
    rate = load * words_per_s / WORDS_PER_SENTENCE  # sentences/s
    limit = max(1, int(rate * seconds))
    stride = max(1, int(limit * WORDS_PER_SENTENCE) // MAX_LATENCY_SAMPLES)
    t = Topology("bench-wordcount-latency")
    t.spout("sentences", RateSpout, kwargs={"rate": rate, "limit": limit})
    t.bolt("split", LatencySplit, parallelism=parallelism).shuffle("sentences")
    t.bolt("count", LatencyCount, parallelism=parallelism, kwargs={"stride": stride}).fields(
        "split", "word"
    )
    result = t.run(overrides=overrides)
    if result.ended != "finished":
        raise BenchError(f"latency: the run ended {result.ended!r}")
    samples: list[tuple[float, float]] = result.outputs.get("count", [])
    if not samples:
        raise BenchError("latency: no samples were recorded")
    first = min(ts for ts, _ in samples)
    last = max(ts for ts, _ in samples)
    warmup = min(1.0, (last - first) / 5)  # the first second fills the pipes: left out
    kept = sorted(lat for ts, lat in samples if ts >= first + warmup) or sorted(
        lat for _, lat in samples
    )
    achieved = len(samples) * stride / (last - first) if last > first else 0.0
    return Latency(
        load,
        rate * WORDS_PER_SENTENCE,
        achieved,
        len(kept),
        1000 * percentile(kept, 0.50),
        1000 * percentile(kept, 0.99),
        1000 * kept[-1],
    )


# ================================================================ streams
def run_streams(
    sentences: int, parallelism: int, overrides: dict[str, Any], expected: dict[str, int]
) -> Measured:
    """The Streams API word count (``benchmarks.streams``): source xP -> flat_map -> key_by
    -> count_final, fused and combined."""
    from benchmarks import streams

    counts, seconds, wall = streams.run_wordcount(sentences, parallelism, dict(overrides))
    check_counts("streams", counts, expected)
    return Measured(
        "streams (Flow)",
        sum(counts.values()),
        seconds,
        overhead=wall - seconds,
        note=f"run() took {wall:.2f}s",
    )


def streams_map_filter(items: int, parallelism: int, overrides: dict[str, Any]) -> str:
    """A line comparing the fused source -> map -> filter -> sink flow with the loop."""
    from benchmarks import streams

    seconds, _wall = streams.run_map_filter(items, parallelism, dict(overrides))
    loop = streams.map_filter_loop(items)
    return (
        f"streams map/filter: {human(items / seconds)} items/s fused in {parallelism} tasks "
        f"against {human(items / loop)} items/s for the one-process loop: {loop / seconds:.2f}x"
    )


def streams_events(events: int, parallelism: int, overrides: dict[str, Any]) -> str:
    """A line with the windowed and the joined flows' events/s (no baseline: figures)."""
    from benchmarks import streams

    config = {**overrides, "watermark.interval": "50ms"}
    windows, windowed = streams.run_events(streams.windows_flow, events, parallelism, config)
    join, joined = streams.run_events(streams.join_flow, events, parallelism, config)
    return (
        f"streams windows: {human(events / windows)} events/s into 1 s tumbling counts per key "
        f"({windowed:,} windows); interval join: {human(2 * events / join)} events/s "
        f"({joined:,} pairs)"
    )


# ================================================================ bytewax
def bytewax_flow(sentences: int, outdir: str, batch_size: int = 1000) -> Dataflow:
    """The Bytewax word count; ``python -m bytewax.run 'benchmarks.wordcount:bytewax_flow(...)'``.

    Each worker reads its share of the sentences (``batch_size`` per batch), splits them with
    ``flat_map`` and ``count_final`` counts by word; each worker writes its counts and times as
    JSON into ``outdir`` for the parent to check.
    """
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import DynamicSource, StatelessSourcePartition
    from bytewax.outputs import DynamicSink, StatelessSinkPartition

    out = Path(outdir)

    class SentencePartition(StatelessSourcePartition[str]):
        def __init__(self, worker: int, workers: int) -> None:
            self.worker = worker
            self.next_index = worker
            self.step = workers
            self.started: float | None = None

        def next_batch(self) -> list[str]:
            if self.started is None:
                self.started = time.time()
            i = self.next_index
            if i >= sentences:
                report = {"start": self.started, "end": time.time()}
                (out / f"source-{self.worker}.json").write_text(json.dumps(report))
                raise StopIteration
            step, n = self.step, len(SENTENCES)
            self.next_index = i + batch_size * step
            return [SENTENCES[j % n] for j in range(i, min(sentences, self.next_index), step)]

    class SentenceSource(DynamicSource[str]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> SentencePartition:
            return SentencePartition(worker_index, worker_count)

    class CountsPartition(StatelessSinkPartition[tuple[str, int]]):
        def __init__(self, worker: int) -> None:
            self.worker = worker
            self.counts: dict[str, int] = {}

        def write_batch(self, items: list[tuple[str, int]]) -> None:
            for word, count in items:
                self.counts[word] = self.counts.get(word, 0) + count

        def close(self) -> None:
            report = {"end": time.time(), "counts": self.counts}
            (out / f"sink-{self.worker}.json").write_text(json.dumps(report))

    class CountsSink(DynamicSink[tuple[str, int]]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> CountsPartition:
            return CountsPartition(worker_index)

    flow = Dataflow("bench_wordcount")
    lines = op.input("sentences", flow, SentenceSource())
    words = op.flat_map("split", lines, str.split)
    counts = op.count_final("count", words, key=_identity)
    op.output("out", counts, CountsSink())
    return flow


def _identity(word: str) -> str:
    return word


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_bytewax(
    processes: int, sentences: int, batch_size: int, expected: dict[str, int], timeout: float
) -> Measured:
    variant = f"bytewax ({processes} process{'es' if processes > 1 else ''})"
    with tempfile.TemporaryDirectory(prefix="rayflow-bench-bytewax-") as outdir:
        flow = f"benchmarks.wordcount:bytewax_flow({sentences}, {outdir!r}, {batch_size})"
        base = [sys.executable, "-m", "bytewax.run", flow]
        if processes == 1:
            argvs = [base]
        else:
            addresses = ";".join(f"localhost:{p}" for p in _free_ports(processes))
            argvs = [[*base, "-i", str(i), "-a", addresses] for i in range(processes)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        logs = [Path(outdir) / f"process-{i}.log" for i in range(len(argvs))]
        began = time.time()
        procs = []
        for argv, log in zip(argvs, logs, strict=True):
            with log.open("wb") as out:  # the child keeps its own copy of the descriptor
                procs.append(
                    subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
                )
        problem = ""
        try:
            codes = [p.wait(timeout=max(1.0, began + timeout - time.time())) for p in procs]
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
                p.wait()
            problem = f"did not finish within {timeout:.0f}s"
        else:
            if any(codes):
                problem = f"a process exited with status {max(codes, key=abs)}"
        wall = time.time() - began
        if problem:
            tail = "".join(log.read_text(errors="replace")[-2000:] for log in logs)
            raise BenchError(f"{variant}: {problem}; its output ended with:\n{tail}")
        starts: list[float] = []
        ends: list[float] = []
        counts: dict[str, int] = {}
        for path in sorted(Path(outdir).glob("*.json")):
            report = json.loads(path.read_text())
            if path.name.startswith("source-"):
                starts.append(report["start"])
            else:
                ends.append(report["end"])
                for word, count in report["counts"].items():
                    counts[word] = counts.get(word, 0) + count
    check_counts(variant, counts, expected)
    if not starts or not ends:
        raise BenchError(f"{variant}: the workers wrote no timing reports")
    seconds = max(ends) - min(starts)
    return Measured(
        variant,
        sum(counts.values()),
        seconds,
        overhead=wall - seconds,
        note=f"processes ran {wall:.2f}s",
    )


# ================================================================ main
def print_table(report: Report) -> None:
    base = report.variants[0].words_per_s
    print()
    linger = "default" if report.linger_ms is None else f"{report.linger_ms:g} ms"
    print(
        f"{report.sentences:,} sentences, {report.words:,} words, parallelism "
        f"{report.parallelism}, batch.size {report.batch_size}, batch.linger.ms {linger}"
    )
    print(f"{'variant':<24} {'words/s':>9}  {'ratio to baseline':>17}  {'overhead':>9}")
    for m in report.variants:
        overhead = "" if m.overhead is None else f"{m.overhead:.2f}s"
        print(
            f"{m.variant:<24} {human(m.words_per_s):>9}  {m.words_per_s / base:>16.2f}x"
            f"  {overhead:>9}"
        )
    for line in report.skipped:
        print(line)
    lat = report.latency
    if lat is not None:
        print(
            f"{f'latency at {lat.load:.0%} load':<24} p50 {lat.p50_ms:.1f} ms  "
            f"p99 {lat.p99_ms:.1f} ms  (max {lat.max_ms:.1f} ms; "
            f"{human(lat.offered_words_per_s)} words/s offered, "
            f"{human(lat.achieved_words_per_s)} achieved; {lat.samples:,} samples)"
        )


def announce(m: Measured) -> None:
    extra = f", overhead {m.overhead:.2f}s ({m.note})" if m.overhead is not None else ""
    print(
        f"{m.variant}: {m.words:,} words in {m.seconds:.2f}s = {human(m.words_per_s)} "
        f"words/s{extra}",
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.wordcount", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sentences",
        type=int,
        default=1_000_000,
        help="sentences per variant (6.4 words each; default 1,000,000)",
    )
    parser.add_argument(
        "--parallelism",
        type=int,
        default=2,
        help="tasks of split and of count, and Bytewax processes (default 2)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=Settings().batch_size,
        help=f"rayflow batch.size and Bytewax source batch (default {Settings().batch_size})",
    )
    parser.add_argument(
        "--linger-ms",
        type=float,
        default=None,
        help="rayflow batch.linger.ms (default: rayflow's, 5 ms)",
    )
    parser.add_argument(
        "--spout-per-call",
        type=int,
        default=1,
        help="sentences the rayflow spout emits per next_tuple (default 1)",
    )
    parser.add_argument("--skip-bytewax", action="store_true", help="leave Bytewax out")
    parser.add_argument("--skip-latency", action="store_true", help="leave the latency run out")
    parser.add_argument(
        "--skip-chained",
        action="store_true",
        help="leave out the chained variants (spout xP -FORWARD-> split xP, one actor each)",
    )
    parser.add_argument(
        "--skip-acking", action="store_true", help="leave the at-least-once run out"
    )
    parser.add_argument(
        "--skip-streams", action="store_true", help="leave the Streams API (Flow) variants out"
    )
    parser.add_argument(
        "--latency-load",
        type=float,
        default=0.5,
        help="offered load as a fraction of per-tuple throughput (default 0.5)",
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=5.0, help="length of the latency run (default 5)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    for name in ("sentences", "parallelism", "batch_size", "spout_per_call"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    expected, baseline = run_baseline(args.sentences)
    announce(baseline)
    report = Report(
        args.sentences,
        baseline.words,
        args.parallelism,
        args.batch_size,
        args.linger_ms,
        [baseline],
    )
    overrides: dict[str, Any] = {"batch.size": args.batch_size}
    if args.linger_ms is not None:
        overrides["batch.linger.ms"] = f"{args.linger_ms:g}ms"

    from rayflow.launchers.ray_init import ensure_ray

    began = time.time()
    ensure_ray()
    print(f"ray: started in {time.time() - began:.1f}s (not counted)", flush=True)
    try:
        plain = [("rayflow per-tuple", False, False), ("rayflow batch", True, False)]
        if not args.skip_chained:  # spout xP -FORWARD-> split xP: one actor per index
            plain += [("per-tuple chained", False, True), ("batch chained", True, True)]
        for variant, batch, chained in plain:
            measured = run_rayflow(
                variant,
                batch,
                args.sentences,
                args.parallelism,
                overrides,
                args.spout_per_call,
                expected,
                chained=chained,
            )
            announce(measured)
            report.variants.append(measured)
        if not args.skip_acking:
            for variant, batch, unacked in (
                ("per-tuple at_least_once", False, report.variants[1]),
                ("batch at_least_once", True, report.variants[2]),
            ):
                acked = run_rayflow(
                    variant,
                    batch,
                    args.sentences,
                    args.parallelism,
                    {**overrides, "reliability": "at_least_once"},
                    1,
                    expected,
                    reliable=True,
                )
                announce(acked)
                report.variants.append(acked)
                report.skipped.append(
                    f"acking: {variant} runs at {acked.words_per_s / unacked.words_per_s:.2f}x "
                    "of the same topology without acking (target 0.7x)"
                )
        if not args.skip_streams:
            report.variants.append(
                run_streams(args.sentences, args.parallelism, overrides, expected)
            )
            announce(report.variants[-1])
            report.skipped.append(
                streams_map_filter(10 * args.sentences, args.parallelism, overrides)
            )
            print(report.skipped[-1], flush=True)
            report.skipped.append(streams_events(2 * args.sentences, args.parallelism, overrides))
            print(report.skipped[-1], flush=True)
        if args.skip_bytewax:
            report.skipped.append("bytewax: skipped (--skip-bytewax)")
        elif importlib.util.find_spec("bytewax") is None:
            report.skipped.append(BYTEWAX_MISSING)
            print(BYTEWAX_MISSING, flush=True)
        else:
            timeout = max(120.0, 200 * baseline.seconds)
            for processes in sorted({1, args.parallelism}):
                measured = run_bytewax(
                    processes, args.sentences, args.batch_size, expected, timeout
                )
                announce(measured)
                report.variants.append(measured)

        if not args.skip_latency:
            per_tuple = report.variants[1].words_per_s
            report.latency = run_latency(
                per_tuple, args.latency_load, args.latency_seconds, args.parallelism, overrides
            )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    print_table(report)
    if args.json:
        data = asdict(report)
        for m, d in zip(report.variants, data["variants"], strict=True):
            d["words_per_s"] = m.words_per_s
            d["ratio_to_baseline"] = m.words_per_s / baseline.words_per_s
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    # Run the copy imported as ``benchmarks.wordcount``, so Ray workers and Bytewax import the
    # component classes by that name rather than ``__main__``.
    from benchmarks.wordcount import main as _main

    sys.exit(_main())
