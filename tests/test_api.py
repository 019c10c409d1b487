"""The Python builder and the spec it builds: validation messages, settings, tuples."""

from __future__ import annotations

import pickle

import pytest

from rayflow import Bolt, RayflowError, Spout, Topology, TopologyError, Tuple
from rayflow.api.tuple import TupleSource
from rayflow.spec.settings import Settings
from rayflow.testing import ListSink, TestingSpout


class Words(Spout):
    outputs = {"default": ["word"], "errors": ["error"]}

    def __init__(self, a: int = 0) -> None:
        self.a = a

    def next_tuple(self) -> None:
        self.finish()


class Pass(Bolt):
    outputs = ["word"]

    def __init__(self, *args: int) -> None:
        self.args = args

    def process(self, tup: Tuple) -> None:
        self.emit(tup.values)


def test_builder_round_trip_keeps_non_default_values() -> None:
    t = Topology("t", config={"batch.size": 7, "batch.linger.ms": "2ms", "app.key": "x"})
    t.spout("words", Words, parallelism=2, kwargs={"a": 1}, resources={"num_cpus": 0.5})
    t.bolt("pass", Pass, parallelism=3, args=(1, 2), config={"k": 2}).fields("words", "word")
    t.bolt("errs", ListSink).shuffle("words", stream="errors")
    spec = t.build()
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec
    comp = again.component("pass")
    assert (comp.parallelism, comp.args, dict(comp.config)) == (3, (1, 2), {"k": 2})
    assert dict(again.component("words").resources) == {"num_cpus": 0.5}
    assert again.settings.batch_size == 7 and again.settings.batch_linger == 0.002
    assert again.config == {"app.key": "x"}
    assert again.component_config("pass")["k"] == 2
    assert again.component_config("pass")["app.key"] == "x"
    assert [s.stream for s in again.streams] == ["default", "errors"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda t: t.spout("words", Words), "two components are named 'words'"),
        (lambda t: t.bolt("x", Words), "is not a subclass of rayflow.Bolt"),
        (lambda t: t.bolt("x", Pass).shuffle("wrods").global_("words"), "did you mean 'words'"),
        (lambda t: t.bolt("x", Pass).shuffle("words", stream="nope"), "does not declare stream"),
        (lambda t: t.bolt("x", Pass).fields("words", "wrd"), r"has fields \['word'\]"),
        (lambda t: t.bolt("x", Pass), "bolt 'x' subscribes to nothing"),
        (lambda t: t.bolt("x", Pass, parallelism=0).shuffle("words"), "between 1 and"),
        (
            lambda t: (
                t.bolt("a", Pass).shuffle("words").shuffle("b"),
                t.bolt("b", Pass).shuffle("a"),
            ),
            "cycle",
        ),
        (lambda t: t.bolt("x", Pass).custom("words", object()), "choose_tasks"),
    ],
)
def test_a_wrong_topology_says_what_is_wrong(build: object, message: str) -> None:
    t = Topology("t")
    with pytest.raises(TopologyError, match=message):
        t.spout("words", Words)
        build(t)  # type: ignore[operator]
        t.build()


def test_a_bad_config_value_names_the_key() -> None:
    with pytest.raises(TopologyError, match=r"batch\.size"):
        Topology("t", config={"batch.size": 0}).spout("w", Words).build()


def test_settings_come_from_the_environment_unless_the_config_sets_them() -> None:
    env = {"RAYFLOW_BATCH_SIZE": "64", "RAYFLOW_CHANNEL_CREDITS": "9"}
    settings, _ = Settings.from_config({"channel.credits": 2}, environ=env)
    assert settings.batch_size == 64 and settings.channel_credits == 2


def test_tuple_access_by_index_and_name() -> None:
    tup = Tuple(["cow", 3], TupleSource("default", "split", 1, ("word", "n")))
    assert (tup[0], tup["n"], tup.get("missing", 5), len(tup)) == ("cow", 3, 5, 2)
    assert tup.as_dict() == {"word": "cow", "n": 3}
    assert not tup.is_tick
    with pytest.raises(KeyError, match="its fields are"):
        tup["nope"]


def test_emit_outside_a_running_topology_explains_itself() -> None:
    with pytest.raises(RayflowError, match=r"rayflow\.testing\.run"):
        Pass().emit(["x"])


def test_testing_spout_spreads_items_over_its_tasks() -> None:
    from rayflow import testing

    t = Topology("spread")
    t.spout("items", TestingSpout, parallelism=3, args=([(i, i * i) for i in range(10)],))
    t.bolt("sink", ListSink).shuffle("items")
    result = testing.run(t)
    assert sorted(result.outputs["sink"]) == [(i, i * i) for i in range(10)]
    assert [task["counters"]["emitted"] for task in result.tasks["items"]] == [4, 3, 3]


class BatchesOfThree(Spout):
    """Emits 0..8 with emit_many, three rows per call."""

    outputs = ["n", "ts"]

    def open(self, context: object) -> None:
        self.next = 0

    def next_tuple(self) -> None:
        if self.next >= 9:
            self.finish()
            return
        self.emit_many([[n, 1000 + n] for n in range(self.next, self.next + 3)])
        self.next += 3


@pytest.mark.parametrize(
    "overrides",
    [{}, {"reliability": "at_least_once"}, {"watermark.timestamp_field": "ts"}],
    ids=["fast-path", "at-least-once", "event-time"],
)
def test_spout_emit_many_delivers_every_row(overrides: dict[str, str]) -> None:
    from rayflow.testing import run

    t = Topology("many")
    t.spout("nums", BatchesOfThree)
    t.bolt("sink", ListSink, parallelism=2).shuffle("nums")
    result = run(t, overrides=overrides)
    assert sorted(n for n, _ in result.outputs["sink"]) == list(range(9))
    assert result.counter("nums", "emitted") == 9
