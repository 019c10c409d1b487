"""Barrier alignment (exactly-once), Flink's aligned checkpoints.

A task with several inputs *aligns* barrier N: an input that delivered it is held (its messages
wait here, keeping their credits, so only that channel's sender stalls) until every open input
has delivered it; then the task snapshots, forwards barrier N, and the held messages go back to
the front of the inbox. A newer barrier overtaking one still aligning means that checkpoint was
aborted: alignment gives it up.

>>> from collections import deque
>>> from rayflow.runtime.io.channels import InputChannel
>>> inbox, a, b = deque(), InputChannel(("a", 0)), InputChannel(("b", 0))
>>> aligned = []
>>> aligner = Aligner({a.key: a, b.key: b}, inbox, lambda *n: aligned.append(n[:2]), print)
>>> aligner.on_barrier(a, (1, "/chk-1")); a.key in aligner.holding, aligned
(True, [])
>>> aligner.on_barrier(b, (1, "/chk-1")); aligned, aligner.last_barrier
([(1, '/chk-1')], 1)

A late barrier of an aborted checkpoint does not count for the one being aligned:

>>> aligner.on_barrier(a, (3, "/chk-3")); aligner.on_barrier(b, (2, "/chk-2")); aligned[1:]
[]
>>> aligner.on_barrier(b, (3, "/chk-3")); aligned[1:]
[(3, '/chk-3')]

Nor does one whose abort came first (the coordinator tells every task at once, so a task can
learn of it before the barrier reaches it): holding an input for it would stall the stream.

>>> aligner.abort(4); aligner.on_barrier(a, (4, "/chk-4")); aligner.holding
False
{}
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rayflow.runtime.io.channels import InputChannel
from rayflow.runtime.io.messages import Message, TaskKey


class Aligner:
    """The checkpoint being aligned, the inputs held for it, and the last barrier taken.

    ``on_aligned(checkpoint_id, where, align_seconds)`` is called once barrier N came on every
    open input; ``on_abandoned(checkpoint_id)`` when an alignment is given up.
    """

    def __init__(
        self,
        channels: dict[TaskKey, InputChannel],
        inbox: deque[Message],
        on_aligned: Callable[[int, str, float], None],
        on_abandoned: Callable[[int], None],
    ) -> None:
        self.channels = channels
        self.inbox = inbox
        self.on_aligned = on_aligned
        self.on_abandoned = on_abandoned
        self.aligning: int | None = None
        self.where = ""
        self.started = 0.0
        self.barriers_from: set[TaskKey] = set()
        # Inputs held for alignment -> their messages. The same dict for the task's whole life
        # (cleared, never replaced): the loop keeps a local reference to it.
        self.holding: dict[TaskKey, deque[Message]] = {}
        self.last_barrier = 0

    def spout_barrier(self, checkpoint_id: int) -> bool:
        """A spout told to take checkpoint N: True when it should (N is new)."""
        if checkpoint_id <= self.last_barrier:
            return False
        self.last_barrier = checkpoint_id
        return True

    def on_barrier(self, channel: InputChannel, payload: tuple[int, str]) -> None:
        checkpoint_id, where = payload
        if checkpoint_id <= self.last_barrier:
            return  # of a checkpoint this task already took (or gave up)
        if self.aligning is not None and checkpoint_id > self.aligning:
            self.give_up()  # a newer barrier overtakes one still aligning: that one was aborted
        elif self.aligning is not None and checkpoint_id < self.aligning:
            return  # of an aborted checkpoint, late on a slow input: it says nothing about this one
        if self.aligning is None:
            self.aligning, self.where = checkpoint_id, where
            self.started = time.perf_counter()
            self.barriers_from = set()
        self.barriers_from.add(channel.key)
        self.holding.setdefault(channel.key, deque())
        self.check()

    def check(self) -> None:
        """Every open input delivered the barrier being aligned: the snapshot, then the held
        messages go back to the inbox. (Also after an input ended: it no longer counts.)"""
        if self.aligning is None:
            return
        for key, channel in self.channels.items():
            if not channel.ended and key not in self.barriers_from:
                return
        checkpoint_id, where = self.aligning, self.where
        self.last_barrier = checkpoint_id
        self.aligning = None
        self.on_aligned(checkpoint_id, where, time.perf_counter() - self.started)
        self._release_held()

    def waiting_for(self) -> dict[str, Any] | None:
        """The checkpoint being aligned and the inputs whose barrier has not come (None: not
        aligning), for the stats and the no-progress warning."""
        aligning = self.aligning
        if aligning is None:
            return None
        missing = [
            f"{key[0]}[{key[1]}] (generation {channel.generation}, next seq {channel.next_seq},"
            f" {len(channel.held)} out of order)"
            for key, channel in list(self.channels.items())
            if not channel.ended and key not in self.barriers_from
        ]
        return {"checkpoint": aligning, "missing": missing}

    def hold(self, message: Message) -> bool:
        """Keep ``message`` back if its input is held (aligning); its credit stays taken."""
        held = self.holding.get(message.channel.key)
        if held is None:
            return False
        held.append(message)
        return True

    def abort(self, checkpoint_id: int) -> bool:
        """The coordinator gave checkpoint N up: stop holding inputs for it (True if it did)."""
        if self.aligning is not None and self.aligning <= checkpoint_id:
            self.give_up()
            return True
        # Its barrier may still be on its way here: when it comes, it counts for nothing.
        self.last_barrier = max(self.last_barrier, checkpoint_id)
        return False

    def give_up(self) -> None:
        if self.aligning is not None:
            self.on_abandoned(self.aligning)
            self.last_barrier = max(self.last_barrier, self.aligning)
        self.aligning = None
        self._release_held()

    def _release_held(self) -> None:
        """The held messages go back to the front of the inbox, in their channels' order."""
        held = [message for messages in self.holding.values() for message in messages]
        self.holding.clear()
        self.inbox.extendleft(reversed(held))

    def take_held(self) -> list[Message]:
        """Everything held, handed over (the task is releasing its inputs)."""
        held = [message for messages in self.holding.values() for message in messages]
        self.holding.clear()
        return held

    def reset(self) -> None:
        """Back to no checkpoint at all (a task reset in place; held messages were released)."""
        self.aligning = None
        self.barriers_from = set()
        self.holding.clear()
        self.last_barrier = 0
