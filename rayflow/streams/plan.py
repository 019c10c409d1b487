"""Compile a :class:`~rayflow.streams.flow.Flow` into an ordinary topology.

*Fusion.* Operators with no exchange between them share one component and run in one task,
batch at a time: a source and the stateless operators after it (map, flat_map, filter,
with_timestamps, key_by's key extraction, branch), a function sink of the same parallelism, and
the same behind a keyed operator or an exchange's receiving end. Tasks are crossed only before a
keyed operator (by key), at ``rebalance`` (shuffled), ``broadcast`` (to every task), a ``union``
of streams from different components, a change of parallelism, a Bolt class sink and
``collect``. A fused component is named after its members (``source.flat_map.key_by``).

*Combiners.* Before ``count_final`` and ``reduce_final`` each batch is reduced per key, so the
exchange carries a row per key and batch, not per item.

>>> from rayflow import Flow
>>> flow = Flow("wc")
>>> flow.source(["a b"], parallelism=2).flat_map(str.split).key_by(str).count_final().collect()
... # doctest: +ELLIPSIS
<rayflow.streams.flow.Stream ...>
>>> print(Plan(flow).explain())
flow 'wc': 3 components
  source.flat_map.key_by  x2  spout: source -> flat_map -> key_by
      -> count_final  FIELDS(key), combined per batch
  count_final  x2  bolt: count_final
      -> collect  FORWARD
  collect  x2  bolt: collect
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rayflow.errors import TopologyError
from rayflow.spec.model import Grouping
from rayflow.spec.settings import Reliability, SettingError, Settings
from rayflow.streams.nodes import (
    ASYNC,
    COMBINABLE,
    EXCHANGES,
    KEYED,
    SOURCES,
    STATELESS,
    Node,
)
from rayflow.streams.pipeline import Step

if TYPE_CHECKING:
    from rayflow.api.topology import Topology
    from rayflow.streams.flow import Flow

MAX_ID = 100  # component ids are at most this long


@dataclass(eq=False)
class Edge:
    """Items of ``source`` (a member of one component) into ``target`` (the head of another)."""

    source: Node
    target: Node
    port: int  # which input of the target (a join's left is 0, its right 1)
    stream: str = ""
    wire: str = "items"
    grouping: Grouping = field(default_factory=lambda: Grouping("SHUFFLE"))
    combine: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return {
            "items": ("item",),
            "items_ts": ("item", "ts"),
            "rows": ("item",),
            "rows_ts": ("item", "ts"),
            "keyed": ("key", "item"),
            "keyed_ts": ("key", "item", "ts"),
            "partial": ("key", "partial"),
        }[self.wire]


@dataclass(eq=False)
class Segment:
    """One component of the compiled topology: a head and the operators fused after it."""

    head: Node
    kind: str  # spout, bolt, sink (a Bolt class of the user's), collect
    parallelism: int
    members: list[Node] = field(default_factory=list)
    exits: list[Edge] = field(default_factory=list)
    inputs: list[Edge] = field(default_factory=list)
    id: str = ""


class Plan:
    """Which operators share a component, and what crosses between components."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.parallelism: dict[Node, int] = {}
        self.segment_of: dict[Node, Segment] = {}
        self.segments: list[Segment] = []
        self.consumers: dict[Node, list[Node]] = {}  # each node's consumers, in flow order
        for node in flow.nodes:
            for upstream in dict.fromkeys(node.inputs):
                self.consumers.setdefault(upstream, []).append(node)
        if not any(n.kind in SOURCES for n in flow.nodes):
            raise TopologyError(f"flow '{flow.name}' has no source; start with flow.source(...)")
        for node in flow.nodes:
            self._check(node)
            self._place(node)
        for node in flow.nodes:
            for port, upstream in enumerate(node.inputs):
                if self.segment_of[upstream] is not self.segment_of[node]:
                    self._connect(upstream, node, port)
        self._name()

    # ---------------------------------------------------------------- placing
    def _check(self, node: Node) -> None:
        kind = node.kind
        if kind in KEYED:
            for upstream in node.inputs:
                if not upstream.keyed:
                    raise TopologyError(
                        f"{kind} '{node.label()}' needs a keyed stream: call key_by(fn) on its "
                        f"input first"
                    )
        if kind == "window" and node.params.get("agg") is None:
            raise TopologyError(
                f"window '{node.label()}' is never aggregated: call count(), reduce(fn), "
                "aggregate(...) or process(fn) on what window(...) returned"
            )
        if kind == "window_join" and node.params["window"]["type"] == "session":
            raise TopologyError(
                f"window_join '{node.label()}': join windows are tumbling or sliding"
            )

    def _place(self, node: Node) -> None:
        kind = node.kind
        inputs = node.inputs
        default = 1 if kind in SOURCES else self.parallelism[inputs[0]]
        parallelism = self.parallelism[node] = node.parallelism or default
        if kind in SOURCES:
            self._new(node, "spout")
        elif kind == "port":
            self._join(node, inputs[0])
        elif kind in STATELESS or kind == "sink_fn":
            if parallelism == self.parallelism[inputs[0]]:
                self._join(node, inputs[0])
            else:
                self._new(node, "bolt")
        elif kind == "union":
            homes = {self.segment_of[i] for i in inputs}
            if len(homes) == 1 and {self.parallelism[i] for i in inputs} == {parallelism}:
                self._join(node, inputs[0])
            else:
                self._new(node, "bolt")
        elif kind in KEYED or kind in EXCHANGES or kind in ASYNC:
            self._new(node, "bolt")
        elif kind == "sink":
            self._new(node, "sink")
        elif kind == "collect":
            self._new(node, "collect")
        else:
            raise TopologyError(f"no operator '{kind}'")
        if kind == "with_timestamps" and self.segment_of[node].kind != "spout":
            raise TopologyError(
                f"with_timestamps '{node.label()}' must come before the first exchange (key_by's "
                "operator, rebalance, broadcast, a change of parallelism): event time starts at "
                "the source"
            )

    def _new(self, node: Node, kind: str) -> None:
        segment = Segment(node, kind, self.parallelism[node], [node])
        self.segments.append(segment)
        self.segment_of[node] = segment

    def _join(self, node: Node, upstream: Node) -> None:
        segment = self.segment_of[upstream]
        segment.members.append(node)
        self.segment_of[node] = segment

    def _connect(self, source: Node, target: Node, port: int) -> None:
        edge = Edge(source, target, port)
        kind = target.kind
        same = self.parallelism[source] == self.parallelism[target]
        timed = source.timestamped
        if kind in KEYED:
            edge.grouping = Grouping.fields("key")
            edge.wire = "keyed_ts" if timed else "keyed"
            if kind in COMBINABLE:
                edge.wire, edge.combine = "partial", "count" if kind == "count_final" else "reduce"
        elif kind == "broadcast":
            edge.grouping = Grouping("ALL")
            edge.wire = "items_ts" if timed else "items"
        elif kind == "rebalance":
            edge.wire = "items_ts" if timed else "items"
        else:  # a union, a change of parallelism, a sink, collect
            edge.grouping = Grouping("FORWARD" if same else "SHUFFLE")
            if kind == "sink":
                edge.wire = "rows_ts" if timed else "rows"
            elif kind != "collect":
                edge.wire = "items_ts" if timed else "items"
        self.segment_of[source].exits.append(edge)
        self.segment_of[target].inputs.append(edge)

    def _name(self) -> None:
        for segment in self.segments:
            names = [m.label() for m in segment.members if m.kind != "port"]
            joined = ".".join(names)
            if len(joined) > MAX_ID:
                joined = f"{names[0]}.{names[-1]}"
            segment.id = joined if len(joined) <= MAX_ID else names[0]
        seen: dict[str, Node] = {}
        for segment in self.segments:
            if segment.id in seen:
                raise TopologyError(
                    f"two operators of flow '{self.flow.name}' are named '{segment.id}'; give "
                    "one of them another name="
                )
            seen[segment.id] = segment.head
        for segment in self.segments:
            used: set[str] = set()
            for edge in segment.exits:
                stream = f"to-{self.segment_of[edge.target].id}"
                if stream in used:
                    stream = f"{stream}.{edge.source.label()}"
                used.add(stream)
                edge.stream = stream

    # -------------------------------------------------------------- programs
    def program(self, segment: Segment) -> Any:
        """What a fused component runs (:class:`rayflow.streams.operators.Program`)."""
        from rayflow.streams.operators import Program

        members = segment.members
        position = {node: i for i, node in enumerate(members)}
        steps: list[Step] = []
        exits_of: dict[Node, list[Edge]] = {}
        for edge in segment.exits:
            exits_of.setdefault(edge.source, []).append(edge)
        extra = len(members)
        exit_steps: list[Step] = []
        watermarks: dict[int, int] = {}
        for i, node in enumerate(members):
            consumers = [position[c] for c in self.consumers.get(node, ()) if c in position]
            for edge in exits_of.get(node, []):
                consumers.append(extra + len(exit_steps))
                params: dict[str, Any] = {"stream": edge.stream, "wire": edge.wire}
                if edge.combine is not None:
                    params.update(combine=edge.combine, combine_fn=edge.target.fn)
                exit_steps.append(Step("exit", f"{node.label()} -> {edge.stream}", None, params))
            params = dict(node.params)
            if node.kind == "process":
                params["timestamped"] = node.inputs[0].timestamped
            if node.kind == "with_timestamps":
                watermarks[i] = node.params["max_out_of_orderness"]
            steps.append(Step(node.kind, node.label(), node.fn, params, tuple(consumers)))
        inputs = {
            (self.segment_of[edge.source].id, edge.stream): (edge.port, edge.wire)
            for edge in segment.inputs
        }
        return Program(segment.id, tuple(steps + exit_steps), inputs, watermarks)

    # ----------------------------------------------------------------- views
    def explain(self) -> str:
        """The plan in words (``rayflow validate`` prints it)."""
        lines = [f"flow '{self.flow.name}': {len(self.segments)} components"]
        for segment in self.segments:
            chain = " -> ".join(m.label() for m in segment.members if m.kind != "port")
            lines.append(f"  {segment.id}  x{segment.parallelism}  {_role(segment)}: {chain}")
            for edge in segment.exits:
                grouping = edge.grouping.type
                if edge.grouping.fields_:
                    grouping += f"({', '.join(edge.grouping.fields_)})"
                combined = ", combined per batch" if edge.combine else ""
                target = self.segment_of[edge.target].id
                lines.append(f"      -> {target}  {grouping}{combined}")
        return "\n".join(lines)


def _role(segment: Segment) -> str:
    if segment.kind == "sink":
        return f"bolt ({segment.head.params['cls'].__qualname__})"
    return "spout" if segment.kind == "spout" else "bolt"


def compile_flow(flow: Flow) -> Topology:
    """The topology of a flow (see module docstring): validated, functions checked to pickle."""
    from rayflow.api.topology import Topology
    from rayflow.streams.operators import CollectBolt, FlowBolt, FlowSpout, Packed

    plan = Plan(flow)
    dumps = _pickler()
    try:
        settings, _extra = Settings.from_config(flow.config)
    except SettingError as exc:
        raise TopologyError(f"flow '{flow.name}': config {exc}") from None
    exactly_once = settings.reliability == Reliability.EXACTLY_ONCE
    topology = Topology(flow.name, flow.config)
    for segment in plan.segments:
        head = segment.head
        outputs = {edge.stream: edge.fields for edge in segment.exits}
        # What the UI and `rayflow status` show of a fused component: its operators, in order.
        shown = {"flow.operators": [m.label() for m in segment.members if m.kind != "port"]}
        if segment.kind == "sink":
            p = head.params
            declarer = topology.bolt(
                segment.id, p["cls"], segment.parallelism, p["args"], p["kwargs"],
                p["resources"], {**p["config"], **shown},
            )  # fmt: skip
        elif segment.kind == "collect":
            declarer = topology.bolt(segment.id, CollectBolt, segment.parallelism, config=shown)
        else:
            program = plan.program(segment)
            _check_pickles(program, segment, dumps)
            packed = Packed(program)
            params = head.params
            if segment.kind == "spout":
                if exactly_once and head.kind == "source":
                    _check_rewinds(head)
                topology.spout(
                    segment.id,
                    FlowSpout,
                    segment.parallelism,
                    args=(packed,),
                    resources=params.get("resources"),
                    config={**params.get("config", {}), **shown},
                    outputs=outputs,
                )
                continue
            declarer = topology.bolt(
                segment.id,
                FlowBolt,
                segment.parallelism,
                args=(packed,),
                config=shown,
                outputs=outputs,
            )
        for edge in segment.inputs:
            declarer._subscribe(plan.segment_of[edge.source].id, edge.grouping, edge.stream)
    return topology


def _pickler() -> Callable[[Any], bytes]:
    # Ray's cloudpickle takes lambdas and closures by value (Ray ships the spec with it too).
    from ray import cloudpickle

    return cloudpickle.dumps  # type: ignore[no-any-return]


def _check_pickles(program: Any, segment: Segment, dumps: Callable[[Any], bytes]) -> None:
    """Every user function of a component can travel to its tasks; the error names the one that
    cannot, before anything starts."""
    for step in program.steps:
        for what, value in [("fn", step.fn), *step.params.items()]:
            if not callable(value) and not isinstance(value, type):
                continue
            try:
                dumps(value)
            except Exception as exc:
                raise TopologyError(
                    f"{step.kind} '{step.name}' (in component '{segment.id}'): its {what} "
                    f"{value!r} cannot be pickled to travel to the tasks ({exc}); define it at "
                    "module level, or keep what it closes over picklable"
                ) from None


def _check_rewinds(head: Node) -> None:
    from rayflow.api.components import rewindable, unrewindable

    cls = head.params["cls"]
    if not rewindable(cls):
        raise TopologyError(unrewindable(head.label(), f"{cls.__module__}.{cls.__qualname__}"))
