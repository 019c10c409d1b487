"""Keyed routes: equal keys to the same task through frozen key groups (``rayflow.keys``); a
partial key splits a hot key between two tasks. Built by
:func:`rayflow.runtime.io.routing.make_route`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from itertools import compress
from operator import not_
from typing import Any

from rayflow.keys import encode_compound, encode_key, key_group_of, task_for_key_group
from rayflow.runtime.acking.tracker import mark_of
from rayflow.runtime.io.route import Emit, EmitFallback, Route
from rayflow.runtime.io.runs import NO_RUN, MarkedFallback

_CACHE_LIMIT = 1 << 16
_STR_ONLY = {str}
_SPREAD_ROWS = 16  # an emit_many of fewer rows goes row by row (the batch lookup's few calls
# cost about as much as a dozen rows)


class FieldsRoute(Route):
    """Equal keys to the same task, through frozen key groups (see ``rayflow.keys``)."""

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
        if isinstance(rows, list) and len(rows) >= _SPREAD_ROWS and self._spread(rows, NO_RUN):
            return
        # add() inlined: the batch path's routing when some key is new (it fills the cache).
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

    def add_many_marked(self, rows: Iterable[list[Any]], mark: Any) -> None:
        if len(self.indexes) > 1 or type(self) is not FieldsRoute:
            return super().add_many_marked(rows, mark)
        if isinstance(rows, list) and len(rows) >= _SPREAD_ROWS and self._spread(rows, mark):
            return
        # add_many() with append_marked() inlined: a batch bolt's emit_many under at-least-once.
        index, cache, bufs, size, flush = self.index, self.cache, self.bufs, self.size, self.flush
        starts, marks, last = self.run_starts, self.run_marks, self.last_mark
        for values in rows:
            key = values[index]
            if key.__class__ is str:
                task = cache.get(key)
                if task is None:
                    task = self._task_of_str(key)
            else:
                task = self.task_of_key(key)
            buf = bufs[task]
            if last[task] is not mark:
                last[task] = mark
                starts[task].append(len(buf))
                marks[task].append(mark)
            buf.append(values)
            if len(buf) >= size:
                flush(task)

    def _spread(self, rows: list[list[Any]], mark: Any) -> bool:
        """Route a batch's rows with their keys looked up all at once, in C loops (``map``
        over the cache of str keys, ``compress``) rather than a Python step per row; False,
        with nothing routed, when some key is no str or not in the cache yet."""
        index = self.index
        keys = [row[index] for row in rows]
        if set(map(type, keys)) != _STR_ONLY:
            return False  # a str subclass (a StrEnum) equals a cached str, but routes as itself
        try:
            tasks = list(map(self.cache.__getitem__, keys))
        except KeyError:
            return False
        parts: Sequence[list[list[Any]]]
        if len(self.bufs) == 2:
            parts = (list(compress(rows, map(not_, tasks))), list(compress(rows, tasks)))
        else:
            parts = [[] for _ in self.bufs]
            appends = [part.append for part in parts]
            for row, task in zip(rows, tasks, strict=True):
                appends[task](row)
        for task, part in enumerate(parts):
            if part:
                self._extend(task, part, mark)
        return True

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
