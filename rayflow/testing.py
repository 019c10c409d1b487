"""Test topologies without a cluster: scripted spouts, list sinks, and an in-process runner.

:func:`run` hosts the same task cores that run in Ray actors, in this process; the same topology
then runs on a local Ray with ``topology.run()`` and should give the same result.

>>> from rayflow import Topology, Bolt
>>> class Double(Bolt):
...     outputs = ["n"]
...     def process(self, tup):
...         self.emit([tup[0] * 2])
>>> t = Topology("double")
>>> _ = t.spout("nums", TestingSpout, args=([1, 2, 3],))
>>> _ = t.bolt("double", Double, parallelism=2).shuffle("nums")
>>> _ = t.bolt("sink", ListSink).global_("double")
>>> sorted(run(t).outputs["sink"])
[(2,), (4,), (6,)]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rayflow.api.components import Bolt, Context
from rayflow.api.reliable import ReliableSpout
from rayflow.api.result import RunResult
from rayflow.api.topology import Topology
from rayflow.api.tuple import Tuple
from rayflow.spec.model import TopologySpec
from rayflow.streams.flow import Flow


@dataclass(frozen=True)
class Pause:
    """A scripted pause in a :class:`TestingSpout`: emit nothing for ``seconds``."""

    seconds: float


class ManualClock:
    """A processing-time clock that only moves when told to, for :func:`run` (in process).

    Scripted spouts move it with ``clock.advance(ms)`` items: the spout waits until everything
    emitted before has been processed downstream, then moves the clock, so processing-time
    windows and tick tuples see the data and the time in the order the script gives.

    >>> clock = ManualClock(start=1_000)
    >>> clock.now(), clock.advance(500).ms
    (1000, 500)
    """

    def __init__(self, start: int = 0) -> None:
        self.time = start
        self.cores: list[Any] = []  # set by run(): the tasks to wake and to wait for

    def now(self) -> int:
        return self.time

    def advance(self, ms: int) -> AdvanceClock:
        """A script item: move the clock by ``ms`` once the topology is idle."""
        return AdvanceClock(self, ms)

    def quiescent(self) -> bool:
        """Nothing queued, buffered or in flight anywhere in the topology (a fused flow source
        holding items it has not sent yet counts too)."""
        return all(
            not core.inbox
            and not getattr(core.user.obj, "_rayflow_holding", 0)
            and all(channel.idle for channel in core.outputs.values())
            and not any(rows for route in core.collector.all_routes for rows in route.bufs)
            for core in self.cores
        )

    def move(self, ms: int) -> None:
        self.time += ms
        for core in self.cores:
            core.wake()


@dataclass(frozen=True)
class AdvanceClock:
    """A :class:`TestingSpout` item made by :meth:`ManualClock.advance`."""

    clock: ManualClock
    ms: int


class TestingSpout(ReliableSpout):
    """Emits scripted items, then finishes. An item that is a list or tuple is one row of values;
    a :class:`Pause` waits; anything else is a one-field row. Each row is emitted with its index
    as ``msg_id``; under at-least-once a failed row is replayed (see :class:`ReliableSpout`) and
    the spout finishes only when every row is acked.

    With parallelism above 1, task ``i`` emits the items at positions ``i, i + n, i + 2n, ...``,
    or ``per_task[i]`` when given. Subclass with another ``outputs`` for other field names.
    With ``collect_acks`` the acked indexes are the task's collected rows.
    """

    __test__ = False  # not a pytest test class
    outputs = ["value"]

    def __init__(
        self,
        items: Iterable[Any] = (),
        per_call: int = 1,
        per_task: Mapping[int, Iterable[Any]] | None = None,
        collect_acks: bool = False,
    ) -> None:
        self.items = list(items)
        self.per_task = {int(k): list(v) for k, v in (per_task or {}).items()}
        self.per_call = per_call
        self.collect_acks = collect_acks
        self.acked: list[Any] = []
        self.failed: list[Any] = []

    def open(self, context: Context) -> None:
        if self.per_task:
            self.items = self.per_task.get(context.task_index, [])
            self.positions = range(len(self.items))
        else:
            self.positions = range(context.task_index, len(self.items), context.parallelism)
        self.cursor = 0  # the next position; a checkpoint's snapshot under exactly-once
        self.resume_at = 0.0
        self.done = False

    def next_message(self) -> tuple[Any, list[Any]] | None:
        if self.resume_at and time.monotonic() < self.resume_at:
            return None
        if self.cursor >= len(self.positions):
            self.done = True
            return None
        index = self.positions[self.cursor]
        self.cursor += 1
        item = self.items[index]
        if isinstance(item, Pause):
            self.resume_at = time.monotonic() + item.seconds
            return None
        if isinstance(item, AdvanceClock):
            if not item.clock.quiescent():
                self.cursor -= 1  # try again later
                return None
            item.clock.move(item.ms)
            return None
        return index, list(item) if isinstance(item, list | tuple) else [item]

    def exhausted(self) -> bool:
        return self.done

    def snapshot(self) -> int:
        return self.cursor

    def restore(self, snapshot: int) -> None:
        self.cursor = snapshot

    def next_tuple(self) -> None:
        for _ in range(self.per_call):
            super().next_tuple()

    def ack(self, msg_id: Any) -> None:
        super().ack(msg_id)
        self.acked.append(msg_id)

    def fail(self, msg_id: Any) -> None:
        super().fail(msg_id)
        self.failed.append(msg_id)

    def collected_rows(self) -> list[tuple[Any, ...]] | None:
        return [(msg_id,) for msg_id in self.acked] if self.collect_acks else None


class ListSink(Bolt):
    """Collects every tuple's values (as a Python tuple); they end up in
    ``result.outputs[sink_id]`` after :func:`run` or ``Topology.run()``."""

    outputs: list[str] = []

    def prepare(self, context: Context) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def process(self, tup: Tuple) -> None:
        self.rows.append(tuple(tup.values))

    def collected_rows(self) -> list[tuple[Any, ...]]:
        return self.rows


def run(
    topology: Topology | TopologySpec | Flow,
    duration: float | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    chaos: int | None = None,
    clock: ManualClock | None = None,
) -> RunResult:
    """Run ``topology`` (or a :class:`~rayflow.Flow`) in this process without Ray, until it
    ends (or for ``duration``).

    ``chaos`` (a random seed) delays and duplicates deliveries to test ordering and dedup;
    ``clock`` (a :class:`ManualClock`) replaces the wall clock of every task.
    """
    from rayflow.runtime.hosts.local import run_local

    if isinstance(topology, Flow):
        topology = topology.topology()
    spec = topology if isinstance(topology, TopologySpec) else topology.build(overrides)
    return asyncio.run(run_local(spec, duration, chaos, clock))
