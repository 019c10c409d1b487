"""Components and topologies the tests share (importable by task actors as ``tests.helpers``)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rayflow import Bolt, Context, Spout, Topology, Tuple
from rayflow.testing import ListSink, TestingSpout


class KeyedSpout(TestingSpout):
    """Scripted rows with fields (key, n)."""

    outputs = ["key", "n"]


class TaggingBolt(Bolt):
    """Forwards each row with the task index that saw it: (key, n, task)."""

    outputs = ["key", "n", "task"]

    def prepare(self, context: Context) -> None:
        self.task = context.task_index

    def process(self, tup: Tuple) -> None:
        self.emit([tup["key"], tup["n"], self.task])


class DirectEmitter(Bolt):
    """Sends each row straight to task ``n % 3`` of the DIRECT subscriber."""

    outputs = ["key", "n"]

    def process(self, tup: Tuple) -> None:
        self.emit_direct(tup["n"] % 3, [tup["key"], tup["n"]])


class EvenOdd:
    """A custom grouping: even n to task 0, odd n to the last task."""

    def choose_tasks(self, values: list[Any], num_tasks: int) -> list[int]:
        return [0] if values[1] % 2 == 0 else [num_tasks - 1]


class EndlessSpout(Spout):
    """Emits increasing numbers until finished from outside (duration or Ctrl-C)."""

    outputs = ["n"]

    def open(self, context: Context) -> None:
        self.n = 0

    def next_tuple(self) -> None:
        self.emit([self.n])
        self.n += 1


class SlowBolt(Bolt):
    """Takes ``delay`` seconds per tuple (blocking, like slow user code)."""

    outputs = ["n"]

    def __init__(self, delay: float = 0.001) -> None:
        self.delay = delay

    def process(self, tup: Tuple) -> None:
        time.sleep(self.delay)
        self.emit(tup.values)


class FailingBolt(Bolt):
    """Raises on every tuple whose n is divisible by ``every``; forwards the others."""

    outputs = ["n"]

    def __init__(self, every: int = 10) -> None:
        self.every = every

    def process(self, tup: Tuple) -> None:
        if tup[0] % self.every == 0:
            raise ValueError(f"bad tuple {tup[0]}")
        self.emit(tup.values)


class BrokenPrepare(Bolt):
    def prepare(self, context: Context) -> None:
        raise RuntimeError("cannot connect to the database")

    def process(self, tup: Tuple) -> None:
        pass


def grouping_topology(
    grouping: str, parallelism: int = 3, rows: int = 60, config: dict[str, Any] | None = None
) -> Topology:
    """keys -> tag (grouped as asked) -> sink: the sink sees which task got which row."""
    items = [(f"k{i % 7}", i) for i in range(rows)]
    t = Topology(f"grouping-{grouping.lower()}", config={"batch.size": 8, **(config or {})})
    spouts = parallelism if grouping == "FORWARD" else 1  # task i to task i: as many
    t.spout("keys", KeyedSpout, args=(items,), parallelism=spouts)
    declare = t.bolt("tag", TaggingBolt, parallelism=parallelism)
    if grouping == "DIRECT":
        t.bolt("direct", DirectEmitter).shuffle("keys")
        declare.direct("direct")
    elif grouping == "FIELDS":
        declare.fields("keys", "key")
    elif grouping == "PARTIAL_KEY":
        declare.partial_key("keys", "key")
    elif grouping == "CUSTOM":
        declare.custom("keys", EvenOdd())
    else:
        method = {
            "SHUFFLE": "shuffle",
            "ALL": "all",
            "GLOBAL": "global_",
            "NONE": "none",
            "LOCAL_OR_SHUFFLE": "local_or_shuffle",
            "FORWARD": "forward",
        }[grouping]
        getattr(declare, method)("keys")
    t.bolt("sink", ListSink).global_("tag")
    return t


def check_grouping(
    grouping: str, rows: list[tuple[Any, ...]], parallelism: int = 3, expected_rows: int = 60
) -> None:
    """Assert Storm's delivery rule for ``grouping`` over the sink's (key, n, task) rows."""
    tasks_of_key: dict[str, set[int]] = {}
    for key, _n, task in rows:
        tasks_of_key.setdefault(key, set()).add(task)
    per_n = Counter(n for _k, n, _t in rows)
    if grouping == "ALL":
        assert len(rows) == expected_rows * parallelism
        assert set(per_n.values()) == {parallelism}
        return
    assert sorted(per_n) == list(range(expected_rows)), "every row exactly once"
    assert set(per_n.values()) == {1}
    tasks = {task for _k, _n, task in rows}
    if grouping == "FIELDS":
        assert all(len(t) == 1 for t in tasks_of_key.values()), tasks_of_key
        assert len(tasks) > 1, "seven keys over three tasks should use more than one task"
    elif grouping == "GLOBAL":
        assert tasks == {0}
    elif grouping == "DIRECT":
        assert all(task == n % 3 for _k, n, task in rows)
    elif grouping == "FORWARD":  # spout task j emitted rows n = j mod parallelism
        assert all(task == n % parallelism for _k, n, task in rows)
        assert tasks == set(range(parallelism))
    elif grouping == "PARTIAL_KEY":
        assert all(len(t) <= 2 for t in tasks_of_key.values()), tasks_of_key
    elif grouping == "CUSTOM":
        assert all(task == (0 if n % 2 == 0 else parallelism - 1) for _k, n, task in rows)
    else:  # SHUFFLE, NONE, LOCAL_OR_SHUFFLE
        assert tasks == set(range(parallelism)), f"{grouping} should reach every task"


class StuckOnce(Bolt):
    """Blocks its task loop for ``seconds`` on the first tuple (user code that hangs)."""

    outputs = ["value"]

    def __init__(self, seconds: float = 6.0) -> None:
        self.seconds = seconds
        self.stuck = False

    def process(self, tup: Tuple) -> None:
        if not self.stuck:
            self.stuck = True
            time.sleep(self.seconds)
        self.emit(tup.values)
