"""The acker: one XOR per root, and completed roots back to their spout tasks (the other half
of :mod:`rayflow.runtime.acking.tracker`, which explains the protocol).

>>> acker = AckerCore()
>>> acker.update(7 << TAG_BITS, 0b1010, spout=0)   # the spout's init: the XOR of its edges
>>> acker.update(7 << TAG_BITS, 0b1010, spout=-1)  # the bolt acks its input batch
>>> acker.completions  # per spout task: (roots complete, tags of failed tuples)
{0: ([28672], [])}
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterable
from typing import Any

from rayflow.api.components import Bolt
from rayflow.api.tuple import Batch, Tuple

ACKER = "__acker"
ACK_STREAM = "__ack"
ACK_FIELDS = ("root", "value", "spout")
FROM_BOLT = -1  # the ``spout`` value of an ack row sent by a bolt
FAILED = -2  # ... of a row of failed tuples' tags

TAG_BITS = 12
TAG_LIMIT = 1 << TAG_BITS  # spout tuples per root at most
ROOT_MASK = ((1 << 64) - 1) ^ (TAG_LIMIT - 1)  # a tag's root: the tag without its index


class AckerCore:
    """XOR per root; a root whose value returns to zero (with its spout known) is complete.

    Complete roots wait in ``completions``, per spout task, with the tags of their failed
    tuples: (roots, failed tags)."""

    def __init__(self) -> None:
        # root -> [value, spout task, first seen, failed tags or None]
        self.pending: dict[int, list[Any]] = {}
        self.completions: dict[int, tuple[list[int], list[int]]] = {}

    def update(self, root: int, value: int, spout: int) -> None:
        """One update: ``value`` XORs into ``root``'s; ``spout`` is the spout task's index (the
        sender knows it) or ``FROM_BOLT``; with ``FAILED``, ``root`` is a failed tuple's tag."""
        self.update_many((root,), (value,), spout)

    def update_many(self, roots: Iterable[int], values: Iterable[int], spout: int) -> None:
        """:meth:`update` for each root and value of an ack row (this loop is most of an
        acker's work)."""
        pending, now, complete = self.pending, time.monotonic(), self._complete
        if spout == FAILED:
            for tag in roots:
                root = tag & ROOT_MASK
                entry = pending.get(root)
                if entry is None:
                    entry = pending[root] = [0, FROM_BOLT, now, None]
                if entry[3] is None:
                    entry[3] = []
                entry[3].append(tag)
            return
        for root, value in zip(roots, values, strict=True):
            entry = pending.get(root)
            if entry is None:
                pending[root] = [value, spout, now, None]
                continue
            if spout >= 0:
                entry[1] = spout
            value ^= entry[0]
            entry[0] = value
            if value == 0 and entry[1] >= 0:
                complete(root, entry)

    def _complete(self, root: int, entry: list[Any]) -> None:
        del self.pending[root]
        done = self.completions.get(entry[1])
        if done is None:
            done = self.completions[entry[1]] = ([], [])
        done[0].append(root)
        if entry[3]:
            done[1].extend(entry[3])

    def expire(self, older_than: float) -> int:
        """Forget roots first seen before ``older_than`` (their spouts timed them out already)."""
        stale = [r for r, entry in self.pending.items() if entry[2] < older_than]
        for root in stale:
            del self.pending[root]
        return len(stale)


class AckerBolt(Bolt):
    """The system bolt behind ``__acker`` tasks; ``send_to_spout`` is bound by the runtime.

    Each input row is a packed group of updates: ``[roots, values, spout]`` (arrays of 64-bit
    ints and the ``spout`` they share). Completions go back to each spout task every
    ``FEEDBACK_MS`` at most: one message to a spout costs about as much as a thousand updates,
    so the acker gathers them rather than sending one per input batch."""

    outputs: list[str] = []
    FEEDBACK_MS = 5

    def prepare(self, context: Any) -> None:
        self.core = AckerCore()
        self.timeout = float(context.config.get("message.timeout", 30.0))
        self.feedback_due = False

    def process(self, tup: Tuple) -> None:  # only tick tuples come here
        if tup.is_tick:
            self.core.expire(time.monotonic() - 2 * self.timeout)

    def process_batch(self, batch: Batch) -> None:
        update_many = self.core.update_many
        for roots, values, spout in batch.values:
            update_many(roots, values, spout)
        if self.core.completions and not self.feedback_due:
            self.feedback_due = True
            due = self.current_processing_time() + self.FEEDBACK_MS
            self.register_timer(due, event_time=False)

    def on_timer(self, timer: Any) -> None:
        self.feedback_due = False
        for spout_task, (done, failed) in self.core.completions.items():
            # One message per spout task, packed: arrays pickle as their bytes.
            self.send_to_spout(spout_task, (array("Q", done), array("Q", failed)))  # type: ignore[attr-defined]
        self.core.completions = {}
