"""Components for the at-least-once tests (importable by task actors)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rayflow import Bolt, Context, Topology, Tuple
from rayflow.testing import ListSink, TestingSpout


class Numbers(TestingSpout):
    """Numbered messages; 20 replays before the dead-letter stream (a 10% failure rate
    never gets there)."""

    outputs = {"default": ["n"], "dead": ["msg_id", "values", "attempts"]}
    dead_letter_stream = "dead"
    max_retries = 20


class FewRetries(Numbers):
    max_retries = 2


class RandomFail(Bolt):
    """Fails about ``rate`` of the tuples it sees (explicitly, like a rich bolt would)."""

    outputs = ["n"]
    auto_ack = False

    def __init__(self, rate: float = 0.05, seed: int = 0) -> None:
        self.rate = rate
        self.seed = seed

    def prepare(self, context: Context) -> None:
        self.random = random.Random(self.seed + context.task_index)

    def process(self, tup: Tuple) -> None:
        if self.random.random() < self.rate:
            self.fail(tup)
            return
        self.emit(tup.values, anchors=[tup])
        self.ack(tup)


class RaiseSometimes(Bolt):
    """Raises on about ``rate`` of the tuples (auto_ack fails them), forwards the others."""

    outputs = ["n"]

    def __init__(self, rate: float = 0.05, poison: int | None = None) -> None:
        self.rate = rate
        self.poison = poison

    def prepare(self, context: Context) -> None:
        self.random = random.Random(100 + context.task_index)

    def process(self, tup: Tuple) -> None:
        if tup[0] == self.poison or self.random.random() < self.rate:
            raise ValueError(f"cannot handle {tup[0]}")
        self.emit(tup.values)


class SleepOnce(Bolt):
    """Sleeps ``seconds`` the first time it sees ``n`` (past message.timeout), then forwards."""

    outputs = ["n"]

    def __init__(self, n: int = 3, seconds: float = 2.5) -> None:
        self.n = n
        self.seconds = seconds
        self.slept = False

    def process(self, tup: Tuple) -> None:
        if tup[0] == self.n and not self.slept:
            self.slept = True
            time.sleep(self.seconds)
        self.emit(tup.values)


def pipeline(
    n: int,
    config: dict[str, Any] | None = None,
    poison: int | None = None,
    fail_rate: float = 0.05,
    raise_rate: float = 0.05,
    parallelism: int = 2,
    spout: type = Numbers,
    items: list[Any] | None = None,
    spout_tasks: int = 2,
    chained: bool = False,
) -> Topology:
    """numbers -> maybe-fail -> maybe-raise -> sink (3 stages, parallelism 2-3); ``chained``:
    maybe-fail takes a FORWARD edge, so each of its tasks runs in a spout task's actor."""
    t = Topology(
        "reliable", config={"reliability": "at_least_once", "batch.size": 64, **(config or {})}
    )
    t.spout(
        "numbers",
        spout,
        parallelism=spout_tasks,
        kwargs={"items": items or list(range(n)), "collect_acks": True},
    )
    fail = t.bolt("fail", RandomFail, parallelism=parallelism, kwargs={"rate": fail_rate})
    fail.forward("numbers") if chained else fail.shuffle("numbers")
    t.bolt(
        "raise", RaiseSometimes, parallelism=3, kwargs={"rate": raise_rate, "poison": poison}
    ).fields("fail", "n")
    t.bolt("sink", ListSink).shuffle("raise")
    t.bolt("dead", ListSink).shuffle("numbers", stream="dead")
    return t


def timeout_topology() -> Topology:
    """numbers -> a bolt that sleeps past the 1 s message.timeout on message 3 -> sink."""
    t = Topology(
        "timeout",
        config={
            "reliability": "at_least_once",
            "message.timeout": "1s",
            "batch.size": 4,
            "batch.linger.ms": 1,
        },
    )
    t.spout("numbers", Numbers, kwargs={"items": list(range(8)), "collect_acks": True})
    t.bolt("sleepy", SleepOnce, kwargs={"n": 3, "seconds": 1.5}).shuffle("numbers")
    t.bolt("sink", ListSink).shuffle("sleepy")
    return t


@contextmanager
def killing_tasks(
    components: set[str],
    max_kills: int,
    seed: int = 5,
    every: float = 0.8,
    apart: float | None = None,
) -> Iterator[list[tuple[str, int]]]:
    """Chaos for the next embedded run started inside the block: a second after its tasks
    start, kill a random task actor of ``components`` (``ray.kill``, no Ray restart: rayflow's
    own supervision restarts it) every ``every`` seconds, ``max_kills`` times at most, while the
    run lasts. With ``apart``, a kill also waits until the deployment has counted the previous
    death and replaced the task, and ``apart`` seconds have passed since the death was counted
    (a loaded machine notices a death and restarts late; two deaths counted close together are
    a crash loop, and a kill of an actor being replaced is no new death). Yields the
    ``(component, index)`` killed."""
    import ray

    from rayflow.runtime.driver.deploy import RayDeployment

    deployments: list[RayDeployment] = []
    original = RayDeployment.__init__

    def remember(self: RayDeployment, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        deployments.append(self)

    kills: list[tuple[str, int]] = []
    done = threading.Event()

    def chaos() -> None:
        rng = random.Random(seed)
        while not deployments or not deployments[0].runs:  # not started yet
            if done.wait(0.05):
                return
        deployment = deployments[0]
        done.wait(1.0)
        while not done.is_set() and len(kills) < max_kills:
            # Every task has finished. (Not len(results) >= len(runs): during an exactly-once
            # recovery the dead tasks' runs are gone for a moment, and that ended the chaos.)
            runs = list(deployment.runs.values())
            if runs and all(key in deployment.results for key in runs):
                return
            victims = sorted(k for k in deployment.actors if k[0] in components)
            victim = rng.choice(victims)
            counted, handle = len(deployment.failures), deployment.actors[victim]
            ray.kill(handle, no_restart=True)
            kills.append(victim)
            done.wait(every)
            if apart is not None:  # counted, replaced, and then apart seconds without a death
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and (
                    len(deployment.failures) <= counted
                    or deployment.due
                    or deployment.actors.get(victim) is handle
                ):
                    if done.wait(0.05):
                        return
                if deployment.failures:
                    done.wait(max(0.0, deployment.failures[-1]["time"] + apart - time.time()))

    RayDeployment.__init__ = remember  # type: ignore[method-assign]
    killer = threading.Thread(target=chaos, daemon=True)
    killer.start()
    try:
        yield kills
    finally:
        done.set()
        killer.join(timeout=10)
        RayDeployment.__init__ = original  # type: ignore[method-assign]


class PairUp(Bolt):
    """A rich bolt that joins tuples in pairs: holds one, then emits the sum of the pair anchored
    to both (Storm's multi-anchoring) and acks both; ``fail_every`` fails some pairs instead."""

    outputs = ["n"]
    auto_ack = False

    def __init__(self, fail_every: int = 0) -> None:
        self.fail_every = fail_every

    def prepare(self, context: Context) -> None:
        self.held: Tuple | None = None
        self.pairs = 0

    def process(self, tup: Tuple) -> None:
        if self.held is None:
            self.held = tup
            return
        first, self.held = self.held, None
        self.pairs += 1
        if self.fail_every and self.pairs % self.fail_every == 0:
            self.fail(first)
            self.fail(tup)
            return
        self.emit([first[0] + tup[0]], anchors=[first, tup])
        self.ack(first)
        self.ack(tup)

    def cleanup(self) -> None:
        if self.held is not None:  # an odd one out at the end: on its own
            self.emit([self.held[0]], anchors=[self.held])
            self.ack(self.held)


class DoubleBatch(Bolt):
    """``process_batch`` only: forwards each number doubled; raises on the first batch that
    holds ``poison_once`` (and only then)."""

    outputs = ["n"]

    def __init__(self, poison_once: int | None = None) -> None:
        self.poison_once = poison_once

    def process_batch(self, batch: Any) -> None:
        if self.poison_once is not None and [self.poison_once] in batch.values:
            self.poison_once = None
            raise ValueError("a batch that fails once")
        self.emit_many([[2 * n] for (n,) in batch.values])


class NeverAcks(Bolt):
    """A rich bolt that forwards and acks every tuple but ``stuck``, which it keeps forever."""

    outputs = ["n"]
    auto_ack = False

    def __init__(self, stuck: int) -> None:
        self.stuck = stuck

    def process(self, tup: Tuple) -> None:
        if tup[0] != self.stuck:
            self.emit(tup.values, anchors=[tup])
            self.ack(tup)


class TaggingValues(Bolt):
    """Forwards each value with the index of the task that got it: (value, task)."""

    outputs = ["n", "task"]

    def prepare(self, context: Context) -> None:
        self.task = context.task_index

    def process(self, tup: Tuple) -> None:
        self.emit([tup[0], self.task])
