"""Keyed state: value/map/list scoped to the tuple's key, TTL, key groups, clear errors."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from rayflow import Bolt, Topology, Tuple
from rayflow.state.keyed import KeyedState, StateError
from rayflow.testing import ListSink, TestingSpout, run

WORDS = ["the", "cow", "the", "moon", "cow", "the", "a", "moon", "the"] * 20


class Words(TestingSpout):
    outputs = ["word", "n"]


class RunningCount(Bolt):
    """Per word: a count (value), the positions seen (list) and counts by parity (map)."""

    outputs = ["word", "count", "seen", "parity"]

    def prepare(self, context: object) -> None:
        self.count = self.state.value("count", default=0)
        self.seen = self.state.list("seen")
        self.parity = self.state.map("parity")

    def process(self, tup: Tuple) -> None:
        self.count.set(self.count.get() + 1)
        self.seen.append(tup["n"])
        side = "even" if tup["n"] % 2 == 0 else "odd"
        self.parity[side] = self.parity.get(side, 0) + 1
        self.emit([tup["word"], self.count.get(), len(self.seen), dict(self.parity.items())])


def counting(grouping: str = "fields") -> Topology:
    t = Topology("keyed")
    t.spout("words", Words, args=([[w, i] for i, w in enumerate(WORDS)],))
    bolt = t.bolt("count", RunningCount, parallelism=3)
    if grouping == "fields":
        bolt.fields("words", "word")
    else:
        bolt.shuffle("words")
    t.bolt("sink", ListSink).global_("count")
    return t


@pytest.mark.parametrize("reliability", ["none", "at_least_once"])
def test_state_is_scoped_to_each_tuples_key(reliability: str) -> None:
    result = run(counting(), overrides={"reliability": reliability})
    rows = result.outputs["sink"]
    final = {}
    for word, count, seen, parity in rows:
        assert count == seen == sum(parity.values())  # the three states moved together
        final[word] = max(final.get(word, 0), count)
    assert final == dict(Counter(WORDS))


def errors(result: object, component: str) -> list[str]:
    return [e["error"] for task in result.tasks[component] for e in task.get("errors", [])]  # type: ignore[attr-defined]


def test_keyed_state_without_a_fields_grouping_says_what_to_do() -> None:
    result = run(counting(grouping="shuffle"))
    assert result.counter("count", "failed") == len(WORDS)  # each tuple fails, visibly
    assert any("not all grouped by the same FIELDS" in e for e in errors(result, "count"))


def test_keyed_state_in_process_batch_says_it_needs_process() -> None:
    class BatchCount(Bolt):
        def process_batch(self, batch: object) -> None:
            self.state.value("count").set(1)

    t = Topology("batch-state")
    t.spout("words", Words, args=([["a", 1]],))
    t.bolt("count", BatchCount).fields("words", "word")
    result = run(t)
    assert any("use it in process()" in e for e in errors(result, "count"))


def test_ttl_expires_values_on_the_tasks_clock() -> None:
    now = [1_000]
    state = KeyedState("c", ("k",), 128, clock=lambda: now[0])
    session = state.value("session", ttl="10s")
    state.set_key(("a",))
    session.set("open")
    now[0] += 9_000
    assert session.get() == "open"
    now[0] += 2_000
    assert session.get() is None
    tags = state.list("tags", ttl=5)
    tags.append("x")
    now[0] += 6_000
    assert list(tags) == []


def test_snapshot_is_by_key_group_and_restores_into_other_tasks() -> None:
    state = KeyedState("c", ("k",), max_parallelism=8)
    counts = state.value("n", default=0)
    for key in range(50):
        state.set_key((f"k{key}",))
        counts.set(key)
    groups = state.snapshot()
    assert set(groups) <= set(range(8)) and len(groups) > 1
    # two tasks of a new parallelism each take some of the key groups back
    first, second = KeyedState("c", ("k",), 8), KeyedState("c", ("k",), 8)
    first.restore({g: d for g, d in groups.items() if g < 4})
    second.restore({g: d for g, d in groups.items() if g >= 4})
    for key in range(50):
        for task in (first, second):
            task.set_key((f"k{key}",))
        values = {task.value("n").get() for task in (first, second)} - {None}
        assert values == {key}


def test_an_unpicklable_value_is_named() -> None:
    state = KeyedState("count", ("k",), 128)
    state.set_key(("a",))
    state.value("lock").set(threading.Lock())
    with pytest.raises(StateError, match=r"state 'lock' of key 'a' holds a lock"):
        state.snapshot()
