"""The exceptions rayflow raises.

Every error is a :class:`RayflowError`; each subclass also inherits the builtin that fits, so
``except ValueError`` still catches a bad topology.

>>> issubclass(TopologyError, ValueError)
True
"""

from __future__ import annotations


class RayflowError(Exception):
    """Base class of every error rayflow raises."""


class TopologyError(RayflowError, ValueError):
    """A topology (YAML or Python) is not valid; the message names where and what was expected."""


class ConfigError(TopologyError):
    """A configuration value has the wrong type or range."""


class TaskError(RayflowError, RuntimeError):
    """A task could not start or its loop failed; carries the user's traceback as text.

    >>> print(TaskError("count", 1, "ValueError: boom", "Traceback ..."))
    task count[1] failed: ValueError: boom
    Traceback ...
    """

    def __init__(self, component: str, task: int, message: str, traceback_text: str = "") -> None:
        self.component = component
        self.task = task
        self.message = message
        self.traceback_text = traceback_text
        text = f"task {component}[{task}] failed: {message}"
        if traceback_text:
            text += "\n" + traceback_text
        super().__init__(text)

    def __reduce__(self):  # keep the fields when the error crosses a process boundary
        return (TaskError, (self.component, self.task, self.message, self.traceback_text))


class ClusterError(RayflowError, RuntimeError):
    """Ray could not be started or reached, or could not place a task."""


class UsageError(RayflowError, ValueError):
    """A wrong command-line argument (or launcher option): the message says which."""
