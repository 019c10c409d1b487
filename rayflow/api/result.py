"""What running a topology returns: counters per component and what collecting sinks gathered.

>>> r = RunResult("wc", {"count": {"executed": 3}}, {"sink": [("a", 1)]}, "finished", 1.5)
>>> r.counter("count", "executed"), r.outputs["sink"]
(3, [('a', 1)])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(repr=False)
class RunResult:
    """The end of a run: ``components[id]`` counters summed over tasks, ``outputs[sink_id]`` rows.

    ``ended`` is ``"finished"`` (every spout finished and the stream drained), ``"duration"``
    (stopped after the requested duration) or ``"interrupted"`` (Ctrl-C).
    """

    name: str
    components: dict[str, dict[str, float]] = field(default_factory=dict)
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    ended: str = "finished"
    seconds: float = 0.0
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def counter(self, component: str, name: str) -> float:
        return self.components.get(component, {}).get(name, 0)

    def metric(self, component: str, name: str) -> float:
        """A user counter or gauge (``self.metrics``) summed over the component's tasks.

        >>> task = {"metrics": {"seen": {"type": "counter", "value": 2}}}
        >>> RunResult("t", tasks={"c": [task, task]}).metric("c", "seen")
        4
        """
        return sum(
            task.get("metrics", {}).get(name, {}).get("value", 0)
            for task in self.tasks.get(component, [])
        )

    def __repr__(self) -> str:
        """A summary: the rows are counted, not shown (Python 3.11's ``asyncio.run`` formats
        the result of its task on the way out, which took a second for a million rows).

        >>> RunResult("t", outputs={"sink": [1, 2]}, seconds=1.5)
        RunResult('t', ended='finished', seconds=1.50, outputs={'sink': '2 rows'})
        """
        outputs = {name: f"{len(rows)} rows" for name, rows in self.outputs.items()}
        return (
            f"RunResult({self.name!r}, ended={self.ended!r}, seconds={self.seconds:.2f}, "
            f"outputs={outputs})"
        )


def merge_task_stats(
    name: str, stats: list[dict[str, Any]], ended: str, seconds: float
) -> RunResult:
    """Sum per-task stats (as ``TaskCore.stats()`` returns them) into a :class:`RunResult`."""
    result = RunResult(name, ended=ended, seconds=seconds)
    for task in sorted(stats, key=lambda s: (s["component"], s["task"])):
        comp = task["component"]
        result.tasks.setdefault(comp, []).append(task)
        totals = result.components.setdefault(comp, {})
        for key, value in task["counters"].items():
            totals[key] = totals.get(key, 0) + value
        if task.get("collected") is not None:
            result.outputs.setdefault(comp, []).extend(task["collected"])
    return result
