"""At-least-once processing: Storm's acking, batched.

A spout tuple emitted with a ``msg_id`` gets a random 64-bit root id; every copy of every tuple in
its tree carries, per root, a random 64-bit edge id (as a hidden last value on the wire). Each task
tells the root's acker (an ``__acker`` bolt, partitioned by root) the XOR of the edges it consumed
and created; when a root's XOR returns to zero its whole tree is processed and the acker tells the
spout task, which calls ``ack(msg_id)``. A failed tuple, or a tree not done within
``message.timeout``, makes the spout call ``fail(msg_id)``. Acker traffic is ordinary rows on the
``__ack`` stream, batched like data; completions go back to spouts in batches too.

>>> acker = AckerCore()
>>> acker.update(7, 0b1010, spout=0)   # the spout's init: the XOR of its copies' edges
>>> acker.update(7, 0b1010, spout=-1)  # the bolt acks its input (and created no children)
>>> acker.completions
{0: [(7, True)]}
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from rayflow.api.components import Bolt
from rayflow.api.metrics import LATENCY_BUCKETS, Histogram
from rayflow.api.tuple import Batch, Tuple
from rayflow.spec.model import ClassRef, ComponentSpec, Grouping, StreamSpec, TopologySpec

ACKER = "__acker"
ACK_STREAM = "__ack"
ACK_FIELDS = ("root", "value", "spout")
FROM_BOLT = -1  # the ``spout`` value of an ack row sent by a bolt
FAILED = -2  # ... of a fail row

_random = random.Random(os.urandom(16))
new_id = _random.getrandbits


# The acking ids of one received tuple live in ``Tuple.meta`` as a plain list (cheap to make per
# tuple): [pairs of (root, edge), XOR of the edges of the tuples anchored to it so far, done].
PAIRS, XOR, DONE = 0, 1, 2


def ack_ids(pairs: tuple[tuple[int, int], ...]) -> list[Any]:
    """The acking state of a received tuple (see PAIRS, XOR, DONE)."""
    return [pairs, 0, False]


def _tracked(meta: Any) -> bool:
    return meta.__class__ is list


def with_ackers(spec: TopologySpec, ackers: int = 1) -> TopologySpec:
    """The topology plus its acker bolts and an ``__ack`` stream from every component."""
    if any(c.id == ACKER for c in spec.components):
        return spec
    components = [
        dataclasses.replace(c, outputs={**c.outputs, ACK_STREAM: ACK_FIELDS})
        for c in spec.components
    ]
    acker = ComponentSpec(
        ACKER,
        "bolt",
        ClassRef.of(AckerBolt),
        parallelism=ackers,
        config={"tick.interval": max(1000, int(spec.settings.message_timeout * 1000))},
    )
    # One acker: every row to it; several: partitioned by root (key groups of the root id).
    grouping = Grouping("GLOBAL") if ackers == 1 else Grouping.fields("root")
    streams = [StreamSpec(c.id, ACKER, grouping, ACK_STREAM) for c in components]
    return TopologySpec(
        spec.name,
        (*components, acker),
        (*spec.streams, *streams),
        spec.settings,
        spec.config,
        spec.origin,
    )


def _child_ids(metas: list[list[Any]]) -> dict[int, int]:
    """The ids of one new child copy: a fresh edge per anchor, added to the anchor's XOR and to
    each of its roots (Storm's anchoring)."""
    ids: dict[int, int] = {}
    for meta in metas:
        edge = new_id(64)
        meta[XOR] ^= edge
        for root, _edge in meta[PAIRS]:
            ids[root] = ids.get(root, 0) ^ edge
    return ids


class AckerCore:
    """XOR per root; a root whose value returns to zero (with its spout known) is complete."""

    def __init__(self) -> None:
        self.pending: dict[int, list[int]] = {}  # root -> [value, spout task, last update]
        self.completions: dict[int, list[tuple[int, bool]]] = {}

    def update(self, root: int, value: int, spout: int) -> None:
        entry = self.pending.get(root)
        if entry is None:
            entry = self.pending[root] = [0, FROM_BOLT, 0]
        entry[2] = int(time.monotonic())
        if spout == FAILED:
            entry[0] = -1  # failed: report once the spout task is known
            if entry[1] >= 0:
                self._complete(root, entry[1], False)
            return
        if spout >= 0:
            entry[1] = spout
        if entry[0] == -1:
            if entry[1] >= 0:
                self._complete(root, entry[1], False)
            return
        entry[0] ^= value
        if entry[0] == 0 and entry[1] >= 0:
            self._complete(root, entry[1], True)

    def _complete(self, root: int, spout: int, ok: bool) -> None:
        del self.pending[root]
        self.completions.setdefault(spout, []).append((root, ok))

    def expire(self, older_than: float) -> int:
        """Forget roots untouched since ``older_than`` (their spouts timed them out already)."""
        stale = [r for r, entry in self.pending.items() if entry[2] < older_than]
        for root in stale:
            del self.pending[root]
        return len(stale)


class AckerBolt(Bolt):
    """The system bolt behind ``__acker`` tasks; ``send_to_spout`` is bound by the runtime."""

    outputs: list[str] = []

    def prepare(self, context: Any) -> None:
        self.core = AckerCore()
        self.timeout = float(context.config.get("message.timeout", 30.0))

    def process(self, tup: Tuple) -> None:  # only tick tuples come here
        if tup.is_tick:
            self.core.expire(time.monotonic() - 2 * self.timeout)

    def process_batch(self, batch: Batch) -> None:
        update = self.core.update
        for root, value, spout in batch.values:
            update(root, value, spout)
        if self.core.completions:  # one message per spout task and input batch
            for spout_task, items in self.core.completions.items():
                self.send_to_spout(spout_task, items)  # type: ignore[attr-defined]
            self.core.completions = {}


class Acking:
    """The acking side of one task: anchored emits, acks and fails, and (spouts) pending trees."""

    def __init__(
        self,
        collector: Any,
        task_index: int,
        timeout: float,
        max_pending: int | None,
        on_ack: Callable[[Any], None] | None = None,
        on_fail: Callable[[Any], None] | None = None,
    ) -> None:
        self.collector = collector
        self.task_index = task_index
        self.timeout = timeout
        self.max_pending = max_pending
        self.on_ack = on_ack
        self.on_fail = on_fail
        self.current: Tuple | None = None  # the input being processed (auto_ack anchors to it)
        self.pending: dict[int, tuple[Any, float]] = {}  # spouts: root -> (msg_id, emitted at)
        self.pending_peak = 0
        self.completions: list[tuple[int, bool]] = []
        self.complete_latency = 0.0
        self.complete_histogram = Histogram(LATENCY_BUCKETS)
        self.acked = 0
        self.failed = 0
        self.acks: dict[int, int] = {}  # root -> XOR of this batch's acks, sent by flush_acks
        self._ack_route = collector.routes[ACK_STREAM][0]

    # -------------------------------------------------------------- emitting
    def _send(self, stream: str, values: list[Any], roots_of: Callable[[], dict]) -> None:
        for route in self.collector._routes_of(stream):
            for task in route.targets_of(values):
                route.append_to(task, [*values, tuple(roots_of().items())])

    def bolt_emit(
        self, values: list[Any], stream: str = "default", anchors: Iterable[Tuple] | None = None
    ) -> None:
        """Emit one tuple anchored to ``anchors`` (default: the input being processed)."""
        current = self.current
        if anchors is None and current is not None and _tracked(current.meta):
            # The common case, kept short: anchored to the one input being processed.
            meta = current.meta
            pairs = meta[PAIRS]
            for route in self.collector._routes_of(stream):
                for task in route.targets_of(values):
                    edge = new_id(64)
                    meta[XOR] ^= edge
                    if len(pairs) == 1:
                        ids: tuple = ((pairs[0][0], edge),)
                    else:
                        ids = tuple((root, edge) for root, _ in pairs)
                    route.append_to(task, [*values, ids])
            return
        metas = self._anchor_metas(anchors)
        self._send(stream, values, lambda: _child_ids(metas))

    def make_emit(self) -> Callable[..., None]:
        """``emit`` for a bolt: a closure specialised for the stream with a single subscriber
        (the per-tuple path), falling back to :meth:`bolt_emit` for everything else."""
        routes = self.collector.routes
        single = [s for s, rs in routes.items() if len(rs) == 1 and s != ACK_STREAM]
        fast = "default" if "default" in single else (single[0] if single else None)
        if fast is None:
            return self.bolt_emit
        route = routes[fast][0]
        targets_of, append_to, slow, state = route.targets_of, route.append_to, self.bolt_emit, self

        def emit(values: list[Any], stream: str = "default", anchors: Any = None) -> None:
            current = state.current
            if (
                stream != fast
                or anchors is not None
                or current is None
                or not _tracked(current.meta)
            ):
                slow(values, stream, anchors)
                return
            meta = current.meta
            pairs = meta[PAIRS]
            for task in targets_of(values):
                edge = new_id(64)
                meta[XOR] ^= edge
                if len(pairs) == 1:
                    append_to(task, [*values, ((pairs[0][0], edge),)])
                else:
                    append_to(task, [*values, tuple((root, edge) for root, _ in pairs)])

        return emit

    def bolt_emit_many(self, rows: Iterable[list[Any]], stream: str = "default") -> None:
        for row in rows:
            self.bolt_emit(row, stream)

    def emit_direct(
        self,
        task: int,
        values: list[Any],
        stream: str = "default",
        anchors: Iterable[Tuple] | None = None,
    ) -> None:
        metas = self._anchor_metas(anchors)
        for route in self.collector._routes_of(stream):
            route.add_direct(task, [*values, tuple(_child_ids(metas).items())])

    def _anchor_metas(self, anchors: Iterable[Tuple] | None) -> list[list[Any]]:
        if anchors is None:
            anchors = () if self.current is None else (self.current,)
        return [a.meta for a in anchors if _tracked(a.meta)]

    def spout_emit(self, values: list[Any], msg_id: Any = None, stream: str = "default") -> None:
        self.collector.spout_emits += 1
        if msg_id is None:
            self._send(stream, values, dict)
            return
        root = new_id(64)
        init = 0

        def roots() -> dict[int, int]:
            nonlocal init
            edge = new_id(64)
            init ^= edge
            return {root: edge}

        self._send(stream, values, roots)
        self.pending[root] = (msg_id, time.monotonic())
        if len(self.pending) > self.pending_peak:
            self.pending_peak = len(self.pending)
        if init:
            self._ack_route.add([root, init, self.task_index])
        else:  # no task subscribes: the tree is already complete
            self.completions.append((root, True))

    # ------------------------------------------------------------ ack / fail
    def ack(self, tup: Tuple) -> None:
        meta = tup.meta
        if not _tracked(meta) or meta[DONE]:
            return
        meta[DONE] = True
        self.acked += 1
        # XOR is associative: acks of one root within a batch travel as one row (flush_acks).
        acks, xor = self.acks, meta[XOR]
        for root, edge in meta[PAIRS]:
            acks[root] = acks.get(root, 0) ^ edge ^ xor

    def flush_acks(self) -> None:
        """Send the acks gathered since the last call, one row per root."""
        if self.acks:
            add = self._ack_route.add
            for root, value in self.acks.items():
                if value:  # a zero changes nothing at the acker
                    add([root, value, FROM_BOLT])
            self.acks.clear()

    def fail(self, tup: Tuple) -> None:
        meta = tup.meta
        if not _tracked(meta) or meta[DONE]:
            return
        meta[DONE] = True
        self.failed += 1
        for root, _edge in meta[PAIRS]:
            self._ack_route.add([root, 0, FAILED])

    # ------------------------------------------------------------ spouts only
    @property
    def full(self) -> bool:
        return self.max_pending is not None and len(self.pending) >= self.max_pending

    def settle(self) -> None:
        """Run the spout's ack/fail for completed trees and for trees past the timeout."""
        completions, self.completions = self.completions, []
        now = time.monotonic()
        for root, ok in completions:
            entry = self.pending.pop(root, None)
            if entry is None:
                continue  # timed out already
            msg_id, emitted = entry
            if ok:
                self.acked += 1
                self.complete_latency += now - emitted
                self.complete_histogram.observe(now - emitted)
                self.on_ack(msg_id)  # type: ignore[misc]
            else:
                self.failed += 1
                self.on_fail(msg_id)  # type: ignore[misc]
        deadline = now - self.timeout
        while self.pending:
            root, (msg_id, emitted) = next(iter(self.pending.items()))
            if emitted > deadline:
                break  # pending is in emit order: the rest are younger
            del self.pending[root]
            self.failed += 1
            self.on_fail(msg_id)  # type: ignore[misc]


def prepare_spec(spec: TopologySpec) -> TopologySpec:
    """The spec a host runs: with ackers added under at-least-once, and checked (every spout
    can rewind) and its checkpoint storage resolved under exactly-once."""
    if spec.settings.reliability == "exactly_once":
        from rayflow.runtime.task_checkpoint import check_exactly_once

        return check_exactly_once(spec)
    if spec.settings.reliability == "at_least_once":
        return with_ackers(spec, int(spec.config.get("ackers", 1)))
    return spec


def spout_tasks(spec: TopologySpec) -> list[tuple[str, int]]:
    """Every spout task, in a fixed order: acker rows name a spout task by its index here."""
    return [(c.id, i) for c in spec.spouts for i in range(c.parallelism)]
