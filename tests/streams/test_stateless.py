"""Stateless operators and their plumbing, in process: map, flat_map, filter, key_by, union,
branch, rebalance, broadcast, sinks, collect, names and parallelism."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from rayflow import Bolt, Flow, Spout, TopologyError, Tuple, testing


class Pairs(Spout):
    """Emits (n, n * n) for n < limit as two-field rows, plus a row on another stream."""

    outputs = {"default": ["n", "square"], "other": ["x"]}

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def open(self, context: Any) -> None:
        self.n = context.task_index
        self.step = context.parallelism

    def next_tuple(self) -> None:
        if self.n >= self.limit:
            self.finish()
            return
        self.emit([self.n, self.n * self.n])
        self.emit(["ignored"], stream="other")
        self.n += self.step

    def snapshot(self) -> int:
        return self.n

    def restore(self, snapshot: int) -> None:
        self.n = snapshot


class Gather(Bolt):
    """A Bolt sink: keeps tup[0] (the item) of every tuple."""

    outputs: list[str] = []

    def prepare(self, context: Any) -> None:
        self.items: list[Any] = []

    def process(self, tup: Tuple) -> None:
        self.items.append(tup[0])

    def collected_rows(self) -> list[Any]:
        return self.items


def test_map_flat_map_filter_over_a_list_source() -> None:
    flow = Flow("stateless")
    words = flow.source(["a bb", "ccc", "", "dd e"]).flat_map(str.split)
    words.map(len).filter(lambda n: n > 1).collect("lengths")
    words.collect("words")
    out = testing.run(flow).outputs
    assert out["words"] == ["a", "bb", "ccc", "dd", "e"]
    assert out["lengths"] == [2, 3, 2]


def test_a_spout_source_gives_tuples_of_its_chosen_stream() -> None:
    flow = Flow("spout-source")
    flow.source(Pairs, parallelism=2, args=(6,)).collect("pairs")
    out = testing.run(flow).outputs
    assert sorted(out["pairs"]) == [(n, n * n) for n in range(6)]


def test_items_are_kept_as_they_are() -> None:
    items = [{"id": 1}, [2, 3], (4,), None, "five"]
    flow = Flow("as-is")
    flow.source(items).collect("out")
    assert testing.run(flow).outputs["out"] == items


def test_fan_out_gives_every_item_to_each_consumer() -> None:
    flow = Flow("fan-out")
    numbers = flow.source(list(range(10)))
    numbers.map(lambda n: n * 10).collect("tens")
    numbers.filter(lambda n: n % 2).collect("odd")
    out = testing.run(flow).outputs
    assert out["tens"] == [n * 10 for n in range(10)]
    assert out["odd"] == [1, 3, 5, 7, 9]


def test_branch_splits_by_a_predicate() -> None:
    flow = Flow("branch")
    small, big = flow.source(list(range(10))).branch(lambda n: n < 4)
    small.collect("small")
    big.map(lambda n: -n).collect("big")
    out = testing.run(flow).outputs
    assert out["small"] == [0, 1, 2, 3]
    assert out["big"] == [-n for n in range(4, 10)]


def test_union_of_two_sources_and_of_two_branches() -> None:
    flow = Flow("union")
    a = flow.source(["a1", "a2"])
    b = flow.source(["b1"], parallelism=1)
    a.union(b).collect("both")
    left, right = flow.source(list(range(6)), name="numbers").branch(lambda n: n % 2 == 0)
    left.map(lambda n: ("even", n)).union(right.map(lambda n: ("odd", n))).collect("parity")
    out = testing.run(flow).outputs
    assert sorted(out["both"]) == ["a1", "a2", "b1"]
    assert sorted(out["parity"]) == sorted(("even" if n % 2 == 0 else "odd", n) for n in range(6))


def test_rebalance_broadcast_and_other_parallelism() -> None:
    flow = Flow("exchanges")
    numbers = flow.source(list(range(20)), parallelism=2)
    numbers.rebalance(parallelism=3).map(lambda n: n + 100).collect("rebalanced", parallelism=1)
    numbers.broadcast(parallelism=3).collect("everywhere", parallelism=3)
    numbers.map(lambda n: n * 2, parallelism=4).collect("doubled")
    out = testing.run(flow).outputs
    assert sorted(out["rebalanced"]) == [n + 100 for n in range(20)]
    assert Counter(out["everywhere"]) == Counter({n: 3 for n in range(20)})
    assert sorted(out["doubled"]) == [2 * n for n in range(20)]


def test_sinks_a_function_and_a_bolt_class() -> None:
    seen: list[Any] = []
    flow = Flow("sinks")
    numbers = flow.source(list(range(5)))
    numbers.sink(seen.append)
    numbers.sink(Gather, name="gathered")
    result = testing.run(flow)
    assert seen == list(range(5)), "a function sink is called once per item (in process here)"
    assert result.outputs["gathered"] == list(range(5))


def test_names_default_from_kind_and_place_and_fused_components_are_named_after_members() -> None:
    flow = Flow("names")
    source = flow.source([1, 2])
    source.map(str).map(len).collect()
    source.map(float, name="to_float").collect("floats")
    ids = [c.id for c in flow.topology().build().components]
    assert ids == ["source.map.map-2.to_float", "collect", "floats"]
    assert flow.topology().build().components[0].id == ids[0], "the same in every compile"


def test_a_flow_that_cannot_compile_says_why_before_anything_runs() -> None:
    flow = Flow("bad")
    with pytest.raises(TopologyError, match="key_by"):
        flow.source([1]).count_final()  # type: ignore[attr-defined]
    flow = Flow("bad-join")
    keyed = flow.source([1]).key_by(str)
    with pytest.raises(TopologyError, match="both sides must be keyed"):
        keyed.window_join(flow.source([2]), {"type": "tumbling", "size": "1s"}, max)  # type: ignore[arg-type]
    flow = Flow("bad-generator")
    with pytest.raises(TopologyError, match="cannot rewind"):
        flow.source(n for n in range(3))
    flow = Flow("bad-pickle")
    import threading

    lock = threading.Lock()
    flow.source([1]).map(lambda n: (lock, n)).collect()
    with pytest.raises(TopologyError, match=r"map 'map' .* cannot be pickled"):
        flow.topology()
    flow = Flow("late-timestamps")
    with pytest.raises(TopologyError, match="before the first exchange"):
        flow.source([1]).rebalance().with_timestamps(lambda n: n)
        flow.topology()
