"""Host every task core of a topology in one process, one asyncio loop, no Ray.

The same :class:`TaskCore` runs here as in a Ray actor; only the transport differs (a direct call
instead of an actor call). ``chaos`` delays deliveries at random (so they arrive out of order) and
sends some twice, which exercises the reorder buffers and duplicate dropping for real.

>>> from rayflow.testing import TestingSpout, ListSink
>>> from rayflow import Topology
>>> t = Topology("demo")
>>> _ = t.spout("nums", TestingSpout, args=([[1], [2], [3]],))
>>> _ = t.bolt("sink", ListSink).shuffle("nums")
>>> sorted(asyncio.run(run_local(t.build())).outputs["sink"])
[(1,), (2,), (3,)]
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from rayflow.api.result import RunResult, merge_task_stats
from rayflow.runtime.io.messages import Transmit
from rayflow.runtime.plan import prepare_spec
from rayflow.runtime.task.core import TaskCore, TaskKey
from rayflow.runtime.task.snapshots import FINAL
from rayflow.spec.durations import parse_duration
from rayflow.spec.model import TopologySpec
from rayflow.spec.settings import Reliability


def build_cores(
    spec: TopologySpec, chaos: int | None = None, clock: Any = None
) -> dict[TaskKey, TaskCore]:
    """One core per task, wired to each other by direct calls."""
    cores: dict[TaskKey, TaskCore] = {}
    rng = random.Random(chaos)

    def connect_from(source: TaskKey) -> Any:
        def connect(target: TaskKey) -> Transmit:
            def deliver(
                seq: int, kind: int, stream: str, rows: Any, meta: Any, on_done: Any
            ) -> None:
                fut = cores[target].deliver(source, 0, seq, kind, stream, rows, meta)
                if fut is None:
                    asyncio.get_running_loop().call_soon(on_done, None)
                else:
                    fut.add_done_callback(lambda _f: on_done(None))

            def transmit(
                seq: int, kind: int, stream: str, rows: Any, meta: Any, *, on_done: Any
            ) -> None:
                if chaos is None:
                    deliver(seq, kind, stream, rows, meta, on_done)
                    return
                loop = asyncio.get_running_loop()
                loop.call_later(
                    rng.random() * 0.003, deliver, seq, kind, stream, rows, meta, on_done
                )
                if rng.random() < 0.1:  # a duplicate; its credit must not count twice
                    loop.call_later(
                        rng.random() * 0.003,
                        deliver,
                        seq,
                        kind,
                        stream,
                        rows,
                        meta,
                        lambda _e: None,
                    )

            return transmit

        return connect

    def feedback(spout: TaskKey, items: list) -> None:
        cores[spout].receive_acks(items)

    every = [(c.id, j) for c in spec.components for j in range(c.parallelism)]
    for comp in spec.components:
        for i in range(comp.parallelism):
            key = (comp.id, i)
            cores[key] = TaskCore(
                spec,
                comp.id,
                i,
                connect_from(key),
                local_tasks=every,
                feedback=feedback,
                **({"clock": clock.now} if clock is not None else {}),
            )
    if clock is not None:
        clock.cores = list(cores.values())
    return cores


async def _final_commit(cores: dict[TaskKey, TaskCore]) -> None:
    """Exactly-once in one process: no failures to recover from, so no periodic checkpoints;
    sinks commit once every task has reached the end (the final checkpoint)."""
    for core in cores.values():
        core.submit_control("final_where", None)  # no files: nothing to recover in-process
    await asyncio.gather(*(core.checkpoint_result(FINAL) for core in cores.values()))
    for core in cores.values():
        core.submit_control("checkpoint_complete", FINAL)


async def run_local(
    spec: TopologySpec,
    duration: float | str | None = None,
    chaos: int | None = None,
    clock: Any = None,
) -> RunResult:
    """Run ``spec`` to its end (or for ``duration``, then finish the spouts gracefully)."""
    started = time.monotonic()
    spec = prepare_spec(spec)
    cores = build_cores(spec, chaos, clock)
    order = [
        (c, i)
        for c in reversed(spec.topological_order())
        for i in range(spec.component(c).parallelism)
    ]
    tasks = {key: asyncio.ensure_future(cores[key].run()) for key in order}
    ended = "finished"
    pending = set(tasks.values())
    deadline = None if duration is None else started + parse_duration(duration)
    final = (
        asyncio.ensure_future(_final_commit(cores))
        if spec.settings.reliability == Reliability.EXACTLY_ONCE
        else None
    )
    try:
        while pending:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, pending = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION
            )
            for fut in done:
                if fut.exception() is not None:
                    raise fut.exception()  # type: ignore[misc]
            if pending and deadline is not None and time.monotonic() >= deadline:
                ended, deadline = "duration", None
                for spout in spec.spouts:
                    for i in range(spout.parallelism):
                        cores[(spout.id, i)].submit_control("finish")
    finally:
        for fut in pending:
            fut.cancel()
        if final is not None:
            final.cancel()
    stats = [fut.result() for fut in tasks.values()]
    return merge_task_stats(spec.name, stats, ended, time.monotonic() - started)
