"""Exactly-once: what checkpoints cost, how big and slow a large one is, how fast recovery is.

    python -m benchmarks.exactly_once                       # from the repository root
    python -m benchmarks.exactly_once --sentences 100000 --keys 200000   # a quick check

Three measurements, in one run on one embedded Ray:

1. **Throughput**: sentences -> split -> keyed count (``self.state``), the same topology with
   ``reliability: none`` and with ``exactly_once`` (``checkpoint.interval`` 1 s); words/s of each
   from the spout's open to the last count task's end of input, and the ratio.
2. **A checkpoint of many keys**: one count task holding ``--keys`` distinct keys (1 million by
   default) takes a checkpoint: its duration (trigger to complete), the task's synchronous part
   (pickling) and size.
3. **Recovery**: a count task's actor is killed mid-stream; the time from the kill until the
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


class Sentences(Spout):
    """``total`` sentences (or distinct one-word keys with ``distinct``), rewindable."""

    outputs = ["sentence"]

    def __init__(
        self, total: int, distinct: bool = False, pace: float = 0.0, stay: bool = False
    ) -> None:
        self.total, self.distinct, self.pace, self.stay = total, distinct, pace, stay

    def open(self, context: Any) -> None:
        self.n = 0
        self.metrics.gauge("opened_at").set(time.time())

    def next_tuple(self) -> None:
        if self.n >= self.total:  # ``stay``: keep running (idle) for a savepoint of it all
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


def topology(mode: str, sentences: int, storage: str, **spout: Any) -> Topology:
    t = Topology(
        f"eo-{mode}",
        config={
            "reliability": mode,
            "checkpoint.interval": "1s",
            "checkpoint.storage": storage,
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


def throughput(mode: str, sentences: int, storage: str) -> tuple[float, Any]:
    from rayflow.runtime.driver.deploy import RayDeployment

    deployment = RayDeployment(topology(mode, sentences, storage).build())
    deployment.start()
    run_to_end(deployment)
    words = sentences * sum(len(s.split()) for s in SENTENCES) / len(SENTENCES)
    seconds = max(gauges(deployment, "ended_at")) - min(gauges(deployment, "opened_at"))
    deployment.kill()
    return words / seconds, deployment


def big_checkpoint(keys: int, storage: str) -> dict[str, Any]:
    """One count task with ``keys`` keys, then a checkpoint of it."""
    from rayflow.runtime.driver.deploy import RayDeployment

    t = Topology(
        "eo-keys",
        config={"reliability": "exactly_once", "checkpoint.interval": "1h",
                "checkpoint.storage": storage},
    )  # fmt: skip
    t.spout("keys", Sentences, kwargs={"total": keys, "distinct": True, "stay": True})
    t.bolt("count", Count).fields("keys", "sentence")
    deployment = RayDeployment(t.build())
    deployment.start()
    deadline = time.monotonic() + 600
    while (
        sum(s["counters"]["executed"] for s in deployment.stats() if s["component"] == "count")
        < keys
    ):
        deployment.wait(timeout=0.5)
        assert time.monotonic() < deadline, "the keys did not arrive in 10 minutes"
    deployment.checkpoints.savepoint(timeout=600)
    entry = deployment.checkpoints.stats()["history"][0]
    deployment.kill()
    return entry


def recovery(sentences: int, storage: str) -> float:
    """Seconds from killing a count task's actor until the count tasks process tuples again."""
    import ray

    from rayflow.runtime.driver.deploy import RayDeployment

    spec = topology("exactly_once", sentences, storage, pace=0.002).build()
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
    args = parser.parse_args(argv)

    from rayflow.launchers.ray_init import ensure_ray

    ensure_ray()
    storage = tempfile.mkdtemp(prefix="rayflow-bench-")
    none, _ = throughput("none", args.sentences, storage)
    print(f"reliability none         {none / 1e6:6.2f}M words/s", flush=True)
    exact, deployment = throughput("exactly_once", args.sentences, storage)
    completed = deployment.checkpoints.completed
    print(f"exactly_once (1s)        {exact / 1e6:6.2f}M words/s   {exact / none:.2f}x of none "
          f"({completed} checkpoints completed)", flush=True)  # fmt: skip
    entry = big_checkpoint(args.keys, storage)
    seconds, sync = entry["duration_ms"] / 1000, entry["sync_ms"] / 1000
    print(f"checkpoint of {args.keys:,} keys: {seconds:.2f}s (pickling {sync:.2f}s), "
          f"{entry['bytes'] / 1e6:.1f} MB", flush=True)  # fmt: skip
    seconds = recovery(args.sentences * 10, storage)
    print(f"recovery: a count task killed -> processing again in {seconds:.2f}s", flush=True)
    print(f"(checkpoints under {storage}; delete it when done)")
    return 0 if os.path.isdir(storage) else 1


if __name__ == "__main__":
    raise SystemExit(main())
