"""The validated description of a topology that every layer below consumes.

The Python builder (:class:`rayflow.Topology`) and the YAML loader both produce a
:class:`TopologySpec`; its constructor checks it once (unique ids, known sources, declared streams,
grouping fields, no cycles, names safe in paths and URLs, constructor arguments the class can
take), so a spec that exists is a spec that can run.

>>> spout = ComponentSpec("words", "spout", ClassRef.of(object), outputs={"default": ("word",)})
>>> sink = ComponentSpec("sink", "bolt", ClassRef.of(object))
>>> spec = TopologySpec("t", (spout, sink), (StreamSpec("words", "sink", Grouping.fields("word")),))
>>> spec.component("sink").kind, spec.downstream("words")[0].grouping.type
('bolt', 'FIELDS')
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rayflow.errors import TopologyError
from rayflow.spec.settings import Settings
from rayflow.spec.state_settings import STORE_KEYS, StoreSettings
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
    "FORWARD",
)
_KEYED = ("FIELDS", "PARTIAL_KEY")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SYSTEM_PREFIX = "__"  # ids of rayflow's own components (the acker), never of the user's


@dataclass(frozen=True)
class Origin:
    """Where a piece of a spec was written: file and line (YAML), or nothing (Python).

    ``key_lines`` holds the line of each key of the map (``"to"``, ``"grouping.args"``), so an
    error can point at the key itself with :meth:`of`.
    """

    file: str = ""
    line: int = 0
    key: str = ""
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)

    def prefix(self) -> str:
        """``"topo.yaml:12: key 'bolts[0].className': "`` or ``""``."""
        if not self.file:
            return f"key '{self.key}': " if self.key else ""
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: key '{self.key}': " if self.key else f"{where}: "

    def of(self, key: str) -> Origin:
        """Where ``key`` (or, when it is not written, its nearest written parent) of this map is.

        >>> at = Origin("t.yaml", 9, "streams[0]", (("to", 10), ("grouping", 11)))
        >>> at.of("to").prefix(), at.of("grouping.streamId").prefix()
        ("t.yaml:10: key 'streams[0].to': ", "t.yaml:11: key 'streams[0].grouping': ")
        >>> at.of("name").prefix(), Origin().of("to").prefix()
        ("t.yaml:9: key 'streams[0]': ", '')
        """
        lines = dict(self.key_lines)
        probe = key
        while probe:
            if probe in lines:
                path = f"{self.key}.{probe}" if self.key else probe
                return Origin(self.file, lines[probe], path)
            probe = probe.rpartition(".")[0]
        return self


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


def name_problem(name: object, what: str, system: bool = False) -> str | None:
    """Why ``name`` cannot name a topology or component, or ``None`` when it can.

    Names become actor names, log file names, checkpoint paths and URL parts, so they are 1 to
    100 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit, without ``..``.
    ``system`` allows rayflow's own ``__`` names.

    >>> name_problem("word-count.v2", "topology") is None
    True
    >>> name_problem("../../x", "topology")  # doctest: +ELLIPSIS
    "topology name '../../x' is not safe in file paths and URLs; use 1 to 100 letters, ..."
    """
    text = name
    if system and isinstance(name, str) and name.startswith(SYSTEM_PREFIX):
        text = name[len(SYSTEM_PREFIX) :]
    if isinstance(text, str) and _SAFE_NAME.fullmatch(text) and ".." not in text:
        return None
    if isinstance(name, str) and name.startswith(SYSTEM_PREFIX) and not system:
        return f"{what} name {name!r} starts with '{SYSTEM_PREFIX}', kept for rayflow's own"
    return (
        f"{what} name {name!r} is not safe in file paths and URLs; use 1 to 100 letters, "
        "digits, '.', '_' or '-', starting with a letter or digit, without '..'"
    )


def arguments_problem(cls: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    """Why ``cls(*args, **kwargs)`` cannot bind to the class's signature, or ``None``.

    Classes without a readable signature (some builtins) are not checked.

    >>> class Sink:
    ...     def __init__(self, path: str, mode: str = "w") -> None: ...
    >>> arguments_problem(Sink, ("out.txt",), {"mode": "a"}) is None
    True
    >>> arguments_problem(Sink, (), {"path": "x", "mdoe": "a"})
    "got an unexpected keyword argument 'mdoe' (did you mean 'mode'?); \
Sink takes (path, mode='w')"
    >>> arguments_problem(dict, (1, 2, 3), {}) is None
    True
    """
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        problem = str(exc)
        unknown = [k for k in kwargs if k not in signature.parameters]
        if "unexpected keyword" in problem and unknown:
            problem += _did_you_mean(unknown[0], signature.parameters)
        bare = signature.replace(
            parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
            return_annotation=signature.empty,
        )
        return f"{problem}; {getattr(cls, '__qualname__', cls)} takes {bare}"
    return None


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
        problem = name_problem(self.name, "topology")
        if problem:
            raise TopologyError(self.origin.of("name").prefix() + problem)
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
        at_id = comp.origin.of("id").prefix()
        if not comp.id or not isinstance(comp.id, str):
            raise TopologyError(f"{at_id}every spout and bolt needs a non-empty string id")
        problem = name_problem(comp.id, comp.kind, comp.class_ref.path.startswith("rayflow."))
        if problem:
            raise TopologyError(at_id + problem)
        if comp.id in seen:
            raise TopologyError(
                f"{at_id}two components are named '{comp.id}'; ids must be unique "
                f"(the first is a {seen[comp.id].kind})"
            )
        if comp.kind not in ("spout", "bolt"):
            raise TopologyError(f"{at}component '{comp.id}' must be a spout or a bolt")
        at_parallelism = comp.origin.of("parallelism").prefix()
        if isinstance(comp.parallelism, bool) or not isinstance(comp.parallelism, int):
            raise TopologyError(
                f"{at_parallelism}parallelism of '{comp.id}' must be an integer, "
                f"got {comp.parallelism!r}"
            )
        self._validate_arguments(comp)
        window = comp.config.get("window") or getattr(comp.class_ref.cls, "window", None)
        if window is not None and comp.kind == "bolt":
            at_window = comp.origin.of("window").prefix()
            try:
                late = WindowSpec.parse(window).late_stream
            except WindowError as exc:
                raise TopologyError(f"{at_window}bolt '{comp.id}': {exc}") from None
            if late and late not in comp.outputs:
                raise TopologyError(
                    f"{at_window}bolt '{comp.id}': window.late_stream '{late}' is not declared "
                    f"in its outputs (declared: {', '.join(comp.outputs)})"
                )
        for key in STORE_KEYS:
            if comp.config.get(key) is not None:
                try:
                    StoreSettings.from_config({key: comp.config[key]})
                except ValueError as exc:
                    at_key = comp.origin.of(f"config.{key}").prefix()
                    raise TopologyError(f"{at_key}component '{comp.id}': {exc}") from None
        if not 1 <= comp.parallelism <= self.settings.max_parallelism:
            raise TopologyError(
                f"{at_parallelism}parallelism of '{comp.id}' must be between 1 and "
                f"max_parallelism ({self.settings.max_parallelism}), got {comp.parallelism}"
            )

    @staticmethod
    def _validate_arguments(comp: ComponentSpec) -> None:
        """The component's args and kwargs fit its class's signature (when the class is here)."""
        cls = comp.class_ref.cls
        problem = None if cls is None else arguments_problem(cls, comp.args, comp.kwargs)
        if problem is None:
            return
        unknown = [k for k in comp.kwargs if f"argument '{k}'" in problem]
        if unknown:
            key = f"kwargs.{unknown[0]}"
        elif "positional" in problem or (comp.args and not comp.kwargs):
            key = "constructorArgs"
        else:
            key = "kwargs" if comp.kwargs else "className"
        raise TopologyError(
            f"{comp.origin.of(key).prefix()}{comp.kind} '{comp.id}': class "
            f"'{comp.class_ref.path}' cannot be created with these arguments: {problem}"
        )

    def _validate_stream(self, stream: StreamSpec, comps: Mapping[str, ComponentSpec]) -> None:
        of = stream.origin.of
        for role, name in (("from", stream.source), ("to", stream.target)):
            if name not in comps:
                known = ", ".join(sorted(comps))
                hint = _did_you_mean(name, comps)
                raise TopologyError(
                    f"{of(role).prefix()}stream {role} unknown component '{name}'{hint} "
                    f"(known: {known})"
                )
        if comps[stream.target].kind == "spout":
            raise TopologyError(
                f"{of('to').prefix()}'{stream.target}' is a spout; spouts cannot subscribe"
            )
        source = comps[stream.source]
        if stream.stream not in source.outputs:
            declared = ", ".join(sorted(source.outputs)) or "none"
            raise TopologyError(
                f"{of('grouping.streamId').prefix()}'{stream.source}' does not declare stream "
                f"'{stream.stream}' (it declares: {declared}); add it to the class's outputs"
            )
        grouping = stream.grouping
        at = of("grouping.type").prefix()
        if grouping.type not in GROUPING_TYPES:
            raise TopologyError(
                f"{at}unknown grouping '{grouping.type}'; expected one of "
                f"{', '.join(GROUPING_TYPES)}"
            )
        at = of("grouping.args").prefix()
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
        target = comps[stream.target]
        if grouping.type == "FORWARD" and source.parallelism != target.parallelism:
            raise TopologyError(
                f"{of('grouping.type').prefix()}a FORWARD grouping sends task i of "
                f"'{source.id}' to task i of '{target.id}', so both need the same parallelism "
                f"('{source.id}' has {source.parallelism}, '{target.id}' has "
                f"{target.parallelism}); make them equal or use SHUFFLE"
            )
        at = of("grouping.customClass").prefix()
        if grouping.type == "CUSTOM" and grouping.custom is None and grouping.custom_object is None:
            raise TopologyError(f"{at}CUSTOM grouping needs a customClass")
        custom = grouping.custom
        if grouping.custom_object is None and custom is not None and custom.cls is not None:
            problem = arguments_problem(custom.cls, grouping.custom_args, {})
            if problem:
                raise TopologyError(
                    f"{at}custom grouping '{custom.path}' cannot be created with these "
                    f"arguments: {problem}"
                )

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
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
