"""A spout that loses nothing: it keeps each message until its tree is acked, replays it when
it fails (or times out), and after ``max_retries`` sends it to a dead-letter stream, so one
poison message cannot stall the topology.

>>> class Numbers(ReliableSpout):
...     outputs = {"default": ["n"], "dead": ["msg_id", "values", "attempts"]}
...     dead_letter_stream = "dead"
...     def open(self, context):
...         self.left = list(range(3))
...     def next_message(self):
...         return (self.left[0], [self.left.pop(0)]) if self.left else None
...     def exhausted(self):
...         return not self.left
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from typing import Any, ClassVar

from rayflow.api.components import Spout

log = logging.getLogger("rayflow.spout")


class Replays:
    """What a reliable spout keeps: each message in flight by ``msg_id`` with how often it
    failed, and those due to be emitted again. ``max_retries=None`` replays forever.

    >>> book = Replays(max_retries=1)
    >>> book.track("m1", ["a"]); book.failed("m1") is None, list(book.due(10))
    (True, [('m1', ['a'])])
    >>> book.failed("m1")                     # the second failure: given up
    (['a'], 2)
    >>> book.track("m2", ["b"]); book.done("m2"), book.done("m2"), len(book)
    (True, False, 0)
    """

    def __init__(self, max_retries: int | None) -> None:
        self.max_retries = max_retries
        self.pending: dict[Any, list[Any]] = {}  # msg_id -> [payload, failures]
        self.replays: deque[Any] = deque()

    def track(self, msg_id: Any, payload: Any) -> None:
        self.pending[msg_id] = [payload, 0]

    def done(self, msg_id: Any) -> bool:
        """Its tree completed; False if it was not in flight."""
        return self.pending.pop(msg_id, None) is not None

    def failed(self, msg_id: Any) -> tuple[Any, int] | None:
        """Count a failure: None while it will be replayed (or was not in flight); once it has
        failed more than ``max_retries`` times, forget it and return ``(payload, failures)``."""
        entry = self.pending.get(msg_id)
        if entry is None:
            return None
        entry[1] += 1
        if self.max_retries is None or entry[1] <= self.max_retries:
            self.replays.append(msg_id)
            return None
        del self.pending[msg_id]
        return entry[0], entry[1]

    def due(self, limit: int) -> Iterator[tuple[Any, Any]]:
        """Up to ``limit`` ``(msg_id, payload)`` to emit again."""
        for _ in range(min(len(self.replays), limit)):
            msg_id = self.replays.popleft()
            entry = self.pending.get(msg_id)
            if entry is not None:
                yield msg_id, entry[0]

    def __contains__(self, msg_id: Any) -> bool:
        return msg_id in self.pending

    def __len__(self) -> int:
        return len(self.pending)


class ReliableSpout(Spout):
    """Subclass it and define ``next_message()`` (and ``exhausted()`` for a bounded source).

    Subclasses that override ``ack``/``fail``/``open`` call ``super()``'s as well.
    """

    max_retries: ClassVar[int] = 3
    """Replays of a failed message before it goes to the dead-letter stream."""
    dead_letter_stream: ClassVar[str | None] = None
    """Stream for messages that keep failing: ``[msg_id, values, attempts]``; None: log them."""

    def next_message(self) -> tuple[Any, list[Any]] | None:
        """The next ``(msg_id, values)``, or None when there is nothing right now."""
        raise NotImplementedError(f"{type(self).__name__} must define next_message()")

    def exhausted(self) -> bool:
        """True once ``next_message`` will never return anything again (bounded sources)."""
        return False

    @property
    def _book(self) -> Replays:
        book = self.__dict__.get("_rayflow_replays")  # made on first use: no __init__ to call
        if book is None:
            book = self.__dict__["_rayflow_replays"] = Replays(self.max_retries)
            self.dead_letters = 0
        return book

    def next_tuple(self) -> None:
        book = self._book
        for msg_id, values in book.due(1):
            self.emit(values, msg_id=msg_id)
            return
        message = self.next_message()
        if message is None:
            if not book and self.exhausted():
                self.finish()
            return
        msg_id, values = message
        book.track(msg_id, values)
        self.emit(values, msg_id=msg_id)

    def ack(self, msg_id: Any) -> None:
        self._book.done(msg_id)

    def fail(self, msg_id: Any) -> None:
        given_up = self._book.failed(msg_id)
        if given_up is None:
            return
        values, attempts = given_up
        self.dead_letters += 1
        if self.dead_letter_stream:
            self.emit([msg_id, values, attempts], stream=self.dead_letter_stream)
        else:
            log.warning(
                "message %r failed %d times; dropped (set dead_letter_stream to keep it)",
                msg_id,
                attempts,
            )
