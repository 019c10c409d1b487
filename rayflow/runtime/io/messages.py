"""What travels on a channel and waits in a task's inbox: the message kinds, :data:`TaskKey`, the
queued :class:`Message`, and the host's *transmit* function.

A message is (sequence number, kind, stream, rows, meta) on the wire; once it is the receiver's
turn (in sequence order) it waits in the inbox as a :class:`Message`, with the future whose
completion gives the sender its credit back.

>>> msg = Message(None, DATA, "default", [["a"]], None, None)
>>> KIND_NAMES[msg.kind], msg.rows
('data', [['a']])
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NamedTuple

DATA, END, BARRIER, WATERMARK = 0, 1, 2, 3
FEEDBACK = 4  # an acker's completed trees for a spout task: not a channel's, never in an inbox
KIND_NAMES = {
    DATA: "data",
    END: "end-of-stream",
    BARRIER: "barrier",
    WATERMARK: "watermark",
    FEEDBACK: "feedback",
}

TaskKey = tuple[str, int]
"""A task: (component id, task index)."""

OnDone = Callable[[BaseException | None], None]
Transmit = Callable[..., None]
"""The host's part of a channel: ``transmit(seq, kind, stream, rows, meta, *, on_done)`` delivers
one message and calls ``on_done(error)`` once the receiver has dequeued it (or could not)."""


class Message(NamedTuple):
    """One message in a task's inbox (a tuple underneath: cheap to make and to unpack).

    ``rows`` is a batch of rows (data), a watermark, a barrier's ``(checkpoint, folder)`` or
    nothing (end-of-stream); ``meta`` carries a batch's acking runs and edges; ``credit`` is
    done when the task dequeues the message, which returns the sender's credit.
    """

    channel: Any  # the InputChannel it came on
    kind: int
    stream: str
    rows: Any
    meta: Any
    credit: asyncio.Future | None

    def give_credit_back(self) -> None:
        credit = self.credit
        if credit is not None and not credit.done():
            credit.set_result(None)
