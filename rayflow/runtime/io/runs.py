"""At-least-once routing: a route's buffers kept in *runs* of rows that share a mark (the spout
tuples the rows belong to), sealed and sent with their roots' edges (see
:mod:`rayflow.runtime.acking.tracker` for the protocol). A mixin of
:class:`rayflow.runtime.io.route.Route`;
the routes' specialised ``make_marked_emit`` closures inline :meth:`RunBuffers.append_marked`.

>>> class Buffers(RunBuffers):
...     def __init__(self):
...         self.bufs, self.size = [[]], 100
...         self._init_runs(1)
>>> b = Buffers()
>>> for row, mark in (["a"], 7), (["b"], 7), (["c"], None):
...     b.append_marked(0, row, mark)
>>> b.run_starts[0], b.run_marks[0]
([0, 2], [7, None])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rayflow.runtime.acking.tracker import mark_of

Emit = Callable[..., None]
MarkedFallback = Callable[[list[Any], str, Any], None]
NO_RUN = object()  # a buffer's last mark before its first row (None is a mark: untracked)


class RunBuffers:
    """Per buffer: where each run starts, its mark, the last mark, how many runs are sealed, and
    the edges of the sealed roots."""

    tracker: Any = None  # at-least-once: the task's ``Acking``, which gives sealed rows edges
    bufs: list[list[Any]]  # the route's; it also provides flush() and add_direct()
    size: int

    def _init_runs(self, n: int) -> None:
        self.run_starts: list[list[int]] = [[] for _ in range(n)]
        self.run_marks: list[list[Any]] = [[] for _ in range(n)]
        self.last_mark: list[Any] = [NO_RUN] * n
        self.sealed = [0] * n
        self.edges: list[dict[int, int] | None] = [None] * n

    def targets_of(self, values: list[Any]) -> Sequence[int]:
        """The tasks ``values`` goes to (the grouping's decision; nothing appended)."""
        raise NotImplementedError

    def append_marked(self, task: int, values: list[Any], mark: Any) -> None:
        """Append a row of the tree(s) ``mark`` names to ``task``'s buffer."""
        buf = self.bufs[task]
        if self.last_mark[task] is not mark:
            self._open_run(task, mark)
        buf.append(values)
        if len(buf) >= self.size:
            self._full(task)

    def _open_run(self, task: int, mark: Any) -> None:
        """Rows of ``mark`` follow in ``task``'s buffer (whose last run is another mark's)."""
        self.last_mark[task] = mark
        self.run_starts[task].append(len(self.bufs[task]))
        self.run_marks[task].append(mark)

    def _full(self, task: int) -> None:
        self.flush(task)

    def add_marked(self, values: list[Any], mark: Any) -> None:
        for task in self.targets_of(values):
            self.append_marked(task, values, mark)

    def add_many_marked(self, rows: Iterable[list[Any]], mark: Any) -> None:
        """Rows that all belong to the tree(s) ``mark`` names (``emit_many`` of a bolt)."""
        add_marked = self.add_marked
        for values in rows:
            add_marked(values, mark)

    def add_direct_marked(self, task: int, values: list[Any], mark: Any) -> None:
        self.add_direct(task, values)  # raises but on DIRECT routes

    def make_marked_emit(self, fast_stream: str, fallback: MarkedFallback, tracker: Any) -> Emit:
        """:meth:`make_emit` for at-least-once: each row joins its anchors' trees (the input
        being processed, ``tracker.current``, unless ``anchors`` are given)."""
        add_marked = self.add_marked

        def emit(values: list[Any], stream: str = "default", anchors: Any = None) -> None:
            mark = tracker.current if anchors is None else mark_of(anchors)
            if stream != fast_stream:
                return fallback(values, stream, mark)
            add_marked(values, mark)

        return emit

    def seal(self, i: int) -> None:
        """The roots of buffer ``i``'s runs added since the last seal get their edges (see
        ``runtime.acking.tracker``); the batch carries them when it is sent."""
        marks = self.run_marks[i]
        if len(marks) > self.sealed[i]:
            self.edges[i] = self.tracker.register(marks, self.sealed[i], self.edges[i])
            self.sealed[i] = len(marks)

    def seal_all(self) -> None:
        for i in range(len(self.bufs)):
            self.seal(i)

    def _take_runs(self, i: int) -> tuple[dict[int, int], list[int], list[Any]]:
        """Buffer ``i``'s edges and runs, for the batch being sent (and fresh ones after it)."""
        self.seal(i)
        taken = (self.edges[i] or {}, self.run_starts[i], self.run_marks[i])
        self._reset_runs(i)
        return taken

    def _reset_runs(self, i: int) -> None:
        self.edges[i], self.run_starts[i], self.run_marks[i] = None, [], []
        self.last_mark[i], self.sealed[i] = NO_RUN, 0
