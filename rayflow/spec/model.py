"""The validated description of a topology that every layer below consumes.

The Python builder (:class:`rayflow.Topology`) and the YAML loader both produce a
:class:`TopologySpec`; its constructor checks it once (unique ids, known sources, declared streams,
grouping fields, no cycles), so a spec that exists is a spec that can run.

>>> spout = ComponentSpec("words", "spout", ClassRef.of(object), outputs={"default": ("word",)})
>>> sink = ComponentSpec("sink", "bolt", ClassRef.of(object))
>>> spec = TopologySpec("t", (spout, sink), (StreamSpec("words", "sink", Grouping.fields("word")),))
>>> spec.component("sink").kind, spec.downstream("words")[0].grouping.type
('bolt', 'FIELDS')
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rayflow.errors import TopologyError
from rayflow.spec.settings import Settings
from rayflow.spec.windows import WindowError, WindowSpec

DEFAULT_STREAM = "default"
GROUPING_TYPES = (
    "SHUFFLE",
    "FIELDS",
    "ALL",
    "GLOBAL",
    "DIRECT",
    "LOCAL_OR_SHUFFLE",
    "PARTIAL_KEY",
    "NONE",
    "CUSTOM",
)
_KEYED = ("FIELDS", "PARTIAL_KEY")


@dataclass(frozen=True)
class Origin:
    """Where a piece of a spec was written: file and line (YAML), or nothing (Python)."""

    file: str = ""
    line: int = 0
    key: str = ""

    def prefix(self) -> str:
        """``"topo.yaml:12: key 'bolts[0].className': "`` or ``""``."""
        if not self.file:
            return f"key '{self.key}': " if self.key else ""
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: key '{self.key}': " if self.key else f"{where}: "


@dataclass(frozen=True)
class ClassRef:
    """A user class, by object and by dotted path (so YAML and Python specs look alike).

    >>> ClassRef.of(dict).path
    'builtins.dict'
    """

    path: str
    cls: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, obj: type) -> ClassRef:
        return cls(f"{obj.__module__}.{obj.__qualname__}", obj)

    def load(self) -> type:
        """The class itself, importing it by its dotted path when needed."""
        if self.cls is not None:
            return self.cls
        return import_class(self.path)


def import_class(path: str) -> type:
    """Import ``package.module.Class``; raises ``ImportError`` saying what was missing."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ImportError(f"'{path}' is not a dotted path such as 'package.module.ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module '{module_name}' for '{path}': {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"module '{module_name}' has no attribute '{attr}'") from None
    return obj


@dataclass(frozen=True)
class Grouping:
    """How a stream's tuples are spread over the tasks of the bolt that subscribes to it.

    >>> Grouping.fields("word", "lang").fields_
    ('word', 'lang')
    """

    type: str = "SHUFFLE"
    fields_: tuple[str, ...] = ()
    custom: ClassRef | None = None
    custom_args: tuple[Any, ...] = ()
    custom_object: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def fields(cls, *names: str) -> Grouping:
        return cls("FIELDS", tuple(names))

    @property
    def keyed(self) -> bool:
        return self.type in _KEYED

    def make_custom(self) -> Any:
        """A fresh custom grouping object (``choose_tasks(values, num_tasks)``)."""
        if self.custom_object is not None:
            return self.custom_object
        assert self.custom is not None
        return self.custom.load()(*self.custom_args)


@dataclass(frozen=True)
class StreamSpec:
    """A subscription: ``target`` reads ``stream`` of ``source`` with ``grouping``."""

    source: str
    target: str
    grouping: Grouping = Grouping()
    stream: str = DEFAULT_STREAM
    origin: Origin = field(default=Origin(), compare=False)


@dataclass(frozen=True)
class ComponentSpec:
    """One spout or bolt: its id, class, parallelism and arguments."""

    id: str
    kind: str  # "spout" or "bolt"
    class_ref: ClassRef
    parallelism: int = 1
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    origin: Origin = field(default=Origin(), compare=False)

    def __post_init__(self) -> None:
        for name in ("kwargs", "config", "resources", "outputs"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def __reduce__(self):  # MappingProxyType does not pickle; rebuild from plain dicts
        return (
            ComponentSpec,
            (
                self.id,
                self.kind,
                self.class_ref,
                self.parallelism,
                self.args,
                dict(self.kwargs),
                dict(self.config),
                dict(self.resources),
                dict(self.outputs),
                self.origin,
            ),
        )

    def instantiate(self) -> Any:
        return self.class_ref.load()(*self.args, **self.kwargs)


def normalize_outputs(declared: Any, where: str) -> dict[str, tuple[str, ...]]:
    """A class's ``outputs`` attribute as ``{stream: (field, ...)}``.

    >>> normalize_outputs(["word"], "x")
    {'default': ('word',)}
    >>> normalize_outputs({"default": ["a"], "errors": ["e"]}, "x")["errors"]
    ('e',)
    """
    if declared is None:
        return {DEFAULT_STREAM: ()}
    if isinstance(declared, str):
        raise TopologyError(f"{where}: outputs must be a list of field names, got {declared!r}")
    if isinstance(declared, Mapping):
        result = {}
        for stream, names in declared.items():
            result[str(stream)] = _field_names(names, f"{where} stream '{stream}'")
        return result
    return {DEFAULT_STREAM: _field_names(declared, where)}


def _field_names(names: Any, where: str) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise TopologyError(f"{where}: outputs must be a list of field names, got {names!r}")
    result = tuple(names)
    if not all(isinstance(n, str) for n in result):
        raise TopologyError(f"{where}: outputs must be a list of field names, got {names!r}")
    return result


@dataclass(frozen=True)
class TopologySpec:
    """A whole topology, checked when it is built."""

    name: str
    components: tuple[ComponentSpec, ...]
    streams: tuple[StreamSpec, ...]
    settings: Settings = Settings()  # noqa: RUF009 (frozen, so one shared default is safe)
    config: Mapping[str, Any] = field(default_factory=dict)
    origin: Origin = field(default=Origin(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", dict(self.config))
        self._validate()

    # ----------------------------------------------------------------- queries
    def component(self, component_id: str) -> ComponentSpec:
        for comp in self.components:
            if comp.id == component_id:
                return comp
        raise KeyError(component_id)

    @property
    def spouts(self) -> list[ComponentSpec]:
        return [c for c in self.components if c.kind == "spout"]

    @property
    def bolts(self) -> list[ComponentSpec]:
        return [c for c in self.components if c.kind == "bolt"]

    def downstream(self, component_id: str) -> list[StreamSpec]:
        return [s for s in self.streams if s.source == component_id]

    def upstream(self, component_id: str) -> list[StreamSpec]:
        return [s for s in self.streams if s.target == component_id]

    def component_config(self, component_id: str) -> dict[str, Any]:
        """The config a task sees: the topology's (settings included), then the component's."""
        merged = {**self.settings.as_config(), **self.config}
        merged.update(self.component(component_id).config)
        return merged

    def topological_order(self) -> list[str]:
        """Component ids, every source before its targets."""
        incoming = {c.id: 0 for c in self.components}
        for s in {(s.source, s.target) for s in self.streams}:
            incoming[s[1]] += 1
        ready = [c.id for c in self.components if incoming[c.id] == 0]
        order: list[str] = []
        edges = sorted({(s.source, s.target) for s in self.streams})
        while ready:
            node = ready.pop(0)
            order.append(node)
            for source, target in edges:
                if source == node:
                    incoming[target] -= 1
                    if incoming[target] == 0:
                        ready.append(target)
        return order

    # -------------------------------------------------------------- validation
    def _validate(self) -> None:
        where = self.origin.prefix()
        if not self.name or not isinstance(self.name, str):
            raise TopologyError(f"{where}a topology needs a non-empty name")
        if not self.components:
            raise TopologyError(f"{where}topology '{self.name}' has no spouts or bolts")
        if not self.spouts:
            raise TopologyError(f"{where}topology '{self.name}' has no spout")
        seen: dict[str, ComponentSpec] = {}
        for comp in self.components:
            self._validate_component(comp, seen)
            seen[comp.id] = comp
        for stream in self.streams:
            self._validate_stream(stream, seen)
        fed = {s.target for s in self.streams}
        for comp in self.bolts:
            if comp.id not in fed:
                raise TopologyError(
                    f"{comp.origin.prefix()}bolt '{comp.id}' subscribes to nothing; add a stream "
                    f"to it (for example from '{self.spouts[0].id}')"
                )
        self._reject_cycles()

    def _validate_component(self, comp: ComponentSpec, seen: Mapping[str, ComponentSpec]) -> None:
        at = comp.origin.prefix()
        if not comp.id or not isinstance(comp.id, str):
            raise TopologyError(f"{at}every spout and bolt needs a non-empty string id")
        if comp.id in seen:
            raise TopologyError(
                f"{at}two components are named '{comp.id}'; ids must be unique "
                f"(the first is a {seen[comp.id].kind})"
            )
        if comp.kind not in ("spout", "bolt"):
            raise TopologyError(f"{at}component '{comp.id}' must be a spout or a bolt")
        if isinstance(comp.parallelism, bool) or not isinstance(comp.parallelism, int):
            raise TopologyError(
                f"{at}parallelism of '{comp.id}' must be an integer, got {comp.parallelism!r}"
            )
        window = comp.config.get("window") or getattr(comp.class_ref.cls, "window", None)
        if window is not None and comp.kind == "bolt":
            try:
                late = WindowSpec.parse(window).late_stream
            except WindowError as exc:
                raise TopologyError(f"{at}bolt '{comp.id}': {exc}") from None
            if late and late not in comp.outputs:
                raise TopologyError(
                    f"{at}bolt '{comp.id}': window.late_stream '{late}' is not declared in its "
                    f"outputs (declared: {', '.join(comp.outputs)})"
                )
        if not 1 <= comp.parallelism <= self.settings.max_parallelism:
            raise TopologyError(
                f"{at}parallelism of '{comp.id}' must be between 1 and max_parallelism "
                f"({self.settings.max_parallelism}), got {comp.parallelism}"
            )

    def _validate_stream(self, stream: StreamSpec, comps: Mapping[str, ComponentSpec]) -> None:
        at = stream.origin.prefix()
        for role, name in (("from", stream.source), ("to", stream.target)):
            if name not in comps:
                known = ", ".join(sorted(comps))
                hint = _did_you_mean(name, comps)
                raise TopologyError(
                    f"{at}stream {role} unknown component '{name}'{hint} (known: {known})"
                )
        if comps[stream.target].kind == "spout":
            raise TopologyError(f"{at}'{stream.target}' is a spout; spouts cannot subscribe")
        source = comps[stream.source]
        if stream.stream not in source.outputs:
            declared = ", ".join(sorted(source.outputs)) or "none"
            raise TopologyError(
                f"{at}'{stream.source}' does not declare stream '{stream.stream}' "
                f"(it declares: {declared}); add it to the class's outputs"
            )
        grouping = stream.grouping
        if grouping.type not in GROUPING_TYPES:
            raise TopologyError(
                f"{at}unknown grouping '{grouping.type}'; expected one of "
                f"{', '.join(GROUPING_TYPES)}"
            )
        if grouping.keyed:
            if not grouping.fields_:
                raise TopologyError(
                    f"{at}{grouping.type} grouping needs the key field names as args"
                )
            fields = source.outputs[stream.stream]
            missing = [f for f in grouping.fields_ if f not in fields]
            if missing:
                raise TopologyError(
                    f"{at}{grouping.type} grouping on {missing} but stream '{stream.stream}' of "
                    f"'{stream.source}' has fields {list(fields)}"
                )
        if grouping.type == "CUSTOM" and grouping.custom is None and grouping.custom_object is None:
            raise TopologyError(f"{at}CUSTOM grouping needs a customClass")

    def _reject_cycles(self) -> None:
        if len(self.topological_order()) != len(self.components):
            ordered = set(self.topological_order())
            stuck = sorted(c.id for c in self.components if c.id not in ordered)
            stream = next(s for s in self.streams if s.target in stuck and s.source in stuck)
            raise TopologyError(
                f"{stream.origin.prefix()}the streams form a cycle through {stuck}; "
                "topologies must be acyclic"
            )


def _did_you_mean(name: str, options: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
