"""Channels: one upstream task -> one downstream task, numbered, credit-based.

Ray does not order calls into an async actor, and a large batch may overtake a small one, so every
message on a channel carries a sequence number (data, end-of-stream, barriers and watermarks share
it). The receiver's :class:`InputChannel` holds early messages until the gap closes and drops
duplicates; the sender's :class:`OutputChannel` has ``credits`` batches in flight at most, and a
credit comes back when the receiver *dequeues* the batch, not when it arrives.

A *transmit* function is the host's part: it delivers one message and calls ``on_done(error)``
once the receiver has dequeued it (or it could not be delivered).

>>> from rayflow.runtime.io.messages import DATA
>>> sent = []
>>> out = OutputChannel(("sink", 0), 2, lambda *msg, on_done: sent.append((msg, on_done)))
>>> for i in range(3):
...     out.send(DATA, "default", [[i]], None)
>>> len(sent), len(out.pending), out.writable
(2, 1, False)
>>> sent[0][1](None)  # the receiver dequeued message 0: one credit back, message 2 goes out
>>> len(sent), out.writable
(3, True)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Any

from rayflow.runtime.io.messages import OnDone, Transmit


class OutputChannel:
    """The sending end: sequence numbers, credits, and what waits for a credit."""

    __slots__ = (
        "_on_done",
        "_on_error",
        "broken",
        "capacity",
        "connection",
        "credits",
        "dropped",
        "error",
        "inflight",
        "key",
        "on_blocked",
        "on_broken",
        "on_writable",
        "pending",
        "round_trip_seconds",
        "sent_at",
        "sent_batches",
        "seq",
        "transmit",
    )

    def __init__(
        self,
        key: tuple[str, int],
        credits: int,
        transmit: Transmit,
        on_writable: Callable[[OutputChannel], None] | None = None,
        on_error: Callable[[OutputChannel, BaseException], None] | None = None,
        on_blocked: Callable[[OutputChannel], None] | None = None,
        on_broken: Callable[[OutputChannel, BaseException], None] | None = None,
    ) -> None:
        self.key = key
        self.capacity = credits
        self.credits = credits
        self.transmit = transmit
        self.seq = 0
        self.inflight = 0
        self.sent_batches = 0
        self.sent_at: deque[float] = deque()
        self.round_trip_seconds = 0.0  # summed: transmit -> the receiver dequeued it
        self.pending: deque[tuple[int, str, Any, Any]] = deque()
        self.on_writable = on_writable
        self.on_blocked = on_blocked
        self.error: BaseException | None = None
        self._on_error = on_error
        self.on_broken = on_broken  # None: a lost receiver is an error (on_error)
        self.broken = False  # the receiver is gone; batches are dropped until reconnect()
        self.dropped = 0
        self.connection = 0  # counts reconnects: answers of an older connection are ignored
        self._on_done = self._returned_for(0)

    @property
    def writable(self) -> bool:
        """True when nothing waits for a credit."""
        return not self.pending

    def send(self, kind: int, stream: str, rows: Any, meta: Any) -> None:
        """Send now if a credit is free, else queue; never blocks."""
        if self.broken:
            self.dropped += 1  # at-least-once replays them; the receiver is being restarted
            return
        if self.credits > 0 and not self.pending:
            self._transmit(kind, stream, rows, meta)
            return
        if not self.pending and self.on_blocked is not None:
            self.on_blocked(self)
        self.pending.append((kind, stream, rows, meta))

    def _transmit(self, kind: int, stream: str, rows: Any, meta: Any) -> None:
        seq = self.seq
        try:
            self.transmit(seq, kind, stream, rows, meta, on_done=self._on_done)
        except Exception as exc:
            # Nothing was sent (a row that cannot be pickled, say) and no sequence number used:
            # the channel stays consistent, and the task fails loudly instead of the receiver
            # waiting forever for the missing number.
            self.error = self.error or exc
            if self._on_error is not None:
                self._on_error(self, exc)
            return
        self.credits -= 1
        self.inflight += 1
        self.seq = seq + 1
        self.sent_batches += 1
        self.sent_at.append(monotonic())

    def _returned_for(self, connection: int) -> OnDone:
        def on_done(error: BaseException | None) -> None:
            if connection == self.connection:  # not a late answer from a replaced connection
                self._returned(error)

        return on_done

    def _returned(self, error: BaseException | None) -> None:
        self.round_trip_seconds += monotonic() - self.sent_at.popleft()
        self.credits += 1
        self.inflight -= 1
        if error is not None and self.on_broken is not None:
            if not self.broken:
                self.broken = True
                had_pending = bool(self.pending)
                self.dropped += len(self.pending)
                self.pending.clear()
                if had_pending and self.on_writable is not None:
                    self.on_writable(self)
                self.on_broken(self, error)
            return
        if error is not None and self.error is None:
            self.error = error
            if self._on_error is not None:
                self._on_error(self, error)
        if self.pending:
            while self.pending and self.credits > 0:
                self._transmit(*self.pending.popleft())
            if not self.pending and self.on_writable is not None:
                self.on_writable(self)

    def reconnect(self, transmit: Transmit) -> None:
        """A new receiver replaced a lost one: a fresh connection from sequence 0."""
        self.connection += 1
        self._on_done = self._returned_for(self.connection)
        self.transmit = transmit
        self.seq = 0
        self.credits = self.capacity
        self.inflight = 0
        self.sent_at.clear()
        self.broken = False
        self.error = None

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in flight: everything sent was dequeued (or, with the
        receiver gone, dropped)."""
        return self.broken or (not self.pending and self.inflight == 0)


class InputChannel:
    """The receiving end: releases messages in sequence order and drops duplicates."""

    __slots__ = ("component", "ended", "generation", "held", "key", "next_seq", "sources", "task")

    def __init__(self, key: tuple[str, int], generation: int = 0) -> None:
        self.key = key
        self.generation = generation  # the sender's restart generation; older messages drop
        self.component, self.task = key
        self.next_seq = 0
        self.held: dict[int, Any] = {}
        self.ended = False
        self.sources: dict[str, Any] = {}  # stream -> TupleSource, filled by the task

    def accept(self, seq: int, item: Any, release: Callable[[Any], None]) -> bool:
        """Take message ``seq``; call ``release`` for each message now in order.

        Returns False for a duplicate (already released or already held).

        >>> ch, out = InputChannel(("split", 0)), []
        >>> ch.accept(1, "b", out.append), out
        (True, [])
        >>> ch.accept(0, "a", out.append), out
        (True, ['a', 'b'])
        >>> ch.accept(1, "b", out.append)
        False
        """
        if seq < self.next_seq or seq in self.held:
            return False
        if seq != self.next_seq:
            self.held[seq] = item
            return True
        release(item)
        seq += 1
        held = self.held
        while seq in held:
            release(held.pop(seq))
            seq += 1
        self.next_seq = seq
        return True
