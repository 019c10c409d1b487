"""Keyed state backends compared: the cost of one access and the memory many keys take.

    python -m benchmarks.state_backends                    # from the repository root
    python -m benchmarks.state_backends --keys 20000000    # the large-state check (minutes)

In one process, no Ray, through ``KeyedState`` as a bolt's ``self.state`` uses it:

1. **Per access**: ``set_key`` + ``value.get()`` + ``value.set()`` on ``--access-keys`` keys,
   nanoseconds per read-modify-write, for ``memory`` and ``rocksdb``.
2. **Memory**: ``--keys`` distinct keys written with the ``rocksdb`` backend and a budget of
   ``--budget`` (``state.rocksdb.memory``), in a child process: its resident memory (RSS) at
   the start, every ``--keys``/10 keys and at the end, against budget + the starting RSS; the
   ``memory`` backend's RSS for the same keys up to ``--memory-keys`` (it grows without bound).
3. **Snapshot**: the time :meth:`KeyedState.snapshot` takes over ``--access-keys`` keys with
   each backend (the full form: a savepoint's; checkpoints are incremental).
4. **Windows held**: ``--window-keys-held`` keys' open windows as the Streams window operator
   keeps them (table entry and due-key index), RSS as in 2., with each backend.
5. **Streams tables**: a flow's tumbling event-time window count over ``--window-events``
   events of ``--window-keys`` keys (run in process by ``rayflow.testing``), events per second
   with each backend: on rocksdb the windows' accumulators are RocksDB entries.
6. **Classic windows**: a ``WindowedBolt`` counting the same events in tumbling 1 s windows,
   events per second with each backend (on rocksdb every tuple is a RocksDB entry until its
   window fires), the same in session windows of one event each (a session per event, each a
   due-index entry written and deleted), and the peak RSS of a child process holding
   ``--classic-held`` keys' open windows of two tuples each.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from typing import Any

from rayflow.api.components import Bolt, Spout
from rayflow.api.tuple import Tuple
from rayflow.api.windows import Window, WindowedBolt
from rayflow.spec.state_settings import StoreSettings
from rayflow.spec.yaml_limits import describe_size, parse_size
from rayflow.state.backends import open_store
from rayflow.state.keyed import KeyedState


def rss() -> int:
    """This process's resident memory in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def keyed(backend: str, folder: str, budget: int) -> KeyedState:
    settings = StoreSettings(backend, folder, budget)
    return KeyedState("bench", ("key",), 128, store=open_store(settings, "bench/count.0"))


def per_access(backend: str, keys: int, folder: str, budget: int) -> tuple[float, float]:
    """(ns per read-modify-write, seconds for a snapshot of ``keys`` keys)."""
    state = keyed(backend, folder, budget)
    count = state.value("count", default=0)
    names = [(f"key{i}",) for i in range(keys)]
    for key in names:  # first writes (not timed): the keys exist
        state.set_key(key)
        count.set(1)
    start = time.perf_counter()
    for key in names:
        state.set_key(key)
        count.set(count.get() + 1)
    took = time.perf_counter() - start
    start = time.perf_counter()
    state.snapshot()
    snapshot = time.perf_counter() - start
    state.close()
    return took / keys * 1e9, snapshot


def grow(backend: str, keys: int, folder: str, budget: int, out: multiprocessing.Queue) -> None:
    """In a child: write ``keys`` keys, reporting (keys so far, RSS) ten times."""
    base = rss()
    state = keyed(backend, folder, budget)
    count = state.value("count", default=0)
    out.put((0, base))
    step = max(1, keys // 10)
    for i in range(keys):
        state.set_key((f"key{i}",))
        count.set(i)
        if (i + 1) % step == 0:
            out.put((i + 1, rss()))
    state.close()
    out.put(None)


def grow_windows(
    backend: str, keys: int, folder: str, budget: int, out: multiprocessing.Queue
) -> None:
    """In a child: open a window for each of ``keys`` keys as the Streams window operator
    does (its table entry and its due-key index entry), settling every 4,096 keys (a batch);
    reports (keys so far, RSS) ten times."""
    base = rss()
    state = keyed(backend, folder, budget)
    windows = state.table("window")
    due = state.due("window", range(128), lambda end: None)
    out.put((0, base))
    step = max(1, keys // 10)
    for i in range(keys):
        at = f"key{i}"
        windows[at] = {0: [10_000, 1, False]}
        due.add(at, 10_000)
        if i % 4096 == 4095:
            state.settle()
        if (i + 1) % step == 0:
            out.put((i + 1, rss()))
    state.close()
    out.put(None)


def memory_curve(
    backend: str, keys: int, folder: str, budget: int, target: Any = grow
) -> list[tuple[int, int]]:
    spawn = multiprocessing.get_context("spawn")  # not fork: RocksDB's threads would not follow
    queue = spawn.Queue()
    child = spawn.Process(target=target, args=(backend, keys, folder, budget, queue))
    child.start()
    points = []
    while (point := queue.get()) is not None:
        points.append(point)
    child.join()
    return points


class KeyedEvents(Spout):
    """``(key{i % keys}, ts)`` for ``i < events``, timestamps spread over 10 s, 1,000 a call."""

    outputs = ["key", "ts"]

    def __init__(self, events: int, keys: int) -> None:
        self.events, self.keys, self.sent = events, keys, 0

    def next_tuple(self) -> None:
        if self.sent >= self.events:
            self.finish()
            return
        events, keys = self.events, self.keys
        upto = min(self.sent + 1000, events)
        self.emit_many([[f"key{i % keys}", i * 10_000 // events] for i in range(self.sent, upto)])
        self.sent = upto


def window_rate(backend: str, events: int, keys: int, folder: str, budget: int) -> float:
    """Events per second through ``key_by -> window(tumbling 1 s) -> count`` in process."""
    from rayflow import Flow, testing

    config = {"state.backend": backend, "state.rocksdb.dir": folder,
              "state.rocksdb.memory": budget, "batch.size": 1024}  # fmt: skip
    flow = Flow(f"windows-{backend}", config=config)
    counts = (
        flow.source(KeyedEvents, args=(events, keys))
        .with_timestamps(lambda e: e[1])
        .key_by(lambda e: e[0])
        .window({"type": "tumbling", "size": "1s"})
        .count()
    )
    counts.collect("counts")
    start = time.perf_counter()
    result = testing.run(flow)
    took = time.perf_counter() - start
    assert sum(n for _, _, n in result.outputs["counts"]) == events
    return events / took


class WindowedCount(WindowedBolt):
    """The classic API's windowed count: (key, tuples) per window."""

    outputs = ["key", "count"]

    def process_window(self, window: Window, tuples: list[Tuple]) -> None:
        self.emit([window.key[0], len(tuples)])  # type: ignore[index]


class WindowTally(WindowedCount):
    """Adds up what its windows held instead of emitting a row per window: what one end's
    firing emits is built at once (500,000 windows ending together: 66 MiB of rows), which is
    not what the windows held."""

    def process_window(self, window: Window, tuples: list[Tuple]) -> None:
        self.total = getattr(self, "total", 0) + len(tuples)

    def collected_rows(self) -> list[tuple[int]]:
        return [(getattr(self, "total", 0),)]


class Total(Bolt):
    """Adds up the counts (no row kept per window); ``testing.run`` reports the sum."""

    outputs: list[str] = []

    def prepare(self, context: Any) -> None:
        self.total = 0

    def process(self, tup: Tuple) -> None:
        self.total += tup[1]

    def collected_rows(self) -> list[tuple[int]]:
        return [(self.total,)]


TUMBLING_SECOND = {"type": "tumbling", "size": "1s"}
TUMBLING_HOUR = {"type": "tumbling", "size": "1h"}
SESSIONS = {"type": "session", "gap": "200ms"}  # by default a key's events are 1 s apart


def classic_windows(backend: str, events: int, keys: int, folder: str, budget: int,
                    window: dict[str, str], tally: bool = False) -> float:  # fmt: skip
    """Seconds for ``events`` events through a keyed WindowedBolt count in process (``tally``:
    the windows' sizes added up in the bolt, no row emitted per window)."""
    from rayflow import Topology, testing

    config = {"state.backend": backend, "state.rocksdb.dir": folder,
              "state.rocksdb.memory": budget, "batch.size": 1024}  # fmt: skip
    t = Topology(f"classic-windows-{backend}", config=config)
    t.spout("events", KeyedEvents, args=(events, keys),
            config={"watermark.timestamp_field": "ts"})  # fmt: skip
    window = {**window, "timestamp_field": "ts"}
    bolt = WindowTally if tally else WindowedCount
    t.bolt("window", bolt, config={"window": window}).fields("events", "key")
    if not tally:
        t.bolt("total", Total).global_("window")
    start = time.perf_counter()
    result = testing.run(t)
    took = time.perf_counter() - start
    counted = result.outputs["window" if tally else "total"]
    assert counted == [(events,)], counted
    return took


def classic_held(
    backend: str, keys: int, folder: str, budget: int, out: multiprocessing.Queue
) -> None:
    """In a child: ``keys`` keys' open windows (two tuples each, an hour long, so none fires
    before the end); reports the RSS before and the peak (``ru_maxrss``)."""
    import resource

    base = rss()
    classic_windows(backend, 2 * keys, keys, folder, budget, TUMBLING_HOUR, tally=True)
    out.put((0, base))
    out.put((keys, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
    out.put(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--access-keys", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=2_000_000)
    parser.add_argument("--memory-keys", type=int, default=2_000_000)
    parser.add_argument("--budget", default="64MiB")
    parser.add_argument("--window-events", type=int, default=400_000)
    parser.add_argument("--window-keys", type=int, default=40_000)
    parser.add_argument("--window-keys-held", type=int, default=1_000_000)
    parser.add_argument("--classic-held", type=int, default=500_000)
    args = parser.parse_args(argv)
    budget = parse_size(args.budget)
    folder = tempfile.mkdtemp(prefix="rayflow-state-bench-")

    costs = {}
    for backend in ("memory", "rocksdb"):
        costs[backend] = per_access(backend, args.access_keys, folder, budget)
        ns, snapshot = costs[backend]
        print(f"{backend:<8} read-modify-write {ns:8.0f} ns   snapshot of "
              f"{args.access_keys:,} keys {snapshot:.2f}s", flush=True)  # fmt: skip
    print(f"rocksdb / memory per access: {costs['rocksdb'][0] / costs['memory'][0]:.0f}x")

    rates = {}
    for backend in ("memory", "rocksdb"):
        rates[backend] = window_rate(backend, args.window_events, args.window_keys, folder, budget)
        print(f"{backend:<8} window count {rates[backend]:>12,.0f} events/s "
              f"({args.window_keys:,} keys)", flush=True)  # fmt: skip
    print(f"rocksdb / memory window count: {rates['rocksdb'] / rates['memory']:.2f}x")

    for kind, window in (("count", TUMBLING_SECOND), ("session count", SESSIONS)):
        for backend in ("memory", "rocksdb"):
            took = classic_windows(backend, args.window_events, args.window_keys, folder, budget,
                                   window)  # fmt: skip
            rates[backend] = args.window_events / took
            print(f"{backend:<8} WindowedBolt {kind} {rates[backend]:>12,.0f} events/s "
                  f"({args.window_keys:,} keys)", flush=True)  # fmt: skip
        print(f"rocksdb / memory WindowedBolt {kind}: {rates['rocksdb'] / rates['memory']:.2f}x")
    for backend in ("memory", "rocksdb"):
        (_, base), (_, peak) = memory_curve(backend, args.classic_held, folder, budget,
                                            classic_held)  # fmt: skip
        print(f"{backend:<8} WindowedBolt holding {args.classic_held:,} keys' windows: peak RSS "
              f"{describe_size(peak)} (+{describe_size(peak - base)})", flush=True)  # fmt: skip

    cases = [("rocksdb", args.keys, grow), ("memory", args.memory_keys, grow),
             ("rocksdb", args.window_keys_held, grow_windows),
             ("memory", args.window_keys_held, grow_windows)]  # fmt: skip
    for backend, keys, target in cases:
        points = memory_curve(backend, keys, folder, budget, target)
        base = points[0][1]
        what = "values" if target is grow else "windows (table + due index)"
        print(f"{backend} {what}: RSS at 0 keys {describe_size(base)}", flush=True)
        for n, resident in points[1:]:
            print(f"  {n:>12,} keys  RSS {describe_size(resident):>10}  "
                  f"(+{describe_size(resident - base)})", flush=True)  # fmt: skip
        if backend == "rocksdb":
            peak = max(r for _, r in points) - base
            print(f"  budget {describe_size(budget)}: growth {describe_size(peak)} "
                  f"= {peak / budget:.2f}x of the budget", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
