"""How a bolt gets its rows: a Tuple per row that a bolt may keep, whatever the executor reuses
underneath (per tuple, under at-least-once, after a raise)."""

from __future__ import annotations

from typing import Any

import pytest

from rayflow import Bolt, Topology, Tuple, testing
from rayflow.api.tuple import TupleSource
from rayflow.runtime.task.executors import make_executor
from rayflow.testing import ListSink, TestingSpout

SOURCE = TupleSource("default", "src", 0, ("n",))


class KeepSome(Bolt):
    """Keeps every third tuple it gets, and raises on every fifth (``raises``)."""

    outputs = ["n"]

    def __init__(self, raises: bool = True) -> None:
        self.raises = raises

    def prepare(self, context: Any) -> None:
        self.kept: list[Tuple] = []

    def process(self, tup: Tuple) -> None:
        if tup[0] % 3 == 0:
            self.kept.append(tup)
        if self.raises and tup[0] % 5 == 4:
            raise ValueError(f"no {tup[0]}")
        self.emit([tup[0]])

    def cleanup(self) -> None:
        self.emit_many([[-1 - t[0]] for t in self.kept])  # what the kept tuples hold now


def test_a_kept_tuple_keeps_its_values_while_others_are_reused() -> None:
    bolt = KeepSome()
    bolt.prepare(None)
    errors: list[str] = []
    seen: list[int] = []
    bolt.emit = lambda values, stream="default", anchors=None: seen.append(values[0])  # type: ignore[method-assign]
    run = make_executor(bolt, False, lambda what, exc, count=1: errors.append(str(exc)))
    run([[n] for n in range(30)], SOURCE, None)
    assert [t[0] for t in bolt.kept] == list(range(0, 30, 3))
    assert len({id(t) for t in bolt.kept}) == 10, "each kept tuple is its own object"
    assert seen == [n for n in range(30) if n % 5 != 4]
    assert errors == [f"no {n}" for n in range(4, 30, 5)]


@pytest.mark.parametrize("reliability", ["none", "at_least_once"])
def test_kept_tuples_hold_their_values_in_a_topology(reliability: str) -> None:
    t = Topology("keep", config={"reliability": reliability, "batch.size": 7})
    t.spout("src", TestingSpout, args=([[n] for n in range(100)],))
    t.bolt("keep", KeepSome, kwargs={"raises": False}).shuffle("src")
    t.bolt("sink", ListSink).shuffle("keep")
    out = sorted(n for (n,) in testing.run(t).outputs["sink"])
    passed = list(range(100))
    kept = [-1 - n for n in range(0, 100, 3)]
    assert out == sorted(passed + kept)
