"""Exactly-once: what checkpoints cost, how big and slow a large one is, how fast recovery is.

    python -m benchmarks.exactly_once                       # from the repository root
    python -m benchmarks.exactly_once --sentences 100000 --keys 200000   # a quick check
    python -m benchmarks.exactly_once --backend rocksdb     # one state backend (default: both)

Measurements, in one run on one embedded Ray, for each state backend (``state.backend``):

1. **Throughput**: sentences -> split -> keyed count (``self.state``), the same topology with
   ``reliability: none`` and with ``exactly_once`` (``checkpoint.interval`` 1 s); words/s of each
   from the spout's open to the last count task's end of input, and the ratio.
2. **A savepoint of many keys**: one count task holding ``--keys`` distinct keys (1 million by
   default) takes a savepoint (the full form): its duration, the task's synchronous part and
   size.
3. **Checkpoints with 1% changed**: the same task then gets ``--keys``/100 of its keys updated
   every 3 s with checkpoints every second: the largest synchronous part and the most bytes a
   checkpoint wrote (rocksdb: incremental; memory: the whole state every time), then a count
   task killed: the time until it processes tuples again with all of its keys restored.
4. **Recovery**: a count task's actor is killed mid-stream; the time from the kill until the
   count tasks process tuples again (every task reset or recreated, sources rewound).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

from examples.wordcount import SENTENCES, SplitSentence
from rayflow import Bolt, Spout, Topology, Tuple

CHANGE_EVERY = 3.0  # seconds between two rounds of changed keys


class Sentences(Spout):
    """``total`` sentences (or distinct one-word keys with ``distinct``), rewindable."""

    outputs = ["sentence"]

    def __init__(
        self,
        total: int,
        distinct: bool = False,
        pace: float = 0.0,
        stay: bool = False,
        changes: int = 0,
    ) -> None:
        self.total, self.distinct, self.pace, self.stay = total, distinct, pace, stay
        self.changes = changes  # after ``total``: keys 0..changes-1 again every CHANGE_EVERY

    def open(self, context: Any) -> None:
        self.n = 0
        self.next_change = 0.0
        self.metrics.gauge("opened_at").set(time.time())

    def next_tuple(self) -> None:
        if self.n >= self.total:  # ``stay``: keep running (idle) for a savepoint of it all
            if self.changes and time.time() >= self.next_change:
                self.next_change = time.time() + CHANGE_EVERY
                for start in range(0, self.changes, 256):
                    end = min(start + 256, self.changes)
                    self.emit_many([[f"key{i}"] for i in range(start, end)])
            return
        end = min(self.n + 256, self.total)
        if self.distinct:
            self.emit_many([[f"key{i}"] for i in range(self.n, end)])
        else:
            self.emit_many([[SENTENCES[i % 5]] for i in range(self.n, end)])
        self.n = end
        if self.n >= self.total and not self.stay:
            self.finish()
        elif self.pace:
            time.sleep(self.pace)

    def snapshot(self) -> int:
        return self.n

    def restore(self, snapshot: int) -> None:
        self.n = snapshot


class Count(Bolt):
    """Counts each word in keyed state; notes when its input ended."""

    outputs: list[str] = []

    def process(self, tup: Tuple) -> None:
        count = self.state.value("count", default=0)
        count.set(count.get() + 1)

    def cleanup(self) -> None:
        self.metrics.gauge("ended_at").set(time.time())


def topology(mode: str, sentences: int, storage: str, backend: str, **spout: Any) -> Topology:
    t = Topology(
        f"eo-{mode}",
        config={
            "reliability": mode,
            "checkpoint.interval": "1s",
            "checkpoint.storage": storage,
            "state.backend": backend,
        },
    )
    t.spout("sentences", Sentences, kwargs={"total": sentences, **spout})
    t.bolt("split", SplitSentence, parallelism=2).shuffle("sentences")
    t.bolt("count", Count, parallelism=2).fields("split", "word")
    return t


def gauges(deployment: Any, name: str) -> list[float]:
    out = []
    for task in deployment.results.values():
        metric = (task.get("metrics") or {}).get(name)
        if metric:
            out.append(metric["value"])
    return out


def run_to_end(deployment: Any) -> None:
    while not deployment.wait(timeout=0.2):
        pass


def throughput(mode: str, sentences: int, storage: str, backend: str) -> tuple[float, Any]:
    from rayflow.runtime.driver.deploy import RayDeployment

    deployment = RayDeployment(topology(mode, sentences, storage, backend).build())
    deployment.start()
    run_to_end(deployment)
    words = sentences * sum(len(s.split()) for s in SENTENCES) / len(SENTENCES)
    seconds = max(gauges(deployment, "ended_at")) - min(gauges(deployment, "opened_at"))
    deployment.kill()
    return words / seconds, deployment


def executed(deployment: Any, component: str = "count") -> float:
    stats = deployment.stats(timeout=5.0)
    return sum(s["counters"]["executed"] for s in stats if s["component"] == component)


def big_state(keys: int, storage: str, backend: str) -> dict[str, Any]:
    """One count task with ``keys`` keys: a savepoint of it, then checkpoints while 1% of its
    keys change every few seconds, then a kill and its recovery."""
    import ray

    from rayflow.runtime.driver.deploy import RayDeployment

    t = Topology(
        "eo-keys",
        config={"reliability": "exactly_once", "checkpoint.interval": "1h",
                "checkpoint.storage": storage, "state.backend": backend},
    )  # fmt: skip
    spout = {"total": keys, "distinct": True, "stay": True, "changes": max(1, keys // 100)}
    t.spout("keys", Sentences, kwargs=spout)
    t.bolt("count", Count).fields("keys", "sentence")
    deployment = RayDeployment(t.build())
    deployment.start()
    coordinator = deployment.checkpoints
    deadline = time.monotonic() + 600
    while executed(deployment) < keys:
        deployment.wait(timeout=0.5)
        assert time.monotonic() < deadline, "the keys did not arrive in 10 minutes"
    coordinator.savepoint(timeout=600)
    (out,) = [{"savepoint": h} for h in coordinator.stats()["history"] if h["savepoint"]]
    coordinator.interval = 1.0  # now checkpoints every second while 1% changes every 3 s
    coordinator.next_at = time.monotonic()
    while coordinator.completed < 8:
        deployment.wait(timeout=0.2)
    history = coordinator.stats()["history"]
    done = sorted((h for h in history if h["status"] == "COMPLETED" and not h["savepoint"]),
                  key=lambda h: h["id"])  # fmt: skip
    out["checkpoints"] = done[1:]  # the first after the savepoint may hold all of it
    killed = time.monotonic()
    ray.kill(deployment.actors[("count", 0)], no_restart=True)
    restarts = sum(deployment.restarts.values())
    while sum(deployment.restarts.values()) == restarts:
        deployment.wait(timeout=0.05)
    after = executed(deployment)
    while executed(deployment) <= after:  # the next round of changes is processed
        deployment.wait(timeout=0.05)
    out["recovery_s"] = time.monotonic() - killed
    deployment.kill()
    return out


def recovery(sentences: int, storage: str, backend: str) -> float:
    """Seconds from killing a count task's actor until the count tasks process tuples again."""
    import ray

    from rayflow.runtime.driver.deploy import RayDeployment

    spec = topology("exactly_once", sentences, storage, backend, pace=0.002).build()
    deployment = RayDeployment(spec)
    deployment.start()

    def executed() -> float:
        stats = deployment.stats(timeout=1.0)
        return sum(s["counters"]["executed"] for s in stats if s["component"] == "count")

    while deployment.checkpoints.completed < 2:
        deployment.wait(timeout=0.2)
    killed = time.monotonic()
    ray.kill(deployment.actors[("count", 0)], no_restart=True)
    restarts = sum(deployment.restarts.values())
    while sum(deployment.restarts.values()) == restarts:
        deployment.wait(timeout=0.05)
    after = executed()
    while executed() <= after:
        deployment.wait(timeout=0.05)
    resumed = time.monotonic() - killed
    deployment.kill()
    return resumed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=400_000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["memory", "rocksdb", "both"], default="both")
    args = parser.parse_args(argv)

    from rayflow.launchers.ray_init import ensure_ray

    ensure_ray()
    storage = tempfile.mkdtemp(prefix="rayflow-bench-")
    backends = ["memory", "rocksdb"] if args.backend == "both" else [args.backend]
    for backend in backends:
        print(f"--- state.backend: {backend}", flush=True)
        none, _ = throughput("none", args.sentences, storage, backend)
        print(f"reliability none         {none / 1e6:6.2f}M words/s", flush=True)
        exact, deployment = throughput("exactly_once", args.sentences, storage, backend)
        completed = deployment.checkpoints.completed
        print(f"exactly_once (1s)        {exact / 1e6:6.2f}M words/s   {exact / none:.2f}x of "
              f"none ({completed} checkpoints completed)", flush=True)  # fmt: skip
        big = big_state(args.keys, storage, backend)
        entry = big["savepoint"]
        seconds, sync = entry["duration_ms"] / 1000, entry["sync_ms"] / 1000
        print(f"savepoint of {args.keys:,} keys: {seconds:.2f}s (synchronous {sync:.2f}s), "
              f"{entry['bytes'] / 1e6:.1f} MB", flush=True)  # fmt: skip
        changed = big["checkpoints"]
        sizes = sorted(c["bytes"] for c in changed)
        print(f"checkpoints with 1% of the keys changed ({len(changed)}): synchronous part "
              f"at most {max(c['sync_ms'] for c in changed):.0f} ms, written: median "
              f"{sizes[len(sizes) // 2] / 1e6:.2f} MB, at most {sizes[-1] / 1e6:.2f} MB, "
              f"duration at most {max(c['duration_ms'] for c in changed):.0f} ms",
              flush=True)  # fmt: skip
        print(f"recovery with {args.keys:,} keys: processing again in "
              f"{big['recovery_s']:.2f}s", flush=True)  # fmt: skip
        seconds = recovery(args.sentences * 10, storage, backend)
        print(f"recovery (small state): a count task killed -> processing again in "
              f"{seconds:.2f}s", flush=True)  # fmt: skip
    print(f"(checkpoints under {storage}; delete it when done)")
    return 0 if os.path.isdir(storage) else 1


if __name__ == "__main__":
    raise SystemExit(main())
