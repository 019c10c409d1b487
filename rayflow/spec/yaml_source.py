r"""Read YAML text into Python data that remembers the line of every map, key and list item.

``${NAME}`` and ``${ENV-NAME}`` are replaced in the raw text first (:func:`substitute`), so a
variable can stand for a number, a list or a string; ``$${NAME}`` keeps a literal ``${NAME}``.
:class:`Section` wraps one map for the checks the topology loader makes, so that every error
names the file, the line and the key path.

>>> text, lines = substitute("size: ${N}\nname: $${N}\n", "t.yaml", {"N": "4"}, {})
>>> data = parse_yaml(text, "t.yaml", lines)
>>> data, data.key_lines["name"]
({'size': 4, 'name': '${N}'}, 2)
>>> Section("t.yaml", data, "config").positive_int("size", 1)
4
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import yaml

from rayflow.errors import TopologyError
from rayflow.spec.model import Origin
from rayflow.spec.yaml_limits import MAX_ALIAS_NODES_ENV, MAX_DEPTH_ENV, YamlLimits

_VARIABLE = re.compile(r"(\$?)\$\{([^}\n]*)\}")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class LineDict(dict[Any, Any]):
    """A YAML map: ``line`` of the map itself and ``key_lines[key]`` of each of its keys."""

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


class LineList(list[Any]):
    """A YAML list: ``line`` of the list itself and ``item_lines[i]`` of each item."""

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


# ------------------------------------------------------------------------------------- variables
def substitute(
    text: str, file: str, variables: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[str, list[int]]:
    r"""Replace ``${NAME}`` (``variables``, then ``environ``) and ``${ENV-NAME}`` (``environ``);
    ``${NAME:-default}`` stands for ``default`` when NAME is defined nowhere.

    Returns the new text and, for each of its lines, the line of ``text`` it came from (a value
    holding newlines shifts the lines after it). Raises :class:`TopologyError` naming the file and
    line of a variable that is not defined.

    >>> env = {"HOME": "/h"}
    >>> substitute("a: ${ENV-HOME}\nb: [${N}, $${N}, ${M:-3}]", "t.yaml", {"N": "1"}, env)
    ('a: /h\nb: [1, ${N}, 3]', [1, 2])
    """
    pieces: list[str] = []
    line_map = [1]
    line = 1
    pos = 0
    for match in _VARIABLE.finditer(text):
        chunk = text[pos : match.start()]
        newlines = chunk.count("\n")
        line_map.extend(range(line + 1, line + newlines + 1))
        line += newlines
        escaped, name = match.groups()
        if escaped:
            value = "${" + name + "}"
        else:
            value = _resolve(name.strip(), f"{file}:{line}: ", variables, environ)
        pieces += (chunk, value)
        line_map.extend([line] * value.count("\n"))
        pos = match.end()
    tail = text[pos:]
    line_map.extend(range(line + 1, line + tail.count("\n") + 1))
    pieces.append(tail)
    return "".join(pieces), line_map


def _resolve(
    name: str, where: str, variables: Mapping[str, Any], environ: Mapping[str, str]
) -> str:
    if not name:
        raise TopologyError(f"{where}empty variable reference '${{}}'; write '$${{' for a literal")
    name, has_default, default = name.partition(":-")
    name = name.strip()
    if has_default and name not in variables and name.removeprefix("ENV-") not in environ:
        return default
    if name.startswith("ENV-"):
        env_name = name[len("ENV-") :]
        if env_name in environ:
            return str(environ[env_name])
        raise TopologyError(
            f"{where}variable ${{{name}}} is not defined; set {env_name} in the environment"
        )
    if name in variables:
        return str(variables[name])
    if name in environ:
        return str(environ[name])
    raise TopologyError(
        f"{where}variable ${{{name}}} is not defined; "
        f"pass -D {name}=... or set it in the environment"
    )


# ------------------------------------------------------------------------------------------ YAML
class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose maps are :class:`LineDict` and lists :class:`LineList`, and that
    refuses nesting deeper than ``limits.max_depth`` and aliases that expand to more than
    ``limits.max_alias_nodes`` values, while composing (before anything is copied)."""

    file = ""
    line_map: Sequence[int] = ()
    limits = YamlLimits()

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0  # maps and lists open around the node being composed
        self._alias_nodes = 0  # values the aliases so far add when expanded
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height), expanded

    def source_line(self, mark: Any) -> int:
        """The 1-based line of the original (unsubstituted) text where ``mark`` points."""
        index = mark.line
        if index < len(self.line_map):
            return self.line_map[index]
        if self.line_map:
            return self.line_map[-1] + index - len(self.line_map) + 1
        return index + 1

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            return self._count_alias(node, mark)
        nested = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
        if nested:
            self._depth += 1
            if self._depth > self.limits.max_depth:
                self._refuse(
                    self.peek_event().start_mark,
                    f"maps and lists nest deeper than {self.limits.max_depth} levels",
                    MAX_DEPTH_ENV,
                )
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= nested
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        sizes = [self._sizes[id(child)] for child in children]
        values = 1 + sum(size for size, _ in sizes)
        height = int(nested) + max((h for _, h in sizes), default=0)
        self._sizes[id(node)] = (values, height)
        return node

    def _count_alias(self, node: Any, mark: Any) -> Any:
        size = self._sizes.get(id(node))
        if size is None:
            raise TopologyError(
                f"{self.file}:{self.source_line(mark)}: this alias refers to a map or list that "
                "contains it; a value cannot include itself"
            )
        values, height = size
        self._alias_nodes += values
        if self._alias_nodes > self.limits.max_alias_nodes:
            self._refuse(
                mark,
                f"aliases expand to more than {self.limits.max_alias_nodes:,} values "
                "(an alias bomb?)",
                MAX_ALIAS_NODES_ENV,
            )
        if self._depth + height > self.limits.max_depth:
            self._refuse(
                mark,
                f"maps and lists nest deeper than {self.limits.max_depth} levels "
                "once this alias is expanded",
                MAX_DEPTH_ENV,
            )
        return node

    def _refuse(self, mark: Any, problem: str, env: str) -> NoReturn:
        raise TopologyError(
            f"{self.file}:{self.source_line(mark)}: {problem}; "
            f"set {env} in the environment to allow more"
        )


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict(loader.source_line(node.start_mark))
    yield data
    own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
    loader.flatten_mapping(node)  # "<<" merges come first; the map's own keys may override them
    first_own = len(node.value) - own
    own_keys: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found a key that is a map or a list",
                key_node.start_mark,
            )
        line = loader.source_line(key_node.start_mark)
        if index >= first_own:
            if key in own_keys:
                raise TopologyError(
                    Origin(loader.file, line, str(key)).prefix()
                    + f"duplicate key; this map already sets it at line {data.key_lines[key]}"
                )
            own_keys.add(key)
        data.key_lines[key] = line
        data[key] = loader.construct_object(value_node)


def _construct_list(loader: _LineLoader, node: yaml.SequenceNode) -> Iterator[LineList]:
    data = LineList(loader.source_line(node.start_mark))
    yield data
    for child in node.value:
        data.item_lines.append(loader.source_line(child.start_mark))
        data.append(loader.construct_object(child))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_list)


def parse_yaml(
    text: str, file: str, line_map: Sequence[int] = (), limits: YamlLimits | None = None
) -> Any:
    """Parse one YAML document; maps and lists carry their lines (see :class:`LineDict`).

    A syntax error, nesting deeper than ``limits.max_depth`` or aliases expanding to more than
    ``limits.max_alias_nodes`` values become a :class:`TopologyError` with file and line.

    >>> parse_yaml("a: &x [1, 2]\\nb: [*x, *x]", "t.yaml", limits=YamlLimits(max_alias_nodes=5))
    Traceback (most recent call last):
    ...
    rayflow.errors.TopologyError: t.yaml:2: aliases expand to more than 5 values (an alias \
bomb?); set RAYFLOW_YAML_MAX_ALIAS_NODES in the environment to allow more

    >>> parse_yaml("a: [1, 2", "t.yaml")
    Traceback (most recent call last):
    ...
    rayflow.errors.TopologyError: t.yaml:1: YAML syntax error at column 9: expected ',' or ']', \
but got '<stream end>' (while parsing a flow sequence at line 1)
    """
    loader = _LineLoader(text)
    loader.file = file
    loader.line_map = line_map
    loader.limits = limits or YamlLimits()
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        raise TopologyError(_syntax_message(exc, loader, file)) from None
    except yaml.YAMLError as exc:
        raise TopologyError(f"{file}: YAML error: {exc}") from None
    except RecursionError:
        raise TopologyError(too_deep(file)) from None
    finally:
        loader.dispose()


def _syntax_message(exc: yaml.MarkedYAMLError, loader: _LineLoader, file: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "not valid YAML"
    if mark is None:
        return f"{file}: YAML syntax error: {problem}"
    text = f"{file}:{loader.source_line(mark)}: YAML syntax error at column {mark.column + 1}: "
    text += problem
    if exc.problem and exc.context and exc.context_mark is not None:
        text += f" ({exc.context} at line {loader.source_line(exc.context_mark)})"
    return text


def too_deep(file: str) -> str:
    """The message for a file nested deeper than Python's recursion limit allows."""
    return (
        f"{file}: maps and lists nest too deeply for Python's recursion limit; "
        f"lower {MAX_DEPTH_ENV} (default 100) or flatten the file"
    )


def plain(value: Any) -> Any:
    """``value`` with every :class:`LineDict` / :class:`LineList` turned into a dict / list."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def describe(value: Any) -> str:
    """A short rendering of a YAML value for "got ..." in error messages."""
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """``" (did you mean 'className'?)"`` or ``""``."""
    lowered = {option.lower(): option for option in options}
    if word.lower() in lowered:
        return f" (did you mean '{lowered[word.lower()]}'?)"
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def join(path: str, key: Any) -> str:
    """``bolts[1]`` + ``parallelism`` -> ``bolts[1].parallelism``."""
    return f"{path}.{key}" if path else str(key)


# --------------------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class Section:
    """One YAML map being checked: its file, the map and its key path (``bolts[1]``)."""

    file: str
    data: LineDict
    path: str

    def origin(self, key: Any = None, nested: Sequence[str] = ()) -> Origin:
        """Where the map (``key`` None) or one of its keys is written.

        The map's origin knows the line of each of its keys, and of the keys of the maps under
        ``nested`` (as ``"grouping.args"``), for :meth:`Origin.of`.
        """
        if key is not None:
            line = self.data.key_lines.get(key, self.data.line)
            return Origin(self.file, line, join(self.path, key))
        lines = [(str(k), line) for k, line in self.data.key_lines.items()]
        for name in nested:
            child = self.data.get(name)
            if isinstance(child, LineDict):
                lines += [(f"{name}.{k}", line) for k, line in child.key_lines.items()]
        return Origin(self.file, self.data.line, self.path, tuple(lines))

    def fail(self, key: Any, message: str) -> NoReturn:
        raise TopologyError(self.origin(key).prefix() + message)

    def check_keys(self, allowed: Sequence[str], required: Mapping[str, str] | None = None) -> None:
        """Reject keys not in ``allowed``; ``required`` maps a needed key to what it should be."""
        for key in self.data:
            if key not in allowed:
                self.fail(
                    key,
                    f"unknown key{did_you_mean(str(key), allowed)}; "
                    f"allowed keys: {', '.join(allowed)}",
                )
        for key, expected in (required or {}).items():
            if key not in self.data:
                self.fail(key, f"required key is missing; expected {expected}")

    def text(self, key: str, default: str | None = None) -> str | None:
        """A non-empty string, or ``default`` when the key is absent."""
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected a non-empty string, got {describe(value)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {describe(value)}")
        return value

    def positive_int(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.fail(key, f"expected a positive integer, got {describe(value)}")
        return value

    def items(self, key: str) -> LineList:
        """A list (absent or null: empty)."""
        value = self.data.get(key)
        if value is None:
            return LineList(self.origin(key).line)
        if not isinstance(value, LineList):
            self.fail(key, f"expected a list, got {describe(value)}")
        return value

    def section(self, key: str, str_keys: bool = True) -> Section:
        """The map under ``key`` (absent or null: empty), its keys strings if ``str_keys``."""
        value = self.data.get(key)
        if value is None:
            value = LineDict(self.origin(key).line)
        if not isinstance(value, LineDict):
            self.fail(key, f"expected a map, got {describe(value)}")
        child = Section(self.file, value, join(self.path, key))
        for name in value if str_keys else ():
            if not isinstance(name, str):
                child.fail(name, f"keys must be strings, got {describe(name)}; quote it")
        return child

    def sections(self, key: str, expected: str) -> list[Section]:
        """The maps in the list under ``key``; ``expected`` describes one for errors."""
        result = []
        values = self.items(key)
        for index, value in enumerate(values):
            path = f"{join(self.path, key)}[{index}]"
            if not isinstance(value, LineDict):
                origin = Origin(self.file, values.item_lines[index], path)
                raise TopologyError(
                    origin.prefix() + f"expected a map ({expected}), got {describe(value)}"
                )
            result.append(Section(self.file, value, path))
        return result
