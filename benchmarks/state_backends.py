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
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from typing import Any

from rayflow.api.components import Spout
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--access-keys", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=2_000_000)
    parser.add_argument("--memory-keys", type=int, default=2_000_000)
    parser.add_argument("--budget", default="64MiB")
    parser.add_argument("--window-events", type=int, default=400_000)
    parser.add_argument("--window-keys", type=int, default=40_000)
    parser.add_argument("--window-keys-held", type=int, default=1_000_000)
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
