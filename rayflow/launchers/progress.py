"""The live line ``rayflow run`` shows: tuples per second per component, and backpressure.

>>> p = ProgressLine("wc", stream=None)
>>> acker = {"component": "__acker", "kind": "bolt", "counters": {"executed": 3}}
>>> p.render(10.0, [{"component": "split", "kind": "bolt", "counters": {"executed": 500,
...     "emitted": 2000, "blocked_seconds": 0}}, acker], 1.0)
'[wc 00:00:10] split 500/s'
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _rate(value: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}/s"
    return f"{value:.0f}/s"


class ProgressLine:
    """Prints one status line per interval: on a terminal it redraws in place."""

    def __init__(self, name: str, stream: TextIO | None = sys.stderr, every: float = 1.0) -> None:
        self.name = name
        self.stream = stream
        self.tty = bool(stream is not None and stream.isatty())
        self.every = every if self.tty else max(every, 5.0)
        self.started = time.monotonic()
        self.last_time = self.started
        self.last: dict[str, dict[str, float]] = {}
        self.last_print = 0.0

    def due(self) -> bool:
        return time.monotonic() - self.last_print >= self.every

    def render(self, elapsed: float, stats: list[dict[str, Any]], interval: float) -> str:
        totals: dict[str, dict[str, float]] = {}
        kinds: dict[str, str] = {}
        for task in stats:
            comp = task.get("component")
            if comp is None or comp.startswith("__"):
                continue  # system bolts (the acker): their rows are not the user's tuples
            kinds[comp] = task.get("kind", "bolt")
            into = totals.setdefault(comp, {})
            for key in ("emitted", "executed", "blocked_seconds", "failed"):
                into[key] = into.get(key, 0) + task["counters"].get(key, 0)
        parts = []
        for comp, now in totals.items():
            before = self.last.get(comp, {})
            key = "emitted" if kinds[comp] == "spout" else "executed"
            rate = (now[key] - before.get(key, 0)) / interval if interval > 0 else 0
            part = f"{comp} {_rate(max(rate, 0))}"
            blocked = (now["blocked_seconds"] - before.get("blocked_seconds", 0)) / interval
            if blocked > 0.05:
                part += f" (backpressure {min(blocked, 1):.0%})"
            if now.get("failed"):
                part += f" failed {now['failed']:.0f}"
            parts.append(part)
        self.last = totals
        seconds = int(elapsed)
        clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return f"[{self.name} {clock}] " + " | ".join(parts)

    def update(self, stats: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        line = self.render(now - self.started, stats, now - self.last_time)
        self.last_time = now
        self.last_print = now
        if self.stream is None:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()
