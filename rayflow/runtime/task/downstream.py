"""A task's outputs: one :class:`OutputChannel` per downstream task, how many wait for a credit
(the loop takes no new input while any does: backpressure), and the first error in sending.

Under supervision (a Ray deployment) a lost receiver is not an error: its channel drops what goes
to it until the restarted task is connected (:meth:`Downstream.reconnect`); under at-least-once
the lost tuples time out and replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from rayflow.errors import TaskError
from rayflow.runtime.io.channels import OutputChannel
from rayflow.runtime.io.messages import END, WATERMARK, TaskKey, Transmit
from rayflow.runtime.task.eventtime import MAX_TIME

log = logging.getLogger("rayflow.task")


class Downstream:
    """The output channels of task ``key``; ``wake`` wakes its loop (a credit came back)."""

    def __init__(
        self,
        key: TaskKey,
        targets: Iterable[TaskKey],
        credits: int,
        connect: Callable[[TaskKey], Transmit],
        wake: Callable[[], None],
        supervised: bool,
    ) -> None:
        self.key = key
        self.name = f"{key[0]}[{key[1]}]"
        self.wake = wake
        self.blocked = 0  # channels waiting for a credit
        self.fatal: BaseException | None = None
        self.fatal_target = ""
        self.channels: dict[TaskKey, OutputChannel] = {
            target: OutputChannel(
                target,
                credits,
                connect(target),
                on_writable=self._on_writable,
                on_error=self._on_error,
                on_blocked=self._on_blocked,
                on_broken=self._on_broken if supervised else None,
            )
            for target in targets
        }

    def _on_blocked(self, _channel: OutputChannel) -> None:
        self.blocked += 1

    def _on_writable(self, _channel: OutputChannel) -> None:
        self.blocked -= 1
        if not self.blocked:
            self.wake()

    def _on_error(self, channel: OutputChannel, error: BaseException) -> None:
        if self.fatal is None:
            self.fatal = error
            self.fatal_target = f"{channel.key[0]}[{channel.key[1]}]"
        self.wake()

    def _on_broken(self, channel: OutputChannel, error: BaseException) -> None:
        """A downstream task died: drop what goes to it until its replacement is connected."""
        log.warning(
            "task %s: lost %s[%s] (%s); waiting for its restart",
            self.name,
            channel.key[0],
            channel.key[1],
            error,
        )
        self.wake()

    def check(self) -> None:
        """Raise the first sending error as the task's failure."""
        if self.fatal is not None:
            raise TaskError(
                self.key[0], self.key[1], f"sending to {self.fatal_target} failed: {self.fatal}"
            )

    @property
    def idle(self) -> bool:
        """Everything sent was dequeued (or dropped, its receiver gone)."""
        return all(channel.idle for channel in self.channels.values())

    def reconnect(self, target: TaskKey, transmit: Transmit, ended: bool) -> None:
        """Send to the restarted ``target`` from now on. A task that has ``ended`` already tells
        the new one so at once, or it would wait for this input forever."""
        channel = self.channels[target]
        channel.reconnect(transmit)
        if ended:
            channel.send(WATERMARK, "", MAX_TIME, None)
            channel.send(END, "", None, None)
        self.wake()

    def reset(self) -> None:
        """Nothing waits for a credit any more (a task reset in place)."""
        for channel in self.channels.values():
            channel.pending.clear()
        self.blocked = 0
