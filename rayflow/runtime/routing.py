"""Routes: where one emitted row goes, per subscription (stream x subscribing bolt).

A route holds one row buffer per target task and flushes a buffer as one batch when it reaches
``batch.size`` rows (the task flushes partly filled ones after ``batch.linger.ms``). ``add`` is the
per-tuple hot path: keep it to a handful of Python operations.

>>> from rayflow.runtime.channels import OutputChannel
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

import pickle
import random
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rayflow.errors import TopologyError
from rayflow.runtime.acking import mark_of
from rayflow.runtime.channels import DATA, OutputChannel
from rayflow.runtime.keys import encode_compound, encode_key, key_group_of, task_for_key_group
from rayflow.runtime.runs import MarkedFallback, RunBuffers

_CACHE_LIMIT = 1 << 16
INLINE_BYTES = 64 * 1024  # Ray passes call arguments under ~100 KiB inline, bigger ones via the
# object store (slower, and they overtake nothing but arrive later); batches aim below this.
_RECALIBRATE_EVERY = 256  # flushes between two measurements of the pickled row size

Emit = Callable[..., None]
EmitFallback = Callable[[list[Any], str], None]


class RouteStats:
    """Rows sent, counted per flush rather than per tuple (cheaper)."""

    __slots__ = ("emitted", "transferred")

    def __init__(self) -> None:
        self.emitted = 0
        self.transferred = 0


class Route(RunBuffers):
    """Base route: buffers per target task, flushed as batches (and, under at-least-once, kept
    in runs: see :class:`RunBuffers`)."""

    counts_emits = True  # the first route of a stream counts emits; the others only transfers

    def __init__(
        self, stream: str, channels: Sequence[OutputChannel], batch_size: int, stats: RouteStats
    ) -> None:
        self.stream = stream
        self.channels = list(channels)
        self.size = batch_size
        self.max_size = batch_size
        self.bufs: list[list[Any]] = [[] for _ in channels]
        self._init_runs(len(channels))
        self.stats = stats
        self._resizers: list[Callable[[int], None]] = []
        self._flushes = 0

    def set_size(self, rows: int) -> None:
        """Rows per batch from now on (specialised emit closures are told too)."""
        self.size = rows
        for resize in self._resizers:
            resize(rows)

    def _calibrate(self, rows: list[Any]) -> None:
        """Keep batches small enough to travel inline: measure the pickled size of a batch."""
        try:
            per_row = len(pickle.dumps(rows, 5)) / len(rows)
        except Exception:
            return  # the transport will report the row that cannot be sent
        self.set_size(max(16, min(self.max_size, int(INLINE_BYTES / per_row))))

    def add(self, values: list[Any]) -> None:
        raise NotImplementedError

    def make_emit(self, fast_stream: str, fallback: EmitFallback) -> Emit:
        """An ``emit(values, stream, anchors)`` for a stream with this route only.

        Subclasses inline their ``add`` here: on the per-tuple path one Python call less and
        locals instead of attribute lookups are most of what is left to save.
        """
        add = self.add

        def emit(values: list[Any], stream: str = "default", anchors: Any = None) -> None:
            if stream != fast_stream:
                return fallback(values, stream)
            add(values)

        return emit

    def add_many(self, rows: Iterable[list[Any]]) -> None:
        add = self.add
        for row in rows:
            add(row)

    def add_direct(self, task: int, values: list[Any]) -> None:
        raise TopologyError(
            f"emit_direct on stream '{self.stream}', which a bolt subscribes to without DIRECT "
            "grouping; use emit(), or subscribe with DIRECT"
        )

    def flush(self, i: int) -> None:
        rows = self.bufs[i]
        if rows:
            runs = None if self.tracker is None else self._take_runs(i)
            self.bufs[i] = []
            n = len(rows)
            if self._flushes % _RECALIBRATE_EVERY == 0 and n >= 16:
                self._calibrate(rows)
            self._flushes += 1
            self.stats.transferred += n
            if self.counts_emits:
                self.stats.emitted += n
            self.channels[i].send(DATA, self.stream, rows, runs)

    def flush_all(self) -> None:
        for i, rows in enumerate(self.bufs):
            if rows:
                self.flush(i)

    def discard(self) -> None:
        """Drop buffered rows (a task stopped without draining). The buffer list object stays:
        specialised emit closures hold it."""
        for i, rows in enumerate(self.bufs):
            rows.clear()
            self._reset_runs(i)


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
        buf = self.buf
        buf.extend(rows)
        if len(buf) >= self.size:
            self.flush(self.target)

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
        size = self.size
        for row in rows:
            buf = self.buf
            buf.append(row)
            if len(buf) >= size:
                self._advance()

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


class FieldsRoute(Route):
    """Equal keys to the same task, through frozen key groups (see ``runtime.keys``)."""

    def __init__(self, *args: Any, key_indexes: Sequence[int], max_parallelism: int) -> None:
        super().__init__(*args)
        self.index = key_indexes[0]
        self.indexes = tuple(key_indexes)
        n = len(self.channels)
        self.group_to_task = [
            task_for_key_group(g, max_parallelism, n) for g in range(max_parallelism)
        ]
        self.max_parallelism = max_parallelism
        self.cache: dict[str, int] = {}
        if len(self.indexes) > 1:
            self.add = self._add_compound  # type: ignore[method-assign]

    def task_of_key(self, key: Any) -> int:
        return self.group_to_task[key_group_of(encode_key(key), self.max_parallelism)]

    def _task_of_str(self, key: str) -> int:
        if len(self.cache) >= _CACHE_LIMIT:
            self.cache.clear()
        task = self.cache[key] = self.task_of_key(key)
        return task

    def targets_of(self, values: list[Any]) -> Sequence[int]:
        if len(self.indexes) > 1:
            key = encode_compound([values[i] for i in self.indexes])
            return (self.group_to_task[key_group_of(key, self.max_parallelism)],)
        key = values[self.index]
        if key.__class__ is str:
            task = self.cache.get(key)
            return (self._task_of_str(key) if task is None else task,)
        return (self.task_of_key(key),)

    def add(self, values: list[Any]) -> None:
        key = values[self.index]
        if key.__class__ is str:
            task = self.cache.get(key)
            if task is None:
                task = self._task_of_str(key)
        else:
            task = self.task_of_key(key)
        buf = self.bufs[task]
        buf.append(values)
        if len(buf) >= self.size:
            self.flush(task)

    def add_many(self, rows: Iterable[list[Any]]) -> None:
        if len(self.indexes) > 1 or type(self) is not FieldsRoute:
            return super().add_many(rows)
        # add() inlined: this loop is the batch path's whole routing cost per row.
        index, cache, bufs, size, flush = self.index, self.cache, self.bufs, self.size, self.flush
        for values in rows:
            key = values[index]
            if key.__class__ is str:
                task = cache.get(key)
                if task is None:
                    task = self._task_of_str(key)
            else:
                task = self.task_of_key(key)
            buf = bufs[task]
            buf.append(values)
            if len(buf) >= size:
                flush(task)

    def make_emit(self, fast_stream: str, fallback: EmitFallback) -> Emit:
        if len(self.indexes) > 1 or type(self) is not FieldsRoute:
            return super().make_emit(fast_stream, fallback)
        index, cache, bufs, size = self.index, self.cache, self.bufs, self.size
        flush, miss, task_of_key = self.flush, self._task_of_str, self.task_of_key

        def emit(values: list[Any], stream: str = "default", anchors: Any = None) -> None:
            if stream != fast_stream:
                return fallback(values, stream)
            key = values[index]
            if key.__class__ is str:
                task = cache.get(key)
                if task is None:
                    task = miss(key)
            else:
                task = task_of_key(key)
            buf = bufs[task]
            buf.append(values)
            if len(buf) >= size:
                flush(task)

        def resize(rows: int) -> None:
            nonlocal size
            size = rows

        self._resizers.append(resize)
        return emit

    def make_marked_emit(self, fast_stream: str, fallback: MarkedFallback, tracker: Any) -> Emit:
        if len(self.indexes) > 1 or type(self) is not FieldsRoute:
            return super().make_marked_emit(fast_stream, fallback, tracker)
        index, cache, bufs, size = self.index, self.cache, self.bufs, self.size
        flush, miss, task_of_key = self.flush, self._task_of_str, self.task_of_key
        starts, marks, last = self.run_starts, self.run_marks, self.last_mark

        def emit(values: list[Any], stream: str = "default", anchors: Any = None) -> None:
            mark = tracker.current if anchors is None else mark_of(anchors)
            if stream != fast_stream:
                return fallback(values, stream, mark)
            key = values[index]
            if key.__class__ is str:
                task = cache.get(key)
                if task is None:
                    task = miss(key)
            else:
                task = task_of_key(key)
            buf = bufs[task]
            if last[task] is not mark:  # append_marked, inlined
                last[task] = mark
                starts[task].append(len(buf))
                marks[task].append(mark)
            buf.append(values)
            if len(buf) >= size:
                flush(task)

        def resize(rows: int) -> None:
            nonlocal size
            size = rows

        self._resizers.append(resize)
        return emit

    def _add_compound(self, values: list[Any]) -> None:
        key = encode_compound([values[i] for i in self.indexes])
        task = self.group_to_task[key_group_of(key, self.max_parallelism)]
        buf = self.bufs[task]
        buf.append(values)
        if len(buf) >= self.size:
            self.flush(task)


class PartialKeyRoute(FieldsRoute):
    """Each key to the less loaded of two candidate tasks (partial key grouping)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.load = [0] * len(self.channels)
        self.add = self._add_partial  # type: ignore[method-assign]

    def targets_of(self, values: list[Any]) -> Sequence[int]:
        return (self._choose(values),)

    def _add_partial(self, values: list[Any]) -> None:
        task = self._choose(values)
        buf = self.bufs[task]
        buf.append(values)
        if len(buf) >= self.size:
            self.flush(task)

    def _choose(self, values: list[Any]) -> int:
        if len(self.indexes) == 1:
            encoded = encode_key(values[self.index])
        else:
            encoded = encode_compound([values[i] for i in self.indexes])
        n = len(self.channels)
        first = self.group_to_task[key_group_of(encoded, self.max_parallelism)]
        second = zlib.crc32(encoded, 0x9E3779B9) % n
        task = first if self.load[first] <= self.load[second] else second
        self.load[task] += 1
        return task


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
) -> Route:
    """The route for one subscription, specialised for speed where the grouping allows."""
    args = (stream, channels, batch_size, stats)
    n = len(channels)
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
