"""The base of every route (one subscription: stream x subscribing bolt): a row buffer per
target task, flushed as one batch at ``batch.size`` rows. The routes are in
:mod:`rayflow.runtime.io.routing` (and :mod:`rayflow.runtime.io.keyed_routes`)."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rayflow.errors import TopologyError
from rayflow.runtime.io.channels import OutputChannel
from rayflow.runtime.io.messages import DATA
from rayflow.runtime.io.runs import NO_RUN, RunBuffers

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

    def _extend(self, task: int, rows: Iterable[list[Any]], mark: Any = NO_RUN) -> None:
        """Append ``rows`` to ``task``'s buffer a slice at a time (a C copy, not a step per
        row), sent as batches of at most ``batch.size`` rows; under at-least-once ``mark``
        names the tree(s) every one of them belongs to."""
        rows = rows if isinstance(rows, list) else list(rows)
        start, n = 0, len(rows)
        while start < n:
            buf = self.bufs[task]
            room = self.size - len(buf)
            if room > 0:
                if mark is not NO_RUN and self.last_mark[task] is not mark:
                    self._open_run(task, mark)
                buf.extend(rows if start == 0 and room >= n else rows[start : start + room])
                start += room
            if len(buf) >= self.size:
                self._full(task)
                task = self._filling(task)

    def _filling(self, task: int) -> int:
        """The task whose buffer takes the next rows once ``task``'s batch was sent."""
        return task

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
