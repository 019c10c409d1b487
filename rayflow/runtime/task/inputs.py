"""A task's inputs: one :class:`InputChannel` per upstream task, and the inbox where their
messages wait, in each channel's sequence order, for the task's loop.

A message of an older generation of its sender (a restarted task's predecessor) is dropped; one
of a newer generation restarts the channel at sequence 0. Each queued message holds its sender's
credit until the loop dequeues it (or the task gives everything back: :meth:`Inputs.release`).

>>> import asyncio
>>> from rayflow.runtime.io.messages import DATA
>>> async def demo():
...     inputs = Inputs("count[0]", [("split", 0)], generation=0, wake=lambda: None)
...     inputs.loop = asyncio.get_running_loop()
...     first = inputs.deliver(("split", 0), 0, 1, DATA, "default", [["b"]], None)
...     inputs.deliver(("split", 0), 0, 0, DATA, "default", [["a"]], None)
...     stale = inputs.deliver(("split", 0), -1, 2, DATA, "default", [["old"]], None)
...     return [m.rows for m in inputs.inbox], first.done(), stale
>>> asyncio.run(demo())
([[['a']], [['b']]], False, None)
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from rayflow.api.tuple import TupleSource
from rayflow.errors import TopologyError
from rayflow.runtime.io.channels import InputChannel
from rayflow.runtime.io.messages import Message, TaskKey

log = logging.getLogger("rayflow.task")


class Inputs:
    """The input channels, the inbox, and the counters of what arrived."""

    def __init__(
        self, name: str, upstream: Iterable[TaskKey], generation: int, wake: Callable[[], None]
    ) -> None:
        self.name = name  # the task's, for errors and logs
        self.channels: dict[TaskKey, InputChannel] = {
            key: InputChannel(key, generation) for key in upstream
        }
        self.open = len(self.channels)  # channels that have not ended
        self.inbox: deque[Message] = deque()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake = wake  # the task's loop may sleep: a delivery wakes it
        self.duplicates = 0
        self.peak = 0

    def deliver(
        self,
        source: TaskKey,
        generation: int,
        seq: int,
        kind: int,
        stream: str,
        rows: Any,
        meta: Any,
    ) -> asyncio.Future | None:
        """Accept one message; returns a future done when the loop dequeues it (the credit).

        Returns None for a duplicate or a message of an old generation (its credit is free at
        once)."""
        channel = self.channels.get(source)
        if channel is None:
            raise TopologyError(f"task {self.name} has no input channel from {source}")
        if generation != channel.generation:
            if generation < channel.generation:
                return None  # from a generation of the sender that was replaced
            self._restart(channel, generation)
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        credit = loop.create_future()
        inbox = self.inbox
        if not channel.accept(
            seq, Message(channel, kind, stream, rows, meta, credit), inbox.append
        ):
            self.duplicates += 1
            return None
        if len(inbox) > self.peak:
            self.peak = len(inbox)
        self.wake()
        return credit

    def _restart(self, channel: InputChannel, generation: int) -> None:
        """The upstream task was restarted: its channel starts again at sequence 0."""
        log.warning(
            "task %s: input from %s[%s] restarted (generation %d)",
            self.name,
            channel.component,
            channel.task,
            generation,
        )
        for message in channel.held.values():
            message.give_credit_back()
        channel.held.clear()
        channel.next_seq = 0
        channel.generation = generation
        if channel.ended:
            channel.ended = False
            self.open += 1

    def end(self, channel: InputChannel) -> None:
        """``channel`` delivered its end-of-stream."""
        channel.ended = True
        self.open -= 1

    def source(self, channel: InputChannel, stream: str, fields: tuple[str, ...]) -> TupleSource:
        """The :class:`TupleSource` of ``stream`` from ``channel`` (made once, then cached)."""
        source = channel.sources[stream] = TupleSource(
            stream, channel.component, channel.task, fields
        )
        return source

    def release(self, also: Iterable[Message] = ()) -> None:
        """Give back the credits of everything queued (and of ``also``: messages held elsewhere)
        so no sender is left waiting."""
        for message in also:
            message.give_credit_back()
        for message in self.inbox:
            message.give_credit_back()
        self.inbox.clear()
        for channel in self.channels.values():
            for message in channel.held.values():
                message.give_credit_back()
            channel.held.clear()

    def reset(self, generation: int) -> None:
        """Every channel back to sequence 0 of ``generation`` (a task reset in place)."""
        for channel in self.channels.values():
            channel.generation, channel.next_seq, channel.ended = generation, 0, False
        self.open = len(self.channels)
