"""Which tasks chain: the pure logic; on Ray in tests/ray/test_chaining.py."""

from __future__ import annotations

from typing import Any

import pytest

from rayflow import Topology
from rayflow.errors import TopologyError
from rayflow.runtime.chaining import Chains
from rayflow.runtime.plan import prepare_spec
from rayflow.testing import ListSink, TestingSpout


def chain_of(
    config: dict[str, Any] | None = None,
    spout: dict[str, Any] | None = None,
    bolt: dict[str, Any] | None = None,
) -> Chains:
    t = Topology("c", config=config)
    t.spout("src", TestingSpout, parallelism=2, **(spout or {}))
    t.bolt("parse", ListSink, parallelism=2, **(bolt or {})).forward("src")
    return Chains(prepare_spec(t.build()))


def test_a_forward_edge_chains_task_i_to_task_i() -> None:
    chains = chain_of()
    assert chains.head_of("parse") == "src"
    assert chains.unit(("parse", 0)) == [("src", 0), ("parse", 0)]
    assert chains.host(("parse", 1)) == ("src", 1)
    assert chains.chained("src") and chains.chained("parse")


@pytest.mark.parametrize(
    "where",
    [
        {"config": {"chaining": False}},
        {"config": {"chaining": "off"}},
        {"spout": {"config": {"chaining": False}}},
        {"bolt": {"config": {"chaining": "false"}}},
        {"bolt": {"resources": {"num_cpus": 1}}},
    ],
)
def test_chaining_off_or_other_resources_break_the_chain(where: dict[str, Any]) -> None:
    chains = chain_of(**where)
    assert chains.head_of("parse") == "parse"
    assert chains.unit(("parse", 0)) == [("parse", 0)]


def test_a_bad_chaining_value_is_a_clear_error() -> None:
    with pytest.raises(TopologyError, match="chaining"):
        chain_of({"chaining": "maybe"})
    with pytest.raises(TopologyError, match="component 'parse': config chaining: expected true"):
        chain_of(bolt={"config": {"chaining": "maybe"}})


def test_chains_are_trees_and_stop_at_other_groupings_and_second_inputs() -> None:
    t = Topology("tree", config={"reliability": "at_least_once"})
    t.spout("src", TestingSpout, parallelism=2)
    t.bolt("a", ListSink, parallelism=2).forward("src")
    t.bolt("b", ListSink, parallelism=2).forward("src")
    t.bolt("a2", ListSink, parallelism=2).forward("a")
    t.bolt("shuffled", ListSink, parallelism=2).shuffle("a")
    t.bolt("two_inputs", ListSink, parallelism=2).forward("b").shuffle("src")
    chains = Chains(prepare_spec(t.build()))
    assert chains.unit(("a2", 1)) == [("src", 1), ("a", 1), ("b", 1), ("a2", 1)]
    assert chains.head_of("shuffled") == "shuffled"
    assert chains.head_of("two_inputs") == "two_inputs"
    assert chains.head_of("__acker") == "__acker"  # fed by every component
    keys = [("src", 0), ("a", 0), ("src", 1), ("shuffled", 0)]
    expected = [chains.unit(("src", 0)), chains.unit(("src", 1)), [("shuffled", 0)]]
    assert chains.units(keys) == expected
