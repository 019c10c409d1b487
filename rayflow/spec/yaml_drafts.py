"""Check one spout, bolt or stream of a topology YAML file and keep it as a draft.

Drafts hold what the file says, checked for keys and types, before any class is imported (an
included component that gets overridden is never imported). :mod:`rayflow.spec.yaml_loader`
merges the drafts of all files and builds the :class:`~rayflow.spec.model.TopologySpec`.

>>> from rayflow.spec.yaml_source import parse_yaml
>>> data = parse_yaml("{from: a, to: b, grouping: {type: fields, args: [k]}}", "t.yaml")
>>> draft = stream_draft(Section("t.yaml", data, "streams[0]"))
>>> draft.grouping, draft.fields, draft.origin.prefix()
('FIELDS', ('k',), "t.yaml:1: key 'streams[0]': ")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rayflow.spec.model import DEFAULT_STREAM, GROUPING_TYPES, Origin
from rayflow.spec.windows import WindowError, WindowSpec
from rayflow.spec.yaml_source import LineDict, Section, describe, did_you_mean, plain

_COMPONENT_KEYS = (
    "id",
    "className",
    "parallelism",
    "constructorArgs",
    "kwargs",
    "config",
    "resources",
    "window",
)
_STREAM_KEYS = ("name", "from", "to", "grouping")
_GROUPING_KEYS = ("type", "args", "streamId", "customClass")
_CUSTOM_KEYS = ("className", "constructorArgs")
_RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources", "accelerator_type")
_KEYED = ("FIELDS", "PARTIAL_KEY")
CLASS_EXPECTED = "a dotted Python path such as 'package.module.ClassName'"


@dataclass
class ComponentDraft:
    """A spout or bolt as written, checked but with its class not imported yet."""

    id: str
    kind: str
    class_path: str
    parallelism: int
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    config: dict[str, Any]
    resources: dict[str, Any]
    origin: Origin
    class_origin: Origin


@dataclass
class StreamDraft:
    """A stream as written, its grouping checked; a custom grouping class not imported yet."""

    source: str
    target: str
    stream: str
    grouping: str
    fields: tuple[str, ...]
    custom_path: str | None
    custom_args: tuple[Any, ...]
    origin: Origin
    custom_origin: Origin


def component_draft(sec: Section, kind: str) -> ComponentDraft:
    """Check a spout (``kind`` "spout") or bolt map: keys, id, className and value types."""
    sec.check_keys(
        _COMPONENT_KEYS, {"id": f"the {kind}'s id (a string)", "className": CLASS_EXPECTED}
    )
    component_id = sec.text("id")
    class_path = sec.text("className")
    assert component_id is not None and class_path is not None
    kwargs = sec.section("kwargs")
    for name in kwargs.data:
        if not name.isidentifier():
            kwargs.fail(name, f"expected a Python identifier as a keyword argument, got {name!r}")
    return ComponentDraft(
        id=component_id,
        kind=kind,
        class_path=class_path,
        parallelism=sec.positive_int("parallelism", 1),
        args=tuple(plain(sec.items("constructorArgs"))),
        kwargs=plain(kwargs.data),
        config=_config_with_window(sec),
        resources=_resources(sec.section("resources")),
        origin=sec.origin(nested=("kwargs",)),
        class_origin=sec.origin("className"),
    )


def _config_with_window(sec: Section) -> dict[str, Any]:
    """The component's ``config``; a ``window`` map (windowed bolts) is checked and joins it."""
    config = plain(sec.section("config").data)
    if "window" in sec.data:
        window = sec.section("window")
        try:
            WindowSpec.parse(plain(window.data))
        except WindowError as exc:
            where = window if exc.key in window.data else sec
            where.fail(exc.key if exc.key in window.data else "window", str(exc))
        config["window"] = plain(window.data)
    return config


def _resources(sec: Section) -> dict[str, Any]:
    sec.check_keys(_RESOURCE_KEYS)
    for key, value in sec.data.items():
        if key == "accelerator_type":
            sec.text(key)
        elif key == "resources":
            custom = sec.section(key)
            for name, amount in custom.data.items():
                _amount(custom, name, amount)
        else:
            _amount(sec, key, value)
    return plain(sec.data)


def _amount(sec: Section, key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        sec.fail(key, f"expected a non-negative number, got {describe(value)}")


def stream_draft(sec: Section) -> StreamDraft:
    """Check a stream map: from, to and the grouping's type, args, streamId and customClass."""
    needs = "the id of a spout or bolt"
    sec.check_keys(_STREAM_KEYS, {"from": needs, "to": needs})
    sec.text("name")
    source, target = sec.text("from"), sec.text("to")
    assert source is not None and target is not None
    grouping = sec.section("grouping")
    grouping.check_keys(_GROUPING_KEYS)
    custom = grouping.data.get("customClass")
    default_type = "SHUFFLE" if custom is None else "CUSTOM"
    kind = (grouping.text("type") or default_type).upper()
    if kind not in GROUPING_TYPES:
        hint = did_you_mean(kind, GROUPING_TYPES)
        grouping.fail(
            "type",
            f"unknown grouping type {grouping.data['type']!r}{hint}; "
            f"expected one of {', '.join(GROUPING_TYPES)}",
        )
    fields = _grouping_fields(grouping, kind)
    custom_path, custom_args = None, ()
    if kind == "CUSTOM":
        if custom is None:
            grouping.fail(
                "customClass",
                "required for a CUSTOM grouping; expected "
                f"{CLASS_EXPECTED} or a map with className and constructorArgs",
            )
        custom_path, custom_args = _custom_class(grouping)
    elif custom is not None:
        grouping.fail("customClass", f"only a CUSTOM grouping takes a customClass (this is {kind})")
    return StreamDraft(
        source=source,
        target=target,
        stream=grouping.text("streamId", DEFAULT_STREAM) or DEFAULT_STREAM,
        grouping=kind,
        fields=fields,
        custom_path=custom_path,
        custom_args=custom_args,
        origin=sec.origin(nested=("grouping",)),
        custom_origin=grouping.origin("customClass"),
    )


def _grouping_fields(grouping: Section, kind: str) -> tuple[str, ...]:
    if "args" not in grouping.data:
        if kind in _KEYED:
            grouping.fail(
                "args", f"required for a {kind} grouping; expected a list of the key field names"
            )
        return ()
    if kind not in _KEYED:
        grouping.fail("args", f"only FIELDS and PARTIAL_KEY groupings take args (this is {kind})")
    args = grouping.data["args"]
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        got = repr(plain(args)) if isinstance(args, list) else describe(args)
        grouping.fail("args", f"expected a non-empty list of field names (strings), got {got}")
    return tuple(args)


def _custom_class(grouping: Section) -> tuple[str, tuple[Any, ...]]:
    value = grouping.data["customClass"]
    if isinstance(value, str) and value:
        return value, ()
    if not isinstance(value, LineDict):
        grouping.fail(
            "customClass",
            f"expected {CLASS_EXPECTED} or a map with className and "
            f"constructorArgs, got {describe(value)}",
        )
    custom = grouping.section("customClass")
    custom.check_keys(_CUSTOM_KEYS, {"className": CLASS_EXPECTED})
    path = custom.text("className")
    assert path is not None
    return path, tuple(plain(custom.items("constructorArgs")))
