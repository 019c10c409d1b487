"""Counters that outlive a task's actor: what a replaced actor had counted is carried over to
its successor, so a task's counters in ``RunResult``, ``rayflow status`` and the REST API cover
all its actors, not only the last one (the driver side of a deployment).

A dead actor cannot be asked for its figures: what it counted after the last look at its stats
is lost (the embedded launcher and the job master look every second).

>>> carried = CarriedCounters()
>>> carried.observe([{"component": "split", "task": 0, "counters": {"emitted": 40}}])
>>> carried.retire(("split", 0))  # the actor died; a new one starts from zero
>>> carried.add_to({"component": "split", "task": 0, "counters": {"emitted": 5}})["counters"]
{'emitted': 45}
>>> carried.stand_in(("split", 0))["counters"]  # the new actor has not answered yet
{'emitted': 40}
"""

from __future__ import annotations

from typing import Any

from rayflow.runtime.io.messages import TaskKey


class CarriedCounters:
    """The counters of each task's replaced actors, summed (see module docstring)."""

    def __init__(self) -> None:
        self.latest: dict[TaskKey, dict[str, Any]] = {}  # the live actor's stats, last seen
        self.retired: dict[TaskKey, dict[str, Any]] = {}  # the replaced actor's, last seen
        self.carried: dict[TaskKey, dict[str, float]] = {}  # its predecessors' counters, summed

    def observe(self, stats: list[dict[str, Any]]) -> None:
        """Remember the live actors' counters (``stats`` as returned by them, before carrying)."""
        for one in stats:
            if one.get("counters") is not None and "component" in one:
                self.latest[(one["component"], one["task"])] = one

    def retire(self, key: TaskKey) -> None:
        """``key``'s actor is being replaced: what it counted carries over to the next one."""
        last = self.latest.pop(key, None)
        if last:
            self.retired[key] = last
            into = self.carried.setdefault(key, {})
            for name, value in last["counters"].items():
                if isinstance(value, int | float):
                    into[name] = into.get(name, 0) + value

    def stand_in(self, key: TaskKey) -> dict[str, Any] | None:
        """What to show for a live actor that did not answer in time (a new one still starting,
        say): its last stats, or else its predecessor's with none of its own counts, carried
        counters added, so a task's counters never seem to go back. None: nothing seen yet."""
        if key in self.latest:
            return self.add_to(self.latest[key])
        if key in self.retired:
            return self.add_to({**self.retired[key], "counters": {}, "state": "restarting"})
        return None

    def add_to(self, stats: dict[str, Any]) -> dict[str, Any]:
        """``stats`` of one actor, with its predecessors' counters added (a new dict)."""
        key = (stats.get("component"), stats.get("task"))
        extra = self.carried.get(key)  # type: ignore[arg-type]
        if not extra:
            return stats
        counters = dict(stats.get("counters") or {})
        for name, value in extra.items():
            counters[name] = counters.get(name, 0) + value
        return {**stats, "counters": counters}
