"""Recovery for the task core: a restarted neighbour (new channel generation), a lost receiver,
stopping mid-drain, and commands that arrive after the end. A mixin of
:class:`rayflow.runtime.task.TaskCore`.
"""

from __future__ import annotations

import logging

from rayflow.runtime.channels import END, WATERMARK, InputChannel, OutputChannel, Transmit
from rayflow.runtime.eventtime import MAX_TIME

log = logging.getLogger("rayflow.task")

TaskKey = tuple[str, int]


class RecoveryMixin:
    """Channel generations, broken outputs, released inputs, late commands."""

    def _reset_input(self, channel: InputChannel, epoch: int) -> None:
        """The upstream task was restarted: its channel starts again at sequence 0."""
        log.warning(
            "task %s: input from %s[%s] restarted (generation %d)",
            self.name,
            channel.component,
            channel.task,
            epoch,
        )
        for item in channel.held.values():
            if not item[-1].done():
                item[-1].set_result(None)
        channel.held.clear()
        channel.next_seq = 0
        channel.epoch = epoch
        if channel.ended:
            channel.ended = False
            self.open_inputs += 1

    def _on_output_broken(self, channel: OutputChannel, error: BaseException) -> None:
        """A downstream task died: drop what goes to it until its replacement is connected (the
        deployment restarts it; under at-least-once the lost tuples time out and replay)."""
        log.warning(
            "task %s: lost %s[%s] (%s); waiting for its restart",
            self.name,
            channel.key[0],
            channel.key[1],
            error,
        )
        self._wake_loop()

    def reconnect_output(self, target: TaskKey, transmit: Transmit) -> None:
        """Send to the restarted ``target`` from now on (call on the loop's thread). A task that
        has ended already tells the new one so at once, or it would wait for this input forever."""
        channel = self.outputs[target]
        channel.reconnect(transmit)
        if self.end_sent:
            channel.send(WATERMARK, "", MAX_TIME, None)
            channel.send(END, "", None, None)
        self._wake_loop()

    def _release_inputs(self) -> None:
        """Give back the credits of everything still queued, so senders are not left waiting."""
        for batches in self.holding.values():  # held for a checkpoint's alignment
            self.inbox.extend(batches)
        self.holding = {}
        for item in self.inbox:
            if not item[-1].done():
                item[-1].set_result(None)
        self.inbox.clear()
        for channel in self.inputs.values():
            for item in channel.held.values():
                if not item[-1].done():
                    item[-1].set_result(None)
            channel.held.clear()

    def _answer_pending_control(self) -> None:
        while self.control:
            _name, _arg, done = self.control.popleft()
            if done is not None and not done.done():
                done.set_result("finished")

    # ------------------------------------------------------------ user errors
