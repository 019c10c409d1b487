"""The no-progress watchdog: names the component where a running topology is stuck.

It watches the tasks' counters; when none moved for ``timeout`` seconds while some task still had
input waiting, it reports the tasks holding input they do not process (a bolt stuck in user code,
or waiting for a downstream that does not read), instead of letting the run hang silently; and
when some task reached the end of its input and waits for the rest, what it waits for.

>>> w = StallWatch(timeout=10)
>>> busy = [{"component": "count", "task": 0, "state": "running", "inbox": 4,
...          "pending_batches": 0, "counters": {"executed": 5, "emitted": 0}}]
>>> w.check(busy, now=0.0) is None
True
>>> message = w.check(busy, now=11.0)
>>> message.startswith("no progress for 11s: count[0] holds 4 input batches")
True
>>> held = dict(busy[0], inbox=0, aligning={"checkpoint": 7, "missing": ["split[1] (gen 0)"]})
>>> w = StallWatch(timeout=10); w.check([held], 0.0); w.check([held], 11.0) is None
True
>>> w = StallWatch(timeout=10); sender = dict(busy[0], component="split", inbox=0,
...     pending_batches=2, blocked_on=["count[0]"])
>>> w.check([sender, held], 0.0); print(w.check([sender, held], 11.0))  # doctest: +ELLIPSIS
no progress for 11s: ... count[0] aligns checkpoint 7, waiting for the barrier of split[1]...)

A bounded run whose end does not come names what each ending task waits for, and the tasks
that have not reached the end of their input:

>>> ending = dict(busy[0], inbox=0, waits_for="the final checkpoint")
>>> w = StallWatch(timeout=10); w.check([ending, dict(ending, task=1, waits_for=None)], 0.0)
>>> print(w.check([ending, dict(ending, task=1, waits_for=None)], 11.0))  # doctest: +ELLIPSIS
no progress for 11s: count[0] waits for the final checkpoint; not at its end yet: count[1] (...)

A finished bounded spout beside an unbounded one that has nothing to read is a quiet run, not a
stuck one:

>>> done = dict(ending, component="files", kind="spout")
>>> idle = dict(ending, component="kafka", kind="spout", waits_for=None, round_age=0.001)
>>> w = StallWatch(timeout=10); w.check([done, idle], 0.0); w.check([done, idle], 11.0) is None
True

... unless that spout's loop went no round for as long (stuck in ``next_tuple``):

>>> hung = dict(idle, round_age=11.0)
>>> w = StallWatch(timeout=10); w.check([done, hung], 0.0); print(w.check([done, hung], 11.0))
no progress for 11s: files[0] waits for the final checkpoint; not at its end yet: kafka[0] (...)
"""

from __future__ import annotations

from typing import Any


class StallWatch:
    """Call :meth:`check` with each round of task stats; it returns a message once stuck."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.last_progress: float | None = None
        self.last_totals: tuple[float, ...] | None = None
        self.reported = False

    def check(self, stats: list[dict[str, Any]], now: float) -> str | None:
        totals = tuple(
            sum(task["counters"].get(k, 0) for task in stats if "counters" in task)
            for k in ("executed", "emitted")
        )
        if totals != self.last_totals or self.last_progress is None:
            self.last_totals, self.last_progress, self.reported = totals, now, False
            return None
        waiting = [
            t
            for t in stats
            if t.get("state") == "running" and (t.get("inbox", 0) or t.get("pending_batches", 0))
        ]
        running = [t for t in stats if t.get("state") == "running" and "component" in t]
        # A spout short of its end whose loop still goes round has nothing to read now (an
        # idle unbounded source beside a finished bounded one): the run is quiet, not stuck at
        # its end. A spout stuck in next_tuple goes no round, and is named.
        sourcing = any(
            t.get("kind") == "spout"
            and not t.get("waits_for")
            and t.get("round_age") is not None
            and t["round_age"] < self.timeout
            for t in running
        )
        ending = [] if sourcing else [t for t in running if t.get("waits_for")]
        stalled = now - self.last_progress
        if not (waiting or ending) or stalled < self.timeout or self.reported:
            return None
        self.reported = True
        parts = []
        # A task waiting to send is held by its downstream: name the one that holds them.
        names = {f"{t['component']}[{t['task']}]": t for t in stats if "component" in t}
        for target in sorted({n for t in waiting for n in t.get("blocked_on", ())}):
            held = names.get(target)
            if held is not None and not held.get("pending_batches"):
                waiters = [
                    f"{t['component']}[{t['task']}]"
                    for t in waiting
                    if target in t.get("blocked_on", ())
                ]
                parts.append(f"{target} takes no input ({', '.join(waiters[:3])} wait on it)")
        for task in waiting[:5]:
            name = f"{task['component']}[{task['task']}]"
            if task.get("inbox"):
                parts.append(f"{name} holds {task['inbox']} input batches and executes nothing")
            else:
                parts.append(f"{name} waits to send {task['pending_batches']} batches downstream")
        # Exactly-once: an input held for barrier alignment shows as a sender that waits.
        for name, task in names.items():
            aligning = task.get("aligning")
            if aligning and aligning.get("missing"):
                parts.append(
                    f"{name} aligns checkpoint {aligning['checkpoint']}, waiting for the barrier"
                    f" of {', '.join(aligning['missing'][:3])}"
                )
            if task.get("dropping_to"):
                parts.append(f"{name} drops what goes to {', '.join(task['dropping_to'][:3])}")
            if task.get("paused") and task.get("state") == "running":
                parts.append(f"{name} is paused (reset, never resumed)")
        for task in ending[:5]:
            parts.append(f"{task['component']}[{task['task']}] waits for {task['waits_for']}")
        if ending:
            behind = [f"{t['component']}[{t['task']}]" for t in running if not t.get("waits_for")]
            if behind:
                parts.append(f"not at its end yet: {', '.join(behind[:5])}")
        return (
            f"no progress for {stalled:.0f}s: "
            + "; ".join(parts)
            + " (stuck in user code, or waiting on a slow downstream?)"
        )
