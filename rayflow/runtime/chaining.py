"""Operator chaining (Flink's): which tasks share one task actor.

A bolt whose every input stream comes from one component over a FORWARD grouping (task i to
task i, same parallelism) runs in the actor of its producer's task i: one process, one asyncio
loop, its input handed over by a direct call instead of a socket. A chain breaks where chaining is
off (``chaining: false`` in the topology's config or either component's), where the two
components ask for different ``resources``, or where a bolt has other inputs. Chains are trees:
a producer may feed several chained bolts, and a chained bolt may feed chained bolts of its own.

Every member stays a task of its own (its key, inputs, state, snapshots, counters, log lines),
so checkpoints and savepoints are the same whether a chain forms or not; the actor is only where
the members live, and members fail, restart and recover together.

>>> from rayflow import Topology
>>> from rayflow.testing import ListSink, TestingSpout
>>> t = Topology("demo")
>>> _ = t.spout("src", TestingSpout, args=([[1]],), parallelism=2)
>>> _ = t.bolt("sink", ListSink, parallelism=2).forward("src")
>>> chains = Chains(t.build())
>>> chains.head_of("sink"), chains.unit(("sink", 1))
('src', [('src', 1), ('sink', 1)])
"""

from __future__ import annotations

from rayflow.errors import TopologyError
from rayflow.runtime.io.messages import TaskKey
from rayflow.spec.model import TopologySpec
from rayflow.spec.settings import parse_flag


class Chains:
    """The chains of one (prepared) topology: each component's head, each task's unit."""

    def __init__(self, spec: TopologySpec) -> None:
        self.spec = spec
        self.heads: dict[str, str] = {}
        for component_id in spec.topological_order():
            producer = chained_producer(spec, component_id)
            self.heads[component_id] = component_id if producer is None else self.heads[producer]
        self.members: dict[str, list[str]] = {}
        for component_id in spec.topological_order():
            self.members.setdefault(self.heads[component_id], []).append(component_id)

    def head_of(self, component_id: str) -> str:
        """The component whose tasks host ``component_id``'s (itself when it heads a chain)."""
        return self.heads[component_id]

    def host(self, key: TaskKey) -> TaskKey:
        """The head task of ``key``'s unit: it names the actor."""
        return (self.heads[key[0]], key[1])

    def unit(self, key: TaskKey) -> list[TaskKey]:
        """Every task in ``key``'s actor, producers before consumers."""
        return [(c, key[1]) for c in self.members[self.heads[key[0]]]]

    def units(self, keys: list[TaskKey]) -> list[list[TaskKey]]:
        """The units of ``keys``, each once, in the order their heads come in ``keys``."""
        seen: dict[TaskKey, list[TaskKey]] = {}
        for key in keys:
            host = self.host(key)
            if host not in seen:
                seen[host] = self.unit(key)
        return list(seen.values())

    def chained(self, component_id: str) -> bool:
        """Whether ``component_id`` shares its actors with another component."""
        return len(self.members[self.heads[component_id]]) > 1


def chaining_on(spec: TopologySpec, component_id: str) -> bool:
    """The topology's ``chaining`` setting, unless the component's config turns it off."""
    component = spec.component(component_id)
    value = component.config.get("chaining")
    if value is None:
        return spec.settings.chaining
    try:
        return spec.settings.chaining and parse_flag(value)
    except ValueError as exc:
        raise TopologyError(
            f"{component.origin.prefix()}component '{component_id}': config chaining: {exc}"
        ) from None


def chained_producer(spec: TopologySpec, component_id: str) -> str | None:
    """The component that ``component_id`` runs chained to, or None.

    >>> from rayflow import Topology
    >>> from rayflow.testing import ListSink, TestingSpout
    >>> t = Topology("demo", config={"chaining": False})
    >>> _ = t.spout("src", TestingSpout, args=([[1]],))
    >>> _ = t.bolt("sink", ListSink).forward("src")
    >>> chained_producer(t.build(), "sink") is None
    True
    """
    inputs = spec.upstream(component_id)
    producers = {s.source for s in inputs}
    if len(producers) != 1 or any(s.grouping.type != "FORWARD" for s in inputs):
        return None
    (producer,) = producers
    if not (chaining_on(spec, producer) and chaining_on(spec, component_id)):
        return None
    if dict(spec.component(producer).resources) != dict(spec.component(component_id).resources):
        return None
    return producer
