"""At-least-once processing: Storm's acking, batched.

Storm tracks each spout tuple emitted with a ``msg_id`` as the root of a tree; rayflow tracks
the tuples a spout task emits in one round (up to ``TAG_LIMIT``) under one random 64-bit root,
and tells them apart by a *tag*: the root plus the tuple's index in the round. Every tuple of a
tree belongs to its spout tuple's tag (a tuple anchored to several tuples, to all their tags);
what a row belongs to is its *mark*: ``None`` (untracked), a tag, a ``range`` of consecutive tags
of one root, or a tuple of tags and ranges. A ``process_batch`` of a thousand spout tuples anchors
what it emits to all of them: one ``range`` of tags, not a thousand, travels with its rows, and a
failure still fails each ``msg_id`` on its own. Rows do not carry their mark: a route keeps each
outgoing batch's rows in *runs* that share a mark, and the batch travels with its runs.

Storm gives every tuple copy a random edge id; rayflow gives one to every (root, batch) pair:
when a batch is sealed, each root in it gets a random 64-bit edge, XORed into what the sending
task tells the root's acker, and the batch carries its ``{root: edge}`` map. The receiving task
acks a root's edge once all of that root's rows in the batch are done (with ``auto_ack``: when
the batch is processed). The acker (an ``__acker`` bolt; several split the roots between them)
keeps one XOR per root: every edge is XORed in twice, once by its creator and once by its
consumer, so the value returns to zero exactly when the whole tree is processed (whatever order
the updates arrive in), and the acker tells the spout task, which calls ``ack(msg_id)`` for each
of the root's tuples. A failed tuple is still done for its tree, and its tag reaches the acker
too: the spout calls ``fail(msg_id)`` for it and ``ack`` for the others. A root not complete
within ``message.timeout`` (a task died, a tuple was never acked) fails all its tuples; their
replays get a root each, so that a tuple that keeps timing out fails alone.

Acker traffic is ordinary rows on the ``__ack`` stream, each a packed group of updates (arrays of
roots and values); none of it is per tuple, and most of it is per spout round.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import Any

from rayflow.api.metrics import LATENCY_BUCKETS, Histogram
from rayflow.api.tuple import Tuple
from rayflow.runtime.acking.acker import (
    ACK_STREAM,
    FAILED,
    FROM_BOLT,
    ROOT_MASK,
    TAG_BITS,
    TAG_LIMIT,
)
from rayflow.spec.model import TopologySpec

ALONE_LIMIT = 100_000  # msg_ids remembered for a replay on their own root, at most

_random = random.Random(os.urandom(16))
new_id = _random.getrandbits

Mark = None | int | range | tuple[int | range, ...]
"""What a run of rows belongs to: no tree, one spout tuple's tag, consecutive tags of one root,
or several of those."""


def new_root() -> int:
    """A random root, its low ``TAG_BITS`` free for the indexes of its tuples."""
    return new_id(64 - TAG_BITS) << TAG_BITS


def pieces_of(mark: Mark) -> tuple[int | range, ...]:
    """A mark's pieces: tags and ranges of tags, each within one root.

    >>> pieces_of(None), pieces_of(5), pieces_of(range(5, 9)), pieces_of((2, range(5, 9)))
    ((), (5,), (range(5, 9),), (2, range(5, 9)))
    """
    if mark is None:
        return ()
    if mark.__class__ is tuple:
        return mark  # type: ignore[return-value]
    return (mark,)  # type: ignore[return-value]


def root_of(piece: int | range) -> int:
    """The root of a tag or of a range of tags (ranges never span two roots)."""
    return (piece if piece.__class__ is int else piece.start) & ROOT_MASK  # type: ignore[union-attr,operator]


def tags_of(mark: Mark) -> list[int]:
    """Every tag a mark names.

    >>> tags_of(None), tags_of(5), tags_of((2, range(5, 8)))
    ([], [5], [2, 5, 6, 7])
    """
    tags: list[int] = []
    for piece in pieces_of(mark):
        if piece.__class__ is int:
            tags.append(piece)  # type: ignore[arg-type]
        else:
            tags.extend(piece)  # type: ignore[arg-type]
    return tags


def mark_of(anchors: Iterable[Tuple]) -> Mark:
    """The mark of a tuple anchored to every tuple of ``anchors`` (Storm's multi-anchoring).

    >>> from rayflow.api.tuple import TupleSource
    >>> src = TupleSource("default", "a", 0, ("x",))
    >>> mark_of([Tuple([1], src, 5), Tuple([2], src, (5, 6)), Tuple([3], src, None)])
    range(5, 7)
    """
    # A rich bolt's input has [mark, batch, done] as its meta.
    return union_mark(a.meta[0] if a.meta.__class__ is list else a.meta for a in anchors)


def union_mark(marks: Iterable[Mark]) -> Mark:
    """The smallest mark naming every tag of ``marks``: consecutive tags of one root become one
    range (a batch of a spout round's tuples is one range however many tuples it holds).

    >>> union_mark([5, None, (5, 6)]), union_mark([None]), union_mark([5, 5])
    (range(5, 7), None, 5)
    >>> union_mark([9, range(5, 8), 2, 8]), union_mark([4095, 4096])  # two roots: two pieces
    ((2, range(5, 10)), (4095, 4096))
    """
    spans: list[tuple[int, int]] = []
    for mark in marks:
        if mark is None:
            continue
        for piece in pieces_of(mark):
            if piece.__class__ is int:
                spans.append((piece, piece + 1))  # type: ignore[operator]
            else:
                spans.append((piece.start, piece.stop))  # type: ignore[union-attr]
    if not spans:
        return None
    spans.sort()
    merged: list[int | range] = []
    start, stop = spans[0]
    root = start & ROOT_MASK
    for first, end in spans:
        if first <= stop and first & ROOT_MASK == root:  # overlaps or follows, same root
            if end > stop:
                stop = end
            continue
        merged.append(start if stop == start + 1 else range(start, stop))
        start, stop, root = first, end, first & ROOT_MASK
    merged.append(start if stop == start + 1 else range(start, stop))
    return merged[0] if len(merged) == 1 else tuple(merged)


class Received:
    """A rich bolt's (``auto_ack = False``) input batch: its edges, and per root the rows not
    yet done; a root's edge is acked when its last row is acked or failed."""

    __slots__ = ("edges", "left")

    def __init__(self, edges: dict[int, int], runs: Iterable[tuple[Mark, int, int]]) -> None:
        self.edges = edges
        self.left: dict[int, int] = {}
        for mark, start, end in runs:
            for piece in pieces_of(mark):  # counted per piece, as _done takes them back
                root = root_of(piece)
                self.left[root] = self.left.get(root, 0) + end - start


def runs_of(rows: int, starts: list[int], marks: list[Mark]) -> Iterable[tuple[Mark, int, int]]:
    """A batch's runs as (mark, first row, end).

    >>> list(runs_of(5, [0, 2], [7, None]))
    [(7, 0, 2), (None, 2, 5)]
    """
    ends = [*starts[1:], rows]
    return zip(marks, starts, ends, strict=True)


class Acking:
    """The acking side of one task: marked emits, sealed batches, acks and fails, and (spouts)
    pending roots."""

    def __init__(
        self,
        collector: Any,
        task_index: int,
        timeout: float,
        max_pending: int | None,
        on_ack: Callable[[Any], None] | None = None,
        on_fail: Callable[[Any], None] | None = None,
        on_error: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self.collector = collector
        self.task_index = task_index  # spouts: the index acker rows name them by; bolts: -1
        self.timeout = timeout
        self.max_pending = max_pending
        self.on_ack = on_ack
        self.on_fail = on_fail
        self.on_error = on_error  # a spout's ack or fail raised: (which, exception)
        self.current: Mark = None  # the mark of the input being processed (emits anchor to it)
        self.runs: tuple[list[int], list[Mark]] = ([], [])  # ... and its runs (a batch bolt's)
        # Spouts: the open root (None: the next tracked emit opens one) and its msg_ids; every
        # pending root's msg_ids and when it opened; roots opened since the last flush_acks.
        self.root: int | None = None
        self.root_msgs: list[Any] = []
        self.pending: dict[int, tuple[list[Any], float]] = {}
        self.pending_messages = 0
        self.pending_peak = 0
        self.fresh: list[int] = []
        self.alone: set[Any] = set()  # msg_ids of timed-out rounds: replayed, each on its own
        self.completions: list[tuple[Any, Any]] = []  # spouts: (roots complete, failed tags)
        self.complete_histogram = Histogram(LATENCY_BUCKETS)
        self.acked = 0
        self.failed = 0
        self.acks: dict[int, int] = {}  # root -> XOR to tell its acker, sent by flush_acks
        self.failures: list[int] = []  # tags of failed tuples, sent by flush_acks
        self._ack_route = collector.routes[ACK_STREAM][0]
        self._ackers = len(self._ack_route.bufs)
        self.routes = [r for r in collector.all_routes if r.stream != ACK_STREAM]
        for route in self.routes:
            route.tracker = self

    # ------------------------------------------------------------- batches
    def register(
        self, marks: list[Mark], start: int, edges: dict[int, int] | None
    ) -> dict[int, int]:
        """Give each root new in ``marks[start:]`` (the runs of a batch being sealed) an edge,
        and XOR the edge into what this task tells the root's acker."""
        if edges is None:
            edges = {}
        acks, last = self.acks, None
        for mark in marks[start:] if start else marks:
            for piece in (mark,) if mark.__class__ is int else pieces_of(mark):
                root = root_of(piece)
                if root != last and root not in edges:
                    edge = edges[root] = new_id(64)
                    acks[root] = acks.get(root, 0) ^ edge
                last = root
        return edges

    def ack_batch(self, edges: dict[int, int]) -> None:
        """Every row of a received batch is done: ack each root's edge."""
        acks = self.acks
        for root, edge in edges.items():
            acks[root] = acks.get(root, 0) ^ edge

    def flush_acks(self) -> None:
        """Seal what routes hold (their edges join the acks), then send the acks as packed
        groups. Registering a batch's edges no later than the ack of its inputs is what keeps a
        root's XOR from reaching zero early; failures go first, so that an acker knows them
        when their root completes."""
        for route in self.routes:
            route.seal_all()
        if self.failures:
            self._send(self.failures, [0] * len(self.failures), FAILED)
            self.failures = []
        acks = self.acks
        if self.fresh:  # a spout: each new root's first update, the XOR of its edges
            self.root = None  # edges registered from now on would come too late: a new root
            fresh = [root for root in self.fresh if root in acks]
            if len(fresh) < len(self.fresh):  # no task subscribes: the tree is complete already
                self.completions.append(([r for r in self.fresh if r not in acks], ()))
            self._send(fresh, [acks.pop(root) for root in fresh], self.task_index)
            self.fresh.clear()
        if acks:
            self._send(acks.keys(), acks.values(), FROM_BOLT)
            acks.clear()

    def _send(self, roots: Iterable[int], values: Iterable[int], spout: int) -> None:
        """One packed ack row per acker: arrays of 64-bit ints pickle as their bytes, several
        times cheaper than rows of ints. Ackers are chosen by root."""
        if self._ackers == 1:
            self._ack_route.add([array("Q", roots), array("Q", values), spout])
            return
        parts: dict[int, tuple[list[int], list[int]]] = {}
        n = self._ackers
        for root, value in zip(roots, values, strict=True):
            part = parts.setdefault((root >> TAG_BITS) % n, ([], []))
            part[0].append(root)
            part[1].append(value)
        for acker, (rs, vs) in parts.items():
            self._ack_route.add_direct(acker, [array("Q", rs), array("Q", vs), spout])

    # ------------------------------------------------------------ emitting
    # A row joins the trees of its anchors: routes keep each buffer's rows in runs that share a
    # mark, and the batch carries the runs (see Route.make_marked_emit).
    def make_emit(self) -> Callable[..., None]:
        """``emit`` for a bolt (and spout, with ``current`` set first): the route's own closure
        for the stream with a single subscriber, :meth:`_emit_marked` for the others."""
        routes = self.collector.routes
        single = [s for s, rs in routes.items() if len(rs) == 1 and s != ACK_STREAM]
        fast = "default" if "default" in single else (single[0] if single else None)
        if fast is None:

            def emit(values: list[Any], stream: str = "default", anchors: Any = None) -> None:
                mark = self.current if anchors is None else mark_of(anchors)
                self._emit_marked(values, stream, mark)

            return emit
        return routes[fast][0].make_marked_emit(fast, self._emit_marked, self)

    def _emit_marked(self, values: list[Any], stream: str, mark: Mark) -> None:
        for route in self.collector._routes_of(stream):
            route.add_marked(values, mark)

    def bolt_emit_many(self, rows: Iterable[list[Any]], stream: str = "default") -> None:
        routes, mark = self.collector._routes_of(stream), self.current
        if len(routes) > 1 and not isinstance(rows, list):
            rows = list(rows)
        for route in routes:
            route.add_many_marked(rows, mark)

    def emit_direct(
        self,
        task: int,
        values: list[Any],
        stream: str = "default",
        anchors: Iterable[Tuple] | None = None,
    ) -> None:
        mark = self.current if anchors is None else mark_of(anchors)
        for route in self.collector._routes_of(stream):
            route.add_direct_marked(task, values, mark)

    def make_spout_emit(self) -> Callable[..., None]:
        """``emit`` for a spout: with a ``msg_id``, the next tuple of the open root."""
        collector, send, state = self.collector, self.make_emit(), self

        def spout_emit(values: list[Any], msg_id: Any = None, stream: str = "default") -> None:
            collector.spout_emits += 1
            if msg_id is None:
                state.current = None
                send(values, stream)
                return
            state.pending_messages += 1
            if state.alone:
                tag = state._alone_tag(msg_id)
                if tag is not None:
                    state.current = tag
                    send(values, stream)
                    return
            msgs = state.root_msgs
            if state.root is None or len(msgs) == TAG_LIMIT:
                msgs = state._open_root()
            state.current = state.root | len(msgs)  # type: ignore[operator]
            msgs.append(msg_id)
            send(values, stream)

        return spout_emit

    def spout_emit_group(self, rows: dict[str, list[Any]], msg_id: Any) -> None:
        """One tracked spout tuple that became several rows (or none) before it left the task
        (a fused source, :mod:`rayflow.streams`): they all belong to ``msg_id``'s tag, so its
        ``ack`` or ``fail`` comes once, when all of them are done."""
        self.collector.spout_emits += 1
        self.pending_messages += 1
        tag = self._alone_tag(msg_id) if self.alone else None
        if tag is None:
            msgs = self.root_msgs
            if self.root is None or len(msgs) == TAG_LIMIT:
                msgs = self._open_root()
            tag = self.root | len(msgs)  # type: ignore[operator]
            msgs.append(msg_id)
        self.current = tag
        for stream, stream_rows in rows.items():
            for route in self.collector._routes_of(stream):
                route.add_many_marked(stream_rows, tag)
        self.current = None

    def fail_rows(self, indexes: Iterable[int]) -> None:
        """Fail rows of the batch being processed (``runs`` of its marks), each on its own: a
        fused operator's item that raised, while the rest of the batch goes on."""
        starts, marks = self.runs
        for i in indexes:
            mark = marks[bisect_right(starts, i) - 1] if marks else None
            if mark is not None:
                self.failures.extend(tags_of(mark))
                self.failed += 1

    def _alone_tag(self, msg_id: Any) -> int | None:
        """A replay of a tuple whose round timed out gets a root of its own: should it time out
        again, its round-mates are not failed with it (None: not such a replay)."""
        try:
            self.alone.remove(msg_id)
        except (KeyError, TypeError):  # TypeError: an unhashable msg_id
            return None
        root = new_root()
        self.pending[root] = ([msg_id], time.monotonic())
        self.fresh.append(root)
        return root

    def _open_root(self) -> list[Any]:
        root = self.root = new_root()
        msgs = self.root_msgs = []
        self.pending[root] = (msgs, time.monotonic())
        self.fresh.append(root)
        return msgs

    def spout_emit_direct(
        self, task: int, values: list[Any], stream: str = "default", **_: Any
    ) -> None:
        """``emit_direct`` for a spout (untracked)."""
        for route in self.collector._routes_of(stream):
            route.add_direct_marked(task, values, None)

    # ------------------------------------------------------------ ack / fail
    def ack(self, tup: Tuple) -> None:
        meta = tup.meta
        if meta.__class__ is not list:
            return  # auto_ack: the executor acks the whole batch
        if meta[2]:
            return
        meta[2] = True
        self.acked += 1
        self._done(meta)

    def _done(self, meta: list[Any]) -> None:
        """A rich bolt's input is acked or failed: its roots' edges once their last row is."""
        received: Received = meta[1]
        left = received.left
        for piece in pieces_of(meta[0]):
            root = root_of(piece)
            count = left[root] - 1
            if count:
                left[root] = count
            else:
                del left[root]
                self.acks[root] = self.acks.get(root, 0) ^ received.edges[root]

    def fail(self, tup: Tuple) -> None:
        meta = tup.meta
        mark = meta
        if meta.__class__ is list:
            if meta[2]:
                return
            meta[2] = True
            mark = meta[0]
            self._done(meta)  # done for its trees: they complete, with this tuple failed
        if mark is None:
            return
        self.failed += 1
        self.failures.extend(tags_of(mark))

    # ------------------------------------------------------------ spouts only
    @property
    def full(self) -> bool:
        return self.max_pending is not None and self.pending_messages >= self.max_pending

    def settle(self) -> None:
        """Run the spout's ack/fail for completed roots and for roots past the timeout."""
        completions, self.completions = self.completions, []
        now = time.monotonic()
        pending, ack = self.pending, self.on_ack
        if self.pending_messages > self.pending_peak:  # grows between two settles only
            self.pending_peak = self.pending_messages
        for done, failed_tags in completions:
            failed = set(failed_tags)
            for root in done:
                entry = pending.pop(root, None)
                if entry is None:
                    continue  # timed out already
                msgs, opened = entry
                self.pending_messages -= len(msgs)
                acked = len(msgs)
                for i, msg_id in enumerate(msgs):
                    if failed and root | i in failed:
                        acked -= 1
                        self._fail(msg_id)
                        continue
                    try:
                        ack(msg_id)  # type: ignore[misc]
                    except Exception as exc:
                        self.on_error("ack", exc)  # type: ignore[misc]
                self.acked += acked
                if acked:
                    self.complete_histogram.observe(now - opened, acked)
        deadline = now - self.timeout
        while pending:
            root, (msgs, opened) = next(iter(pending.items()))
            if opened > deadline:
                break  # pending is in emit order: the rest are younger
            del pending[root]
            if root == self.root:
                self.root = None  # timed out while open: the next emit opens a new one
            self.pending_messages -= len(msgs)
            if len(msgs) > 1:
                if len(self.alone) > ALONE_LIMIT:
                    self.alone.clear()  # replays that never came
                for msg_id in msgs:
                    with contextlib.suppress(TypeError):
                        self.alone.add(msg_id)
            for msg_id in msgs:
                self._fail(msg_id)

    def _fail(self, msg_id: Any) -> None:
        self.failed += 1
        try:
            self.on_fail(msg_id)  # type: ignore[misc]
        except Exception as exc:
            self.on_error("fail", exc)  # type: ignore[misc]


def spout_tasks(spec: TopologySpec) -> list[tuple[str, int]]:
    """Every spout task, in a fixed order: acker rows name a spout task by its index here."""
    return [(c.id, i) for c in spec.spouts for i in range(c.parallelism)]
