"""The Python way to describe a topology; it builds the same :class:`TopologySpec` as the YAML.

>>> from rayflow.testing import TestingSpout, ListSink
>>> class Upper(Bolt):
...     outputs = ["word"]
...     def process(self, tup):
...         self.emit([tup[0].upper()])
>>> t = Topology("demo")
>>> _ = t.spout("words", TestingSpout, args=(["a", "b"],))
>>> _ = t.bolt("upper", Upper, parallelism=2).shuffle("words")
>>> _ = t.bolt("sink", ListSink).global_("upper")
>>> [c.id for c in t.build().components]
['words', 'upper', 'sink']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rayflow.api.components import Bolt, Spout
from rayflow.errors import TopologyError
from rayflow.spec.model import (
    DEFAULT_STREAM,
    ClassRef,
    ComponentSpec,
    Grouping,
    StreamSpec,
    TopologySpec,
    normalize_outputs,
)
from rayflow.spec.settings import SettingError, Settings

if TYPE_CHECKING:
    from rayflow.api.result import RunResult


class BoltDeclarer:
    """Returned by :meth:`Topology.bolt`; each method subscribes the bolt to a source's stream."""

    def __init__(self, topology: Topology, bolt_id: str) -> None:
        self._topology = topology
        self._id = bolt_id

    def _subscribe(self, source: str, grouping: Grouping, stream: str) -> BoltDeclarer:
        self._topology._streams.append(StreamSpec(source, self._id, grouping, stream))
        return self

    def shuffle(self, source: str, stream: str = DEFAULT_STREAM) -> BoltDeclarer:
        """Tuples spread evenly over the bolt's tasks."""
        return self._subscribe(source, Grouping("SHUFFLE"), stream)

    def fields(self, source: str, *fields: str, stream: str = DEFAULT_STREAM) -> BoltDeclarer:
        """Tuples with equal values of ``fields`` go to the same task."""
        return self._subscribe(source, Grouping("FIELDS", tuple(fields)), stream)

    def all(self, source: str, stream: str = DEFAULT_STREAM) -> BoltDeclarer:
        """Every tuple to every task."""
        return self._subscribe(source, Grouping("ALL"), stream)

    def global_(self, source: str, stream: str = DEFAULT_STREAM) -> BoltDeclarer:
        """Every tuple to the task with the lowest index."""
        return self._subscribe(source, Grouping("GLOBAL"), stream)

    def direct(self, source: str, stream: str = DEFAULT_STREAM) -> BoltDeclarer:
        """The emitter picks the task with ``emit_direct``."""
        return self._subscribe(source, Grouping("DIRECT"), stream)

    def local_or_shuffle(self, source: str, stream: str = DEFAULT_STREAM) -> BoltDeclarer:
        """Prefer tasks on the emitter's Ray node; shuffle among them."""
        return self._subscribe(source, Grouping("LOCAL_OR_SHUFFLE"), stream)

    def partial_key(self, source: str, *fields: str, stream: str = DEFAULT_STREAM) -> BoltDeclarer:
        """Each key goes to the less loaded of two candidate tasks (skew-resistant)."""
        return self._subscribe(source, Grouping("PARTIAL_KEY", tuple(fields)), stream)

    def custom(self, source: str, grouping: Any, stream: str = DEFAULT_STREAM) -> BoltDeclarer:
        """``grouping.choose_tasks(values, num_tasks) -> list[int]`` picks the tasks."""
        if not callable(getattr(grouping, "choose_tasks", None)):
            raise TopologyError(
                f"bolt '{self._id}': a custom grouping needs a choose_tasks(values, num_tasks) "
                f"method; {grouping!r} has none"
            )
        ref = ClassRef.of(type(grouping))
        return self._subscribe(source, Grouping("CUSTOM", (), ref, (), grouping), stream)

    def forward(self, source: str, stream: str = DEFAULT_STREAM) -> BoltDeclarer:
        """Task i of ``source`` to task i of this bolt (Flink's forward edge; both need the same
        parallelism): no shuffle, and the order of each task's tuples is kept."""
        return self._subscribe(source, Grouping("FORWARD"), stream)

    def none(self, source: str, stream: str = DEFAULT_STREAM) -> BoltDeclarer:
        """No preference (Storm's NONE): shuffled."""
        return self._subscribe(source, Grouping("NONE"), stream)


class Topology:
    """A graph of spouts and bolts, built in Python or loaded from YAML."""

    def __init__(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.config = dict(config or {})
        self._components: list[ComponentSpec] = []
        self._streams: list[StreamSpec] = []
        self._spec: TopologySpec | None = None

    @classmethod
    def from_yaml(
        cls,
        path: str | os.PathLike[str],
        variables: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Topology:
        """Load a Flux-style YAML file (see ``examples/wordcount.yaml``)."""
        from rayflow.spec.yaml_loader import load_topology

        spec = load_topology(path, variables=variables, overrides=overrides)
        return cls.from_spec(spec)

    @classmethod
    def from_spec(cls, spec: TopologySpec) -> Topology:
        topology = cls(spec.name, spec.config)
        topology._spec = spec
        return topology

    def spout(
        self,
        component_id: str,
        cls: type[Spout],
        parallelism: int = 1,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        outputs: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    ) -> Topology:
        """Add a spout; returns the topology. ``outputs`` declares this instance's streams
        instead of the class's ``outputs`` (Storm's ``declareOutputFields`` per instance)."""
        self._add("spout", component_id, cls, parallelism, args, kwargs, resources, config, outputs)
        return self

    def bolt(
        self,
        component_id: str,
        cls: type[Bolt],
        parallelism: int = 1,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        outputs: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    ) -> BoltDeclarer:
        """Add a bolt; subscribe it with the returned declarer (``.shuffle("src")``...);
        ``outputs`` as for :meth:`spout`."""
        self._add("bolt", component_id, cls, parallelism, args, kwargs, resources, config, outputs)
        return BoltDeclarer(self, component_id)

    def _add(
        self,
        kind: str,
        component_id: str,
        cls: type,
        parallelism: int,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        resources: Mapping[str, Any] | None,
        config: Mapping[str, Any] | None,
        declared: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if self._spec is not None:
            raise TopologyError(f"topology '{self.name}' was loaded from a spec; it is frozen")
        base = Spout if kind == "spout" else Bolt
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TopologyError(
                f"{kind} '{component_id}': {cls!r} is not a subclass of rayflow.{base.__name__}"
            )
        for existing in self._components:
            if existing.id == component_id:
                raise TopologyError(
                    f"two components are named '{component_id}'; ids must be unique"
                )
        outputs = normalize_outputs(
            cls.outputs if declared is None else declared,
            f"{kind} '{component_id}' ({cls.__qualname__})",
        )
        self._components.append(
            ComponentSpec(
                component_id,
                kind,
                ClassRef.of(cls),
                parallelism,
                tuple(args),
                dict(kwargs or {}),
                dict(config or {}),
                dict(resources or {}),
                outputs,
            )
        )

    def build(self, overrides: Mapping[str, Any] | None = None) -> TopologySpec:
        """The validated spec (raises :class:`TopologyError` naming what is wrong)."""
        if self._spec is not None and not overrides:
            return self._spec
        if self._spec is not None:
            overrides = {Settings.canonical_key(k): v for k, v in overrides.items()}
            config = {**self._spec.config, **self._spec.settings.as_config(), **overrides}
            components, streams = self._spec.components, self._spec.streams
        else:
            given = {Settings.canonical_key(k): v for k, v in (overrides or {}).items()}
            config = {**self.config, **given}
            components, streams = tuple(self._components), tuple(self._streams)
        try:
            settings, extra = Settings.from_config(config)
        except SettingError as exc:
            raise TopologyError(f"topology '{self.name}': config {exc}") from None
        return TopologySpec(self.name, tuple(components), tuple(streams), settings, extra)

    def run(
        self,
        duration: float | str | None = None,
        address: str | None = None,
        progress: bool = False,
        overrides: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run on Ray (embedded unless ``address`` names a cluster) until the end or ``duration``.

        A bounded topology returns when every task has finished; an unbounded one needs a
        ``duration`` (``"30s"``) and then finishes gracefully (spouts stop, cleanup runs).
        """
        from rayflow.launchers.embedded import run_topology

        return run_topology(self.build(overrides), duration, address=address, progress=progress)
