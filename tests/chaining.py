"""Components and topologies for the chaining tests (importable by task actors)."""

from __future__ import annotations

from typing import Any

from examples.wordcount import SENTENCES, SplitSentence, WordCount
from rayflow import Bolt, Topology, Tuple
from rayflow.testing import ListSink, TestingSpout
from tests.helpers import EndlessSpout


class Sentences(TestingSpout):
    outputs = ["sentence"]


class Numbers(TestingSpout):
    outputs = ["n"]


def chained_wordcount(sentences: int, reliability: str, chaining: bool) -> Topology:
    """sentences x2 -FORWARD-> split x2 -FIELDS-> count x2 -> sink: the spout and split chain
    unless ``chaining`` is off."""
    t = Topology(
        f"chained-wordcount-{reliability}",
        config={"reliability": reliability, "chaining": chaining, "batch.size": 256},
    )
    items = [SENTENCES[i % len(SENTENCES)] for i in range(sentences)]
    t.spout("sentences", Sentences, kwargs={"items": items}, parallelism=2)
    t.bolt("split", SplitSentence, parallelism=2).forward("sentences")
    t.bolt("count", WordCount, parallelism=2).fields("split", "word")
    t.bolt("sink", ListSink).global_("count")
    return t


class Keeper(Bolt):
    """Emits each n in a dict it keeps; at the end reports on stream ``kept`` whether any kept
    dict was changed after it was emitted."""

    outputs = {"default": ["payload"], "kept": ["n", "changed"]}

    def prepare(self, context: Any) -> None:
        self.kept: list[dict[str, Any]] = []

    def process(self, tup: Tuple) -> None:
        payload = {"n": tup[0], "tags": []}
        self.kept.append(payload)
        self.emit([payload])

    def cleanup(self) -> None:
        self.emit_many([[p["n"], p != {"n": p["n"], "tags": []}] for p in self.kept], stream="kept")


class Mutator(Bolt):
    """Changes the dict it was given and its tuple's values in place, then forwards n."""

    outputs = ["n", "tags"]

    def process(self, tup: Tuple) -> None:
        payload = tup.values[0]
        payload["tags"].append("mutated")
        payload["n"] = -1
        tup.values[0] = None
        self.emit([-1 if payload["n"] == -1 else 0, len(payload["tags"])])


def mutating_chain(n: int, config: dict[str, Any] | None = None) -> Topology:
    """numbers x2 -FORWARD-> keeper x2 -FORWARD-> mutator x2 -> sinks."""
    t = Topology("mutating", config={"batch.size": 16, **(config or {})})
    t.spout("numbers", Numbers, kwargs={"items": list(range(n))}, parallelism=2)
    t.bolt("keeper", Keeper, parallelism=2).forward("numbers")
    t.bolt("mutator", Mutator, parallelism=2).forward("keeper")
    t.bolt("sink", ListSink).global_("mutator")
    t.bolt("kept", ListSink).global_("keeper", stream="kept")
    return t


class RewindableNumbers(EndlessSpout):
    """Endless numbers that exactly-once can rewind."""

    def snapshot(self) -> int:
        return self.n

    def restore(self, snapshot: int) -> None:
        self.n = snapshot


class Forward(Bolt):
    outputs = ["n"]

    def process(self, tup: Tuple) -> None:
        self.emit([tup[0]])


def long_chain(members: int, config: dict[str, Any]) -> Topology:
    """numbers -FORWARD-> step1 -FORWARD-> ... stepN: one chain, one actor."""
    t = Topology("long-chain", config=config)
    t.spout("numbers", RewindableNumbers)
    previous = "numbers"
    for i in range(1, members):
        t.bolt(f"step{i}", Forward).forward(previous)
        previous = f"step{i}"
    return t
