"""Routes: where one emitted row goes, per subscription (stream x subscribing bolt).

A route holds one row buffer per target task and flushes a buffer as one batch when it reaches
``batch.size`` rows (the task flushes partly filled ones when it is idle, or after
``batch.linger.ms`` while it is busy). ``add`` is the per-tuple hot path: keep it to a handful
of Python operations.

>>> from rayflow.runtime.io.channels import OutputChannel
>>> sent = []
>>> chans = [OutputChannel(("c", i), 4, lambda s, k, st, rows, m, on_done: sent.append(rows))
...          for i in range(2)]
>>> route = make_route("FIELDS", "default", chans, batch_size=2, key_indexes=(0,),
...                    max_parallelism=128, stats=RouteStats())
>>> for w in ["a", "d", "a", "a"]:
...     route.add([w])
>>> route.flush_all()
>>> sorted(map(str, sent))
["[['a'], ['a']]", "[['a']]", "[['d']]"]
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rayflow.errors import TopologyError
from rayflow.runtime.acking.tracker import mark_of
from rayflow.runtime.io.channels import OutputChannel
from rayflow.runtime.io.keyed_routes import FieldsRoute, PartialKeyRoute
from rayflow.runtime.io.route import Emit, EmitFallback, Route, RouteStats
from rayflow.runtime.io.runs import MarkedFallback


class SingleRoute(Route):
    """Every row to one task (any grouping with one target; GLOBAL)."""

    def __init__(self, *args: Any, target: int = 0) -> None:
        super().__init__(*args)
        self.target = target
        self.buf = self.bufs[target]

    def add(self, values: list[Any]) -> None:
        buf = self.buf
        buf.append(values)
        if len(buf) >= self.size:
            self.flush(self.target)

    def add_many(self, rows: Iterable[list[Any]]) -> None:
        self._extend(self.target, rows)

    def add_many_marked(self, rows: Iterable[list[Any]], mark: Any) -> None:
        self._extend(self.target, rows, mark)

    def targets_of(self, values: list[Any]) -> Sequence[int]:
        return (self.target,)

    def make_emit(self, fast_stream: str, fallback: EmitFallback) -> Emit:
        bufs, target, size, flush = self.bufs, self.target, self.size, self.flush

        def emit(values: list[Any], stream: str = "default", anchors: Any = None) -> None:
            if stream != fast_stream:
                return fallback(values, stream)
            buf = bufs[target]
            buf.append(values)
            if len(buf) >= size:
                flush(target)

        def resize(rows: int) -> None:
            nonlocal size
            size = rows

        self._resizers.append(resize)
        return emit

    def make_marked_emit(self, fast_stream: str, fallback: MarkedFallback, tracker: Any) -> Emit:
        bufs, target, size, flush = self.bufs, self.target, self.size, self.flush
        starts, marks, last = self.run_starts, self.run_marks, self.last_mark

        def emit(values: list[Any], stream: str = "default", anchors: Any = None) -> None:
            mark = tracker.current if anchors is None else mark_of(anchors)
            if stream != fast_stream:
                return fallback(values, stream, mark)
            buf = bufs[target]
            if last[target] is not mark:  # append_marked, inlined
                last[target] = mark
                starts[target].append(len(buf))
                marks[target].append(mark)
            buf.append(values)
            if len(buf) >= size:
                flush(target)

        def resize(rows: int) -> None:
            nonlocal size
            size = rows

        self._resizers.append(resize)
        return emit

    def flush(self, i: int) -> None:
        super().flush(i)
        self.buf = self.bufs[self.target]


class ShuffleRoute(Route):
    """Fills one target's batch, then moves on, preferring a target with a free credit."""

    def __init__(self, *args: Any, candidates: Sequence[int] | None = None) -> None:
        super().__init__(*args)
        self.candidates = list(candidates) if candidates else list(range(len(self.channels)))
        self.pos = random.randrange(len(self.candidates))
        self.cur = self.candidates[self.pos]
        self.buf = self.bufs[self.cur]

    def add(self, values: list[Any]) -> None:
        buf = self.buf
        buf.append(values)
        if len(buf) >= self.size:
            self._advance()

    def add_many(self, rows: Iterable[list[Any]]) -> None:
        self._extend(self.cur, rows)

    def add_many_marked(self, rows: Iterable[list[Any]], mark: Any) -> None:
        self._extend(self.cur, rows, mark)

    def _filling(self, task: int) -> int:
        return self.cur  # a full batch moves on to the next target

    def make_emit(self, fast_stream: str, fallback: EmitFallback) -> Emit:
        size = self.size
        route = self

        def emit(values: list[Any], stream: str = "default", anchors: Any = None) -> None:
            if stream != fast_stream:
                return fallback(values, stream)
            buf = route.buf
            buf.append(values)
            if len(buf) >= size:
                route._advance()

        def resize(rows: int) -> None:
            nonlocal size
            size = rows

        self._resizers.append(resize)
        return emit

    def targets_of(self, values: list[Any]) -> Sequence[int]:
        return (self.cur,)

    def _full(self, task: int) -> None:
        if task == self.cur:
            self._advance()
        else:
            self.flush(task)

    def make_marked_emit(self, fast_stream: str, fallback: MarkedFallback, tracker: Any) -> Emit:
        size, route = self.size, self
        starts, marks, last = self.run_starts, self.run_marks, self.last_mark

        def emit(values: list[Any], stream: str = "default", anchors: Any = None) -> None:
            mark = tracker.current if anchors is None else mark_of(anchors)
            if stream != fast_stream:
                return fallback(values, stream, mark)
            buf, cur = route.buf, route.cur
            if last[cur] is not mark:  # append_marked, inlined
                last[cur] = mark
                starts[cur].append(len(buf))
                marks[cur].append(mark)
            buf.append(values)
            if len(buf) >= size:
                route._advance()

        def resize(rows: int) -> None:
            nonlocal size
            size = rows

        self._resizers.append(resize)
        return emit

    def _advance(self) -> None:
        self.flush(self.cur)
        n = len(self.candidates)
        for step in range(1, n + 1):
            pos = (self.pos + step) % n
            if self.channels[self.candidates[pos]].credits > 0:
                break
        else:
            pos = (self.pos + 1) % n
        self.pos = pos
        self.cur = self.candidates[pos]
        self.buf = self.bufs[self.cur]

    def flush_all(self) -> None:
        if self.buf:
            self._advance()
        super().flush_all()


class AllRoute(Route):
    """Every row to every task."""

    def targets_of(self, values: list[Any]) -> Sequence[int]:
        return range(len(self.bufs))

    def add(self, values: list[Any]) -> None:
        for i, buf in enumerate(self.bufs):
            buf.append(values)
            if len(buf) >= self.size:
                self.flush(i)

    def flush(self, i: int) -> None:
        # Count an emit once (on task 0's copy), a transfer per copy.
        counts, self.counts_emits = self.counts_emits, self.counts_emits and i == 0
        try:
            super().flush(i)
        finally:
            self.counts_emits = counts


class DirectRoute(Route):
    """The emitter names the task (``emit_direct``)."""

    def add(self, values: list[Any]) -> None:
        raise TopologyError(
            f"stream '{self.stream}' has a DIRECT subscriber: emit to it with "
            "emit_direct(task_index, values, stream=...)"
        )

    def targets_of(self, values: list[Any]) -> Sequence[int]:
        self.add(values)  # raises: DIRECT subscribers get rows only through emit_direct
        return ()

    def _check_task(self, task: int) -> None:
        if not 0 <= task < len(self.bufs):
            raise TopologyError(
                f"emit_direct to task {task}, but the bolt reading stream '{self.stream}' has "
                f"{len(self.bufs)} tasks (0..{len(self.bufs) - 1})"
            )

    def add_direct_marked(self, task: int, values: list[Any], mark: Any) -> None:
        self._check_task(task)
        self.append_marked(task, values, mark)

    def add_direct(self, task: int, values: list[Any]) -> None:
        self._check_task(task)
        buf = self.bufs[task]
        buf.append(values)
        if len(buf) >= self.size:
            self.flush(task)


class CustomRoute(Route):
    """The user's ``choose_tasks(values, num_tasks) -> list[int]`` picks the tasks."""

    def __init__(self, *args: Any, grouping: Any) -> None:
        super().__init__(*args)
        self.choose: Callable[[list[Any], int], Iterable[int]] = grouping.choose_tasks

    def targets_of(self, values: list[Any]) -> list[int]:
        n = len(self.bufs)
        tasks = list(self.choose(values, n))
        for task in tasks:
            if not 0 <= task < n:
                raise TopologyError(
                    f"custom grouping on stream '{self.stream}' chose task {task}; "
                    f"valid tasks are 0..{n - 1}"
                )
        return tasks

    def add(self, values: list[Any]) -> None:
        first = True
        for task in self.targets_of(values):
            buf = self.bufs[task]
            buf.append(values)
            if not first:
                self.stats.emitted -= 1  # one emit, several copies
            first = False
            if len(buf) >= self.size:
                self.flush(task)

    def add_marked(self, values: list[Any], mark: Any) -> None:
        for i, task in enumerate(self.targets_of(values)):
            if i:
                self.stats.emitted -= 1  # one emit, several copies
            self.append_marked(task, values, mark)


class DropRoute(Route):
    """A declared stream nobody subscribes to: rows are counted and dropped."""

    def __init__(self, stream: str, stats: RouteStats) -> None:
        super().__init__(stream, [], 1, stats)

    def add(self, values: list[Any]) -> None:
        self.stats.emitted += 1

    def add_marked(self, values: list[Any], mark: Any) -> None:
        self.stats.emitted += 1

    def add_many(self, rows: Iterable[list[Any]]) -> None:
        self.stats.emitted += sum(1 for _ in rows)

    def add_direct(self, task: int, values: list[Any]) -> None:
        self.stats.emitted += 1


def make_route(
    grouping_type: str,
    stream: str,
    channels: Sequence[OutputChannel],
    batch_size: int,
    stats: RouteStats,
    key_indexes: Sequence[int] = (),
    max_parallelism: int = 128,
    custom: Any = None,
    local_targets: Sequence[int] = (),
    own_task: int = 0,
) -> Route:
    """The route for one subscription, specialised for speed where the grouping allows
    (``own_task``: the emitting task's index, which a FORWARD grouping sends to)."""
    args = (stream, channels, batch_size, stats)
    n = len(channels)
    if grouping_type == "FORWARD":
        return SingleRoute(*args, target=own_task)
    if grouping_type == "DIRECT":
        return DirectRoute(*args)
    if grouping_type == "CUSTOM":
        return CustomRoute(*args, grouping=custom)
    if grouping_type == "GLOBAL" or n == 1:
        return SingleRoute(*args, target=0)
    if grouping_type == "ALL":
        return AllRoute(*args)
    if grouping_type == "FIELDS":
        return FieldsRoute(*args, key_indexes=key_indexes, max_parallelism=max_parallelism)
    if grouping_type == "PARTIAL_KEY":
        return PartialKeyRoute(*args, key_indexes=key_indexes, max_parallelism=max_parallelism)
    if grouping_type == "LOCAL_OR_SHUFFLE" and local_targets:
        if len(local_targets) == 1:
            return SingleRoute(*args, target=local_targets[0])
        return ShuffleRoute(*args, candidates=local_targets)
    return ShuffleRoute(*args)  # SHUFFLE, NONE, LOCAL_OR_SHUFFLE with no local task
