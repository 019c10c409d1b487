"""Components that report the Ray node they run on (for the multi-node test)."""

from __future__ import annotations

import ray

from rayflow import Bolt, Context, Spout, Tuple


class NodeNumbers(Spout):
    """Emits ``count`` numbers, each with this task's Ray node id."""

    outputs = ["n", "node"]

    def __init__(self, count: int = 20) -> None:
        self.count = count

    def open(self, context: Context) -> None:
        self.node = ray.get_runtime_context().get_node_id()
        self.n = 0

    def next_tuple(self) -> None:
        if self.n == self.count:
            self.finish()
            return
        self.emit([self.n, self.node])
        self.n += 1


class NodeTag(Bolt):
    """Adds the node this task runs on: (n, sender's node, this node)."""

    outputs = ["n", "from_node", "node"]

    def prepare(self, context: Context) -> None:
        self.node = ray.get_runtime_context().get_node_id()

    def process(self, tup: Tuple) -> None:
        self.emit([tup["n"], tup["node"], self.node])
