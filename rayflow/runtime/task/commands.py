"""A task's commands: queued by the host (:meth:`Commands.submit`), run one at a time by the
task's loop between messages, each answered with the task's state. :data:`TABLE` says what each
does; the lifecycle diagram is in :mod:`rayflow.runtime.task.core`.

``stop`` and ``reset`` make the loop return wherever it is (``leaving``): ``run`` then ends the
task, or applies the reset and enters the loop again.

>>> sorted(TABLE)  # and "reset"
['abort_checkpoint', 'activate', 'checkpoint', 'checkpoint_complete', 'deactivate', \
'final_where', 'finish', 'resume', 'stop']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rayflow.runtime.task.core import TaskCore


class PendingReset:
    """A ``reset`` waiting for the loop to return to ``run``: to ``plan`` (or the start) with
    channels of ``generation``; ``done`` is answered once it is applied."""

    __slots__ = ("done", "generation", "plan", "states")

    def __init__(self, generation: int, plan: Any, states: Any, done: Any) -> None:
        self.generation, self.plan, self.states, self.done = generation, plan, states, done


class Commands:
    """The queue of commands, and whether the loop must leave (a stop, or a reset)."""

    def __init__(self, task: TaskCore) -> None:
        self.task = task
        self.queue: deque[tuple[str, Any, Any]] = deque()
        self.stopping = False
        self.reset: PendingReset | None = None
        self.leaving = False  # stopping or a reset waits: the loop returns to run()

    def submit(self, name: str, arg: Any = None, done: Any = None) -> None:
        """Queue a command (call on the loop's thread). ``done`` gets the result."""
        task = self.task
        if task.state in ("finished", "failed"):  # no loop to answer it any more
            if done is not None:
                done.set_result(task.state)
            return
        self.queue.append((name, arg, done))
        task.wake()

    def handle(self) -> None:
        """Run the queued commands; a ``reset`` stops there (the rest wait for after it)."""
        queue, task = self.queue, self.task
        while queue and self.reset is None:
            name, arg, done = queue.popleft()
            if name == "reset":
                self.reset = PendingReset(*arg, done)
                self.leaving = True
                return
            command = TABLE.get(name)
            try:
                if command is None:
                    raise ValueError(f"unknown command {name!r}")
                command(task, arg)
            except Exception as exc:
                if done is not None:
                    done.set_exception(exc)
            else:
                if done is not None:
                    done.set_result(task.state)

    def take_reset(self) -> PendingReset | None:
        """The reset to apply now, if one waits; the loop may run again after it."""
        reset, self.reset = self.reset, None
        self.leaving = self.stopping
        return reset

    def answer_pending(self) -> None:
        """The task ended: every queued command is answered ``finished``."""
        while self.queue:
            _name, _arg, done = self.queue.popleft()
            if done is not None and not done.done():
                done.set_result("finished")


def _stop(task: TaskCore, _arg: Any) -> None:
    task.commands.stopping = task.commands.leaving = True


TABLE: dict[str, Callable[[TaskCore, Any], None]] = {
    "finish": lambda task, _arg: task.finish(),
    "stop": _stop,
    "checkpoint": lambda task, arg: task.checkpoint(*arg) if task.is_spout else None,
    "checkpoint_complete": lambda task, checkpoint_id: task.snapshots.complete(checkpoint_id),
    "abort_checkpoint": lambda task, checkpoint_id: task.abort_checkpoint(checkpoint_id),
    "resume": lambda task, _arg: task.resume(),
    "final_where": lambda task, where: task.snapshots.expect_final(where),
    "activate": lambda task, _arg: task.set_active(True),
    "deactivate": lambda task, _arg: task.set_active(False),
}
"""The commands by name (``reset`` is the loop's own: see the module docstring)."""
