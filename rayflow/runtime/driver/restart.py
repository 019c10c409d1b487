"""A job's restart strategy: how long to wait after a task fails, and when to give up.

A failure of any task of the job counts. ``exponential-delay`` (the default) waits
``restart.delay * restart.backoff**n``, at most ``restart.max-delay``, for the n-th failure
(from 0) since the last reset; a failure ``restart.reset-after`` or more after the previous one
resets n, and failure ``task.restarts + 1`` without such a pause fails the job. ``fixed-delay``
waits ``restart.delay`` each time, counted the same way. ``failure-rate`` waits ``restart.delay``
and fails the job on more than ``restart.failure-rate.max`` failures within any
``restart.failure-rate.interval``. ``none`` fails it on the first failure.

>>> from rayflow.spec.settings import Settings
>>> config = {"task.restarts": 2, "restart.reset-after": "1m"}
>>> strategy = RestartStrategy.from_settings(Settings.from_config(config, environ={})[0])
>>> strategy.on_failure(0.0), strategy.on_failure(1.0), strategy.on_failure(100.0)
(1.0, 2.0, 1.0)
>>> strategy.on_failure(101.0)
2.0
>>> strategy.on_failure(102.0)
Traceback (most recent call last):
...
rayflow.runtime.driver.restart.RestartsExhausted: 3 failures with no 1min without one \
(task.restarts: 2)
>>> strategy.describe(103.0)["failures"], strategy.describe(103.0)["next_delay"]
(3, None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rayflow.errors import RayflowError
from rayflow.spec.settings import RESTART_STRATEGIES

if TYPE_CHECKING:
    from rayflow.spec.settings import Settings


class RestartsExhausted(RayflowError, RuntimeError):
    """The restart strategy gives up: the job fails. The message names the limit that was hit."""


def _span(seconds: float) -> str:
    """``600`` -> ``10min``, ``90`` -> ``90s``, ``0.25`` -> ``0.25s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass
class RestartStrategy:
    """One job's strategy and its state; times are whatever clock the caller passes as ``now``."""

    strategy: str = "exponential-delay"
    delay: float = 1.0
    max_delay: float = 60.0
    backoff: float = 2.0
    reset_after: float = 600.0
    max_failures: int = 10  # task.restarts
    rate_max: int = 10
    rate_interval: float = 300.0
    _times: list[float] = field(default_factory=list, init=False, repr=False)
    _last: float | None = field(default=None, init=False, repr=False)
    _reason: str = field(default="no failure yet", init=False, repr=False)
    _failed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.strategy not in RESTART_STRATEGIES:
            choices = ", ".join(RESTART_STRATEGIES)
            raise ValueError(f"restart.strategy: expected one of {choices}, got {self.strategy!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> RestartStrategy:
        """The strategy the ``restart.*`` and ``task.restarts`` knobs describe, no failure yet."""
        return cls(
            strategy=settings.restart_strategy,
            delay=settings.restart_delay,
            max_delay=settings.restart_max_delay,
            backoff=settings.restart_backoff,
            reset_after=settings.restart_reset_after,
            max_failures=settings.task_restarts,
            rate_max=settings.restart_failure_rate_max,
            rate_interval=settings.restart_failure_rate_interval,
        )

    def _counted(self, now: float) -> list[float]:
        """The failures that still count at ``now`` (in the window, or since the last reset)."""
        if self.strategy == "failure-rate":
            return [t for t in self._times if now - t < self.rate_interval]
        if self._last is not None and now - self._last >= self.reset_after:
            return []
        return self._times

    def _decide(self, count: int) -> tuple[float | None, str]:
        """The delay before restarting after one more failure than ``count`` (None: give up)."""
        total = count + 1
        if self.strategy == "none":
            return None, "restart.strategy: none"
        if self.strategy == "failure-rate":
            why = f"{total} failures within {_span(self.rate_interval)}"
            why += f" (restart.failure-rate.max: {self.rate_max})"
            return (None if total > self.rate_max else self.delay), why
        if count >= self.max_failures:
            why = f"{total} failures with no {_span(self.reset_after)} without one"
            return None, f"{why} (task.restarts: {self.max_failures})"
        delay = self.delay
        if self.strategy == "exponential-delay":
            try:
                delay = min(self.delay * self.backoff**count, self.max_delay)
            except OverflowError:
                delay = self.max_delay
        why = f"failure {total} with no {_span(self.reset_after)} without one"
        return delay, f"{why} (task.restarts: {self.max_failures})"

    def on_failure(self, now: float) -> float:
        """Record a failure at ``now``; the seconds to wait before restarting.

        Raises :class:`RestartsExhausted` when the job must fail (and again on later calls).
        """
        if self._failed:
            raise RestartsExhausted(self._reason)
        self._times = self._counted(now)
        delay, why = self._decide(len(self._times))
        self._times.append(now)
        self._last = now
        if delay is None:
            self._failed = True
            self._reason = why
            raise RestartsExhausted(why)
        self._reason = f"{why}: restart in {_span(delay)}"
        return delay

    def describe(self, now: float) -> dict[str, Any]:
        """For status, REST and the UI: the strategy, the failures that count, the delay the
        next failure would get (None: it would fail the job), the last failure and why."""
        count = len(self._counted(now))
        return {
            "strategy": self.strategy,
            "failures": count,
            "next_delay": None if self._failed else self._decide(count)[0],
            "last_failure": self._last,
            "reason": self._reason,
        }
