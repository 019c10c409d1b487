"""Exactly-once word count: keyed state, checkpoints and a transactional file sink.

    rayflow run examples/exactly_once.yaml -D LIMIT=200000 -D OUT=/tmp/wc-out

Every ``every``-th occurrence of a word is written to the sink as ``[word, count]``; under
``reliability: exactly_once`` each such line is in the committed files exactly once, whatever
fails (kill a task actor while it runs and compare). The counts live in keyed state
(``self.state``), so they are in every checkpoint and move with their words on a rescale.
"""

from __future__ import annotations

from rayflow import Bolt, Context, Tuple


class MilestoneCount(Bolt):
    """Counts each word in keyed state; emits ``[word, count]`` at every ``every``-th."""

    outputs = ["word", "count"]

    def __init__(self, every: int = 1000) -> None:
        self.every = every

    def prepare(self, context: Context) -> None:
        self.count = self.state.value("count", default=0)

    def process(self, tup: Tuple) -> None:
        count = self.count.get() + 1
        self.count.set(count)
        if count % self.every == 0:
            self.emit([tup.values[0], count])
