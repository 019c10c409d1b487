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
from typing import Any, ClassVar

from rayflow.api.components import Spout

log = logging.getLogger("rayflow.spout")


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

    def _reliable_state(self) -> tuple[dict[Any, list[Any]], deque[Any]]:
        try:
            return self._pending_messages, self._replays
        except AttributeError:
            self._pending_messages: dict[Any, list[Any]] = {}  # msg_id -> [values, failures]
            self._replays: deque[Any] = deque()
            self.dead_letters = 0
            return self._pending_messages, self._replays

    def next_tuple(self) -> None:
        pending, replays = self._reliable_state()
        if replays:
            msg_id = replays.popleft()
            self.emit(pending[msg_id][0], msg_id=msg_id)
            return
        message = self.next_message()
        if message is None:
            if not pending and self.exhausted():
                self.finish()
            return
        msg_id, values = message
        pending[msg_id] = [values, 0]
        self.emit(values, msg_id=msg_id)

    def ack(self, msg_id: Any) -> None:
        pending, _ = self._reliable_state()
        pending.pop(msg_id, None)

    def fail(self, msg_id: Any) -> None:
        pending, replays = self._reliable_state()
        entry = pending.get(msg_id)
        if entry is None:
            return
        entry[1] += 1
        if entry[1] <= self.max_retries:
            replays.append(msg_id)
            return
        del pending[msg_id]
        self.dead_letters += 1
        if self.dead_letter_stream:
            self.emit([msg_id, entry[0], entry[1]], stream=self.dead_letter_stream)
        else:
            log.warning(
                "message %r failed %d times; dropped (set dead_letter_stream to keep it)",
                msg_id,
                entry[1],
            )
