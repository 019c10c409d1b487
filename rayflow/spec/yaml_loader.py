r"""Load a topology from a Storm Flux-style YAML file into a :class:`TopologySpec`.

The file has ``name``, ``config``, ``spouts``, ``bolts``, ``streams`` and ``includes``;
``className`` is a dotted Python path. ``${NAME}`` / ``${ENV-NAME}`` are substituted in the raw
text first (see :mod:`rayflow.spec.yaml_source`). Every error is a :class:`TopologyError` naming
the file, the line and the key, e.g. ``wc.yaml:14: key 'bolts[1].parallelism': expected a
positive integer, got 'two'``.

>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "doc_wc.py").write_text(
...     "class Words:\n    outputs = ['word']\n    def next_tuple(self): pass\n"
...     "class Count:\n    def process(self, tup): pass\n")
>>> _ = (folder / "wc.yaml").write_text('''
... name: wc
... spouts: [{id: words, className: doc_wc.Words}]
... bolts: [{id: count, className: doc_wc.Count, parallelism: ${N}}]
... streams: [{from: words, to: count, grouping: {type: fields, args: [word]}}]
... ''')
>>> spec = load_topology(folder / "wc.yaml", variables={"N": "2"})
>>> spec.component("count").parallelism, spec.streams[0].grouping.fields_
(2, ('word',))
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rayflow.errors import ConfigError, TopologyError
from rayflow.spec.model import (
    ClassRef,
    ComponentSpec,
    Grouping,
    Origin,
    StreamSpec,
    TopologySpec,
    import_class,
    normalize_outputs,
)
from rayflow.spec.properties import load_properties
from rayflow.spec.settings import SettingError, Settings
from rayflow.spec.yaml_drafts import ComponentDraft, StreamDraft, component_draft, stream_draft
from rayflow.spec.yaml_limits import MAX_BYTES_ENV, YamlLimits, describe_size
from rayflow.spec.yaml_source import (
    LineDict,
    LineList,
    Section,
    describe,
    parse_yaml,
    plain,
    substitute,
    too_deep,
)

__all__ = ["load_properties", "load_topology"]

_TOP_KEYS = ("name", "config", "spouts", "bolts", "streams", "includes")
_INCLUDE_KEYS = ("file", "resource", "override")
_MARKERS = {"spout": "next_tuple", "bolt": "process"}


@dataclass
class _Document:
    """One file with its includes merged in."""

    file: str
    line: int
    name: str | None = None
    name_origin: Origin = field(default_factory=Origin)
    config: dict[str, tuple[Any, Origin]] = field(default_factory=dict)
    spouts: list[ComponentDraft] = field(default_factory=list)
    bolts: list[ComponentDraft] = field(default_factory=list)
    streams: list[StreamDraft] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)

    def merge(self, other: _Document, override: bool) -> None:
        """Add an included document; with ``override`` its config and components win."""
        if self.name is None:
            self.name, self.name_origin = other.name, other.name_origin
        for key, entry in other.config.items():
            if override or key not in self.config:
                self.config[key] = entry
        _merge_components(self.spouts, other.spouts, override)
        _merge_components(self.bolts, other.bolts, override)
        self.streams.extend(other.streams)
        self.folders.extend(f for f in other.folders if f not in self.folders)


def _merge_components(
    mine: list[ComponentDraft], theirs: list[ComponentDraft], override: bool
) -> None:
    existing = {}
    for index, comp in enumerate(mine):
        existing.setdefault(comp.id, index)
    for comp in theirs:
        index = existing.get(comp.id)
        if index is None:
            mine.append(comp)  # ids repeated inside one file stay, so the spec reports them
        elif override:
            mine[index] = comp


@dataclass
class _Budget:
    """What one load may still read: bytes over the file and all its includes."""

    limits: YamlLimits
    bytes_left: int


# ------------------------------------------------------------------------------------ public API
def load_topology(
    path: str | os.PathLike[str],
    variables: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TopologySpec:
    """Read, check and build the topology in the YAML file ``path``.

    ``variables`` fill ``${NAME}`` (before ``environ``, which defaults to ``os.environ``);
    ``overrides`` (``-c key=value``) replace keys of the file's ``config``; ``environ`` also feeds
    the ``RAYFLOW_*`` settings and the ``RAYFLOW_YAML_MAX_*`` limits on size, aliases and
    nesting (:mod:`rayflow.spec.yaml_limits`). The folders of the files and the current directory
    are put on ``sys.path`` before classes are imported. See the module docstring for an example.
    """
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    file = os.fspath(path)
    limits = YamlLimits.from_environ(environ)
    budget = _Budget(limits, limits.max_bytes)
    try:
        doc = _load_document(file, dict(variables or {}), environ, (), None, budget)
    except RecursionError:
        raise TopologyError(too_deep(file)) from None
    if doc.name is None:
        origin = Origin(file, doc.line, "name")
        raise TopologyError(origin.prefix() + "required key is missing; expected a topology name")
    settings, extra = _settings(doc, overrides, environ)
    _extend_sys_path([f for folder in doc.folders for f in code_folders(folder)] + [os.getcwd()])
    components = [_build_component(draft) for draft in (*doc.spouts, *doc.bolts)]
    streams = [_build_stream(draft) for draft in doc.streams]
    named = doc.name_origin
    keys = (("name", named.line),) if named.file == file and named.line else ()
    origin = Origin(file, key_lines=keys)
    return TopologySpec(doc.name, tuple(components), tuple(streams), settings, extra, origin=origin)


# --------------------------------------------------------------------------------- reading files
def _load_document(
    file: str,
    variables: Mapping[str, str],
    environ: Mapping[str, str],
    chain: tuple[tuple[str, str], ...],
    included_at: Origin | None,
    budget: _Budget,
) -> _Document:
    """Load ``file`` and, recursively, its includes; ``chain`` holds (real path, name) above it."""
    where = included_at.prefix() if included_at else f"{file}: "
    raw = _read(file, where, budget)
    text, line_map = substitute(raw, file, variables, environ)
    if len(text) > budget.limits.max_bytes:
        raise TopologyError(
            f"{where}'{file}' is longer than {describe_size(budget.limits.max_bytes)} once its "
            f"${{...}} variables are replaced; set {MAX_BYTES_ENV} in the environment to allow more"
        )
    data = parse_yaml(text, file, line_map, budget.limits)
    keys = ", ".join(_TOP_KEYS)
    if data is None:
        raise TopologyError(f"{file}: the file is empty; expected a map with keys {keys}")
    if not isinstance(data, LineDict):
        line = data.line if isinstance(data, LineList) else 1
        raise TopologyError(
            f"{file}:{line}: the top level must be a map with keys {keys}; got {describe(data)}"
        )
    top = Section(file, data, "")
    top.check_keys(_TOP_KEYS)
    doc = _Document(file, data.line, name=top.text("name"), name_origin=top.origin("name"))
    doc.folders.append(os.path.dirname(os.path.abspath(file)))
    config = top.section("config")
    for key, value in config.data.items():
        doc.config[key] = (plain(value), config.origin(key))
    for kind, key in (("spout", "spouts"), ("bolt", "bolts")):
        drafts = [component_draft(s, kind) for s in top.sections(key, f"a {kind} with id")]
        getattr(doc, key).extend(drafts)
    doc.streams.extend(stream_draft(s) for s in top.sections("streams", "a stream with from, to"))
    real = os.path.realpath(file)
    for include in top.sections("includes", "an include with file"):
        target, override = _include(include, file)
        at = include.origin("file")
        seen = [*chain, (real, file)]
        if os.path.realpath(target) in (path for path, _ in seen):
            cycle = " -> ".join([name for _, name in seen] + [target])
            raise TopologyError(at.prefix() + f"include cycle: {cycle}")
        included = _load_document(target, variables, environ, tuple(seen), at, budget)
        doc.merge(included, override)
    return doc


def _read(file: str, where: str, budget: _Budget) -> str:
    """The text of ``file``, refused by its size before it is read when over the budget."""
    data = b""
    try:
        with open(file, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size  # 0 for a pipe: the read below still stops
            if size <= budget.bytes_left:
                data = handle.read(budget.bytes_left + 1)
                size = len(data)
    except OSError as exc:
        raise TopologyError(f"{where}cannot read '{file}': {exc.strerror}") from None
    if size > budget.bytes_left:
        limit = describe_size(budget.limits.max_bytes)
        used = budget.limits.max_bytes - budget.bytes_left
        if used:
            limit += f" for a file and its includes together, {describe_size(used)} already read"
        raise TopologyError(
            f"{where}'{file}' is too large ({describe_size(size)}; the limit is {limit}); "
            f"set {MAX_BYTES_ENV} in the environment to allow more (e.g. {MAX_BYTES_ENV}=4MiB)"
        )
    budget.bytes_left -= size
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TopologyError(f"{where}'{file}' is not UTF-8 text: {exc}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as reading in text mode does


def _include(include: Section, file: str) -> tuple[str, bool]:
    include.check_keys(_INCLUDE_KEYS, {"file": "the path of a YAML file to include"})
    if include.boolean("resource", False):
        include.fail(
            "resource",
            "resource: true (a file on the class path) is not supported; "
            "use a file path relative to the including file",
        )
    name = include.text("file")
    assert name is not None
    target = os.path.normpath(os.path.join(os.path.dirname(file), name))
    return target, include.boolean("override", False)


# ------------------------------------------------------------------------------------- building
def _settings(
    doc: _Document, overrides: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[Settings, dict[str, Any]]:
    config = {key: value for key, (value, _) in doc.config.items()}
    config.update({Settings.canonical_key(k): v for k, v in overrides.items()})  # -c wins
    try:
        return Settings.from_config(config, environ)
    except SettingError as exc:
        message = str(exc)
        if message.startswith(f"{exc.key}: "):
            message = message[len(exc.key) + 2 :]
        given = {Settings.canonical_key(k): k for k in overrides}
        if exc.key in given:
            where = f"-c {given[exc.key]}={overrides[given[exc.key]]}: "
        elif exc.key in doc.config:
            where = doc.config[exc.key][1].prefix()
        else:
            where = f"{doc.file}: "
        raise ConfigError(where + message) from None


def code_folders(folder: str) -> list[str]:
    """Where a topology's modules import from: its folder and, when that folder is a package
    (``examples/`` with an ``__init__.py``), the folder above the package.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "pkg").mkdir()
    >>> _ = (root / "pkg" / "__init__.py").write_text("")
    >>> [os.path.relpath(f, root) for f in code_folders(str(root / "pkg"))]
    ['pkg', '.']
    """
    folder = os.path.abspath(folder)
    folders = [folder]
    top = folder
    while os.path.isfile(os.path.join(top, "__init__.py")):
        top = os.path.dirname(top)
    if top != folder:
        folders.append(top)
    return folders


def _extend_sys_path(folders: list[str]) -> None:
    """Put ``folders`` (in this order) at the front of ``sys.path`` unless already there."""
    present = {os.path.abspath(entry or os.curdir) for entry in sys.path}
    missing = [f for f in dict.fromkeys(folders) if os.path.abspath(f) not in present]
    sys.path[:0] = missing
    if missing:
        importlib.invalidate_caches()


def _import(path: str, origin: Origin) -> Any:
    try:
        return import_class(path)
    except ImportError as exc:
        raise TopologyError(origin.prefix() + f"class not found: {exc}") from None
    except Exception as exc:
        raise TopologyError(
            origin.prefix() + f"importing '{path}' failed: {type(exc).__name__}: {exc}"
        ) from None


def _build_component(draft: ComponentDraft) -> ComponentSpec:
    cls = _import(draft.class_path, draft.class_origin)
    marker = _MARKERS[draft.kind]
    if not hasattr(cls, marker):
        other = "bolt" if draft.kind == "spout" else "spout"
        hint = f"; it looks like a {other}" if hasattr(cls, _MARKERS[other]) else ""
        raise TopologyError(
            draft.class_origin.prefix()
            + f"'{draft.class_path}' is not a {draft.kind}: it has no {marker} method{hint}"
        )
    where = draft.class_origin.prefix() + f"class '{draft.class_path}'"
    outputs = normalize_outputs(getattr(cls, "outputs", None), where)
    return ComponentSpec(
        draft.id,
        draft.kind,
        ClassRef(draft.class_path, cls),
        parallelism=draft.parallelism,
        args=draft.args,
        kwargs=draft.kwargs,
        config=draft.config,
        resources=draft.resources,
        outputs=outputs,
        origin=draft.origin,
    )


def _build_stream(draft: StreamDraft) -> StreamSpec:
    custom = None
    if draft.custom_path is not None:
        cls = _import(draft.custom_path, draft.custom_origin)
        if not hasattr(cls, "choose_tasks"):
            raise TopologyError(
                draft.custom_origin.prefix()
                + f"'{draft.custom_path}' is not a custom grouping: it has no choose_tasks method"
            )
        custom = ClassRef(draft.custom_path, cls)
    grouping = Grouping(draft.grouping, draft.fields, custom, draft.custom_args)
    return StreamSpec(draft.source, draft.target, grouping, draft.stream, draft.origin)
