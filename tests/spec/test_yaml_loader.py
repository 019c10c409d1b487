"""Tests of the YAML topology loader (rayflow.spec.yaml_loader) and .properties reading."""

from __future__ import annotations

import pickle
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from rayflow.errors import ConfigError, TopologyError
from rayflow.spec.model import ClassRef, Origin
from rayflow.spec.settings import Settings
from rayflow.spec.yaml_loader import load_properties, load_topology

from . import fixtures_mod

FIX = fixtures_mod.__name__

# Lines 1-7 of most error cases; a case's own text starts at line 8.
BASE = """\
name: t
spouts:
  - id: s
    className: FIX.WordSpout
bolts:
  - id: b
    className: FIX.CountBolt
"""


@pytest.fixture(autouse=True)
def _keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n").replace("FIX.", FIX + "."))
    return path


def load_error(path: Path, **kwargs) -> str:
    kwargs.setdefault("environ", {})
    with pytest.raises(TopologyError) as info:
        load_topology(path, **kwargs)
    return str(info.value)


def assert_at(message: str, path: Path, line: int | None, key: str | None) -> None:
    where = f"{path}:{line}: " if line else f"{path}: "
    assert message.startswith(where), message
    if key is not None:
        assert f"key '{key}'" in message, message


# ------------------------------------------------------------------------------------ round trip
FULL = """
name: wordcount
config:
  reliability: at-least-once
  batch.size: 500
  batch.linger.ms: 2ms
  my.app.key: 3
  my.nested: {a: [1, 2]}
spouts:
  - id: sentences
    className: FIX.WordSpout
    parallelism: 3
    constructorArgs: [10, "x"]
    kwargs: {seed: 3}
    config: {x: 1}
    resources: {num_cpus: 1, num_gpus: 0.5, memory: 1000000, resources: {custom: 1}}
  - id: multi
    className: FIX.MultiSpout
bolts:
  - id: split
    className: FIX.CountBolt
    parallelism: 2
  - id: sink
    className: FIX.SinkBolt
streams:
  - name: "sentences -> split"
    from: sentences
    to: split
    grouping:
      type: custom
      customClass: {className: FIX.ModGrouping, constructorArgs: [7]}
  - from: multi
    to: sink
    grouping: {type: fields, args: [code], streamId: errors}
  - from: split
    to: sink
    grouping: {type: partial_key, args: [word]}
  - from: multi
    to: split
    grouping: {type: Local_Or_Shuffle}
  - from: sentences
    to: sink
    grouping: {customClass: FIX.ModGrouping}
  - from: sentences
    to: sink
"""


def test_round_trip_with_non_default_values(tmp_path: Path) -> None:
    path = write(tmp_path, "wc.yaml", FULL)
    spec = load_topology(path, environ={})

    assert spec.name == "wordcount"
    assert spec.origin == Origin(str(path))
    assert [(c.id, c.kind) for c in spec.components] == [
        ("sentences", "spout"),
        ("multi", "spout"),
        ("split", "bolt"),
        ("sink", "bolt"),
    ]
    spout = spec.component("sentences")
    assert spout.class_ref == ClassRef(f"{FIX}.WordSpout")
    assert spout.class_ref.load() is fixtures_mod.WordSpout
    assert spout.parallelism == 3
    assert spout.args == (10, "x")
    assert dict(spout.kwargs) == {"seed": 3}
    assert dict(spout.config) == {"x": 1}
    assert dict(spout.resources) == {
        "num_cpus": 1,
        "num_gpus": 0.5,
        "memory": 1000000,
        "resources": {"custom": 1},
    }
    assert type(spout.resources["resources"]) is dict  # no line-tracking types leak out
    assert dict(spout.outputs) == {"default": ("word",)}
    assert spout.origin == Origin(str(path), 9, "spouts[0]")
    instance = spout.instantiate()
    assert (instance.args, instance.kwargs) == ((10, "x"), {"seed": 3})
    assert dict(spec.component("multi").outputs) == {
        "default": ("word",),
        "errors": ("error", "code"),
    }
    assert spec.component("sink").origin == Origin(str(path), 22, "bolts[1]")
    assert dict(spec.component("sink").outputs) == {"default": ()}
    assert spec.component("split").parallelism == 2

    assert spec.settings.reliability == "at_least_once"
    assert spec.settings.batch_size == 500
    assert spec.settings.batch_linger == pytest.approx(0.002)
    assert spec.config == {"my.app.key": 3, "my.nested": {"a": [1, 2]}}

    custom, fields, partial, local, implicit, default = spec.streams
    assert custom.grouping.type == "CUSTOM"
    assert custom.grouping.custom == ClassRef(f"{FIX}.ModGrouping")
    assert custom.grouping.custom_args == (7,)
    assert custom.grouping.make_custom().modulo == 7
    assert custom.origin == Origin(str(path), 25, "streams[0]")
    assert (fields.source, fields.target, fields.stream) == ("multi", "sink", "errors")
    assert (fields.grouping.type, fields.grouping.fields_) == ("FIELDS", ("code",))
    assert (partial.grouping.type, partial.grouping.fields_) == ("PARTIAL_KEY", ("word",))
    assert local.grouping.type == "LOCAL_OR_SHUFFLE"
    assert local.stream == "default"
    assert implicit.grouping.type == "CUSTOM"
    assert implicit.grouping.custom_args == ()
    assert default.grouping.type == "SHUFFLE"

    again = pickle.loads(pickle.dumps(spec))
    assert again.components == spec.components and again.streams == spec.streams


def test_defaults_and_cwd_and_topology_folder_on_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, there = f"here_{uuid.uuid4().hex[:8]}", f"cwd_{uuid.uuid4().hex[:8]}"
    write(tmp_path / "topo", f"{here}.py", "class Spout:\n    def next_tuple(self): pass\n")
    write(tmp_path / "work", f"{there}.py", "class Bolt:\n    def process(self, t): pass\n")
    monkeypatch.chdir(tmp_path / "work")
    path = write(
        tmp_path / "topo",
        "t.yaml",
        f"""
        name: t
        spouts: [{{id: s, className: {here}.Spout}}]
        bolts: [{{id: b, className: {there}.Bolt}}]
        streams: [{{from: s, to: b}}]
    """,
    )
    spec = load_topology(path, environ={})
    assert spec.component("s").parallelism == 1
    assert spec.component("s").args == () and dict(spec.component("s").kwargs) == {}
    assert spec.streams[0].grouping.type == "SHUFFLE"
    assert spec.settings.batch_size == Settings().batch_size and spec.config == {}
    assert str(tmp_path / "topo") in sys.path


def test_overrides_and_environment_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yaml",
        BASE + "streams: [{from: s, to: b}]\nconfig: {batch.size: 5, app.key: 1}\n",
    )
    spec = load_topology(
        path,
        overrides={"batch.size": 7, "app.key": 2, "app.new": "x"},
        environ={"RAYFLOW_CHANNEL_CREDITS": "9", "RAYFLOW_BATCH_SIZE": "3"},
    )
    assert spec.settings.batch_size == 7
    assert spec.settings.channel_credits == 9
    assert spec.config == {"app.key": 2, "app.new": "x"}


# ------------------------------------------------------------------------------------- variables
def test_variables_environ_and_env_prefix(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yaml",
        """
        name: ${NAME}
        config:
          batch.size: ${SIZE}
          my.text: "${SIZE}"
          my.list: [${SIZE}, 3]
          my.home: ${ENV-HOMEDIR}
          my.env_size: ${ENV-SIZE}
          my.literal: $${NOT_A_VAR}
        spouts:
          - id: s
            className: FIX.WordSpout
            parallelism: ${PAR}
    """,
    )
    spec = load_topology(
        path,
        variables={"NAME": "vt", "SIZE": "64"},
        environ={"PAR": "2", "HOMEDIR": "/h", "SIZE": "999"},
    )
    assert spec.name == "vt"
    assert spec.settings.batch_size == 64
    assert spec.config == {
        "my.text": "64",
        "my.list": [64, 3],
        "my.home": "/h",
        "my.env_size": 999,
        "my.literal": "${NOT_A_VAR}",
    }
    assert spec.component("s").parallelism == 2


def test_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "topo.yaml", BASE + "config:\n  port: ${PORT}\n")
    message = load_error(path, variables={"OTHER": "1"})
    assert message == (
        f"{path}:9: variable ${{PORT}} is not defined; "
        "pass -D PORT=... or set it in the environment"
    )
    path = write(tmp_path, "env.yaml", BASE + "config:\n  port: ${ENV-PORT}\n")
    message = load_error(path, variables={"PORT": "1"})  # ENV- reads the environment only
    assert message.startswith(f"{path}:9: variable ${{ENV-PORT}} is not defined")
    assert "set PORT in the environment" in message


def test_multi_line_variable_keeps_later_lines_right(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yaml",
        """
        name: t
        config:
          my.list: ${LIST}
        spouts:
          - id: s
            className: FIX.WordSpout
            parallelism: two
    """,
    )
    message = load_error(path, variables={"LIST": "\n    - 1\n    - 2"})
    assert_at(message, path, 7, "spouts[0].parallelism")


# -------------------------------------------------------------------------------------- includes
COMMON = """
name: common-name
config:
  batch.size: 10
  shared.key: from-common
  common.only: 1
spouts:
  - id: words
    className: FIX.WordSpout
    parallelism: 2
bolts:
  - id: count
    className: FIX.CountBolt
streams:
  - from: words
    to: count
"""

MAIN = """
{name}
config:
  shared.key: from-main
spouts:
  - id: words
    className: FIX.WordSpout
    parallelism: 5
bolts:
  - id: sink
    className: FIX.SinkBolt
streams:
  - from: count
    to: sink
includes:
  - file: sub/common.yaml
{extra}
"""


def test_include_without_override(tmp_path: Path) -> None:
    common = write(tmp_path / "sub", "common.yaml", COMMON)
    path = write(tmp_path, "main.yaml", MAIN.format(name="", extra=""))
    spec = load_topology(path, environ={})
    assert spec.name == "common-name"
    assert spec.config == {"shared.key": "from-main", "common.only": 1}
    assert spec.settings.batch_size == 10
    assert [c.id for c in spec.components] == ["words", "sink", "count"]
    assert spec.component("words").parallelism == 5
    assert [(s.source, s.target) for s in spec.streams] == [("count", "sink"), ("words", "count")]
    assert spec.streams[1].origin == Origin(str(common), 14, "streams[0]")
    assert spec.component("count").origin == Origin(str(common), 11, "bolts[0]")


def test_include_with_override(tmp_path: Path) -> None:
    write(tmp_path / "sub", "common.yaml", COMMON)
    extra = "    override: true\n    resource: false"
    path = write(tmp_path, "main.yaml", MAIN.format(name="name: main-name", extra=extra))
    spec = load_topology(path, environ={})
    assert spec.name == "main-name"
    assert spec.config == {"shared.key": "from-common", "common.only": 1}
    assert [c.id for c in spec.components] == ["words", "sink", "count"]
    assert spec.component("words").parallelism == 2


def test_nested_include_is_relative_to_its_file(tmp_path: Path) -> None:
    write(
        tmp_path / "sub" / "deeper",
        "spout.yaml",
        """
        spouts: [{id: s, className: FIX.WordSpout}]
    """,
    )
    write(tmp_path / "sub", "mid.yaml", "includes: [{file: deeper/spout.yaml}]\n")
    path = write(tmp_path, "t.yaml", "name: t\nincludes: [{file: sub/mid.yaml}]\n")
    assert [c.id for c in load_topology(path, environ={}).components] == ["s"]


def test_include_cycle(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", BASE + "includes:\n  - file: b.yaml\n")
    b = write(tmp_path, "b.yaml", "config: {x: 1}\nincludes:\n  - file: ./a.yaml\n")
    message = load_error(path)
    assert_at(message, b, 3, "includes[0].file")
    assert f"include cycle: {path} -> {b} -> {path}" in message
    own = write(tmp_path, "self.yaml", BASE + "includes: [{file: self.yaml}]\n")
    assert_at(load_error(own), own, 8, "includes[0].file")


def test_include_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", BASE + "includes:\n  - file: missing.yaml\n")
    message = load_error(path)
    assert_at(message, path, 9, "includes[0].file")
    assert "No such file" in message
    path = write(tmp_path, "r.yaml", BASE + "includes:\n  - file: x.yaml\n    resource: true\n")
    message = load_error(path)
    assert_at(message, path, 10, "includes[0].resource")
    assert "not supported" in message
    write(tmp_path, "bad.yaml", "spouts:\n  - id: x\n    className: FIX.WordSpout\n    bad: 1\n")
    path = write(tmp_path, "i.yaml", BASE + "includes: [{file: bad.yaml}]\n")
    assert_at(load_error(path), tmp_path / "bad.yaml", 4, "spouts[0].bad")


# ---------------------------------------------------------------------------------------- errors
STREAM = "streams:\n  - from: s\n    to: b\n"  # lines 8-10 after BASE

ERRORS = [
    # (case, text after BASE or whole file if it starts with "name:", line, key, fragment)
    ("top-unknown", "bolt: []\n", 8, "bolt", "did you mean 'bolts'?"),
    (
        "component-unknown",
        "name: t\nspouts:\n  - id: s\n    classname: FIX.WordSpout\n",
        4,
        "spouts[0].classname",
        "unknown key (did you mean 'className'?); allowed keys: id, ",
    ),
    (
        "missing-id",
        "name: t\nspouts:\n  - className: FIX.WordSpout\n",
        3,
        "spouts[0].id",
        "required key is missing",
    ),
    (
        "missing-class",
        BASE + "  - id: c\n    parallelism: 2\n",
        8,
        "bolts[1].className",
        "required key is missing; expected a dotted Python path",
    ),
    ("missing-from", "streams:\n  - to: b\n", 9, "streams[0].from", "required key is missing"),
    ("missing-to", "streams:\n  - from: s\n", 9, "streams[0].to", "required key is missing"),
    (
        "missing-name",
        "spouts:\n  - id: s\n    className: FIX.WordSpout\n",
        1,
        "name",
        "required key is missing",
    ),
    (
        "name-type",
        "name: [a]\nspouts: [{id: s, className: FIX.WordSpout}]\n",
        1,
        "name",
        "expected a non-empty string, got a list",
    ),
    (
        "parallelism-text",
        "  - id: c\n    className: FIX.SinkBolt\n    parallelism: two\n",
        10,
        "bolts[1].parallelism",
        "expected a positive integer, got 'two'",
    ),
    (
        "parallelism-zero",
        "  - id: c\n    className: FIX.SinkBolt\n    parallelism: 0\n",
        10,
        "bolts[1].parallelism",
        "expected a positive integer, got 0",
    ),
    (
        "parallelism-bool",
        "  - id: c\n    className: FIX.SinkBolt\n    parallelism: yes\n",
        10,
        "bolts[1].parallelism",
        "got True",
    ),
    (
        "args-type",
        "  - id: c\n    className: FIX.SinkBolt\n    constructorArgs: 3\n",
        10,
        "bolts[1].constructorArgs",
        "expected a list, got 3",
    ),
    (
        "kwargs-type",
        "  - id: c\n    className: FIX.SinkBolt\n    kwargs: [1]\n",
        10,
        "bolts[1].kwargs",
        "expected a map, got a list",
    ),
    (
        "kwargs-name",
        "  - id: c\n    className: FIX.SinkBolt\n    kwargs:\n      a-b: 1\n",
        11,
        "bolts[1].kwargs.a-b",
        "expected a Python identifier",
    ),
    (
        "config-type",
        "  - id: c\n    className: FIX.SinkBolt\n    config: 3\n",
        10,
        "bolts[1].config",
        "expected a map, got 3",
    ),
    (
        "resources-type",
        "  - id: c\n    className: FIX.SinkBolt\n    resources: x\n",
        10,
        "bolts[1].resources",
        "expected a map, got 'x'",
    ),
    (
        "resources-unknown",
        "  - id: c\n    className: FIX.SinkBolt\n    resources: {cpus: 1}\n",
        10,
        "bolts[1].resources.cpus",
        "did you mean 'num_cpus'?",
    ),
    (
        "resources-value",
        "  - id: c\n    className: FIX.SinkBolt\n    resources: {num_gpus: -1}\n",
        10,
        "bolts[1].resources.num_gpus",
        "expected a non-negative number, got -1",
    ),
    ("component-not-map", "  - c\n", 8, "bolts[1]", "expected a map (a bolt with id), got 'c'"),
    ("spouts-not-list", "name: t\nspouts: {id: s}\n", 2, "spouts", "expected a list, got a map"),
    (
        "grouping-unknown-key",
        STREAM + "    grouping: {type: all, arg: [a]}\n",
        11,
        "streams[0].grouping.arg",
        "did you mean 'args'?",
    ),
    (
        "grouping-type",
        STREAM + "    grouping:\n      type: shufle\n",
        12,
        "streams[0].grouping.type",
        "unknown grouping type 'shufle' (did you mean 'SHUFFLE'?)",
    ),
    (
        "grouping-args-text",
        STREAM + "    grouping:\n      type: fields\n      args: word\n",
        13,
        "streams[0].grouping.args",
        "expected a non-empty list of field",
    ),
    (
        "grouping-args-numbers",
        STREAM + "    grouping:\n      type: fields\n      args: [1, 2]\n",
        13,
        "streams[0].grouping.args",
        "got [1, 2]",
    ),
    (
        "grouping-args-missing",
        STREAM + "    grouping:\n      type: fields\n",
        12,
        "streams[0].grouping.args",
        "required for a FIELDS grouping",
    ),
    (
        "grouping-args-unused",
        STREAM + "    grouping: {type: shuffle, args: [word]}\n",
        11,
        "streams[0].grouping.args",
        "only FIELDS and PARTIAL_KEY",
    ),
    (
        "custom-missing",
        STREAM + "    grouping: {type: custom}\n",
        11,
        "streams[0].grouping.customClass",
        "required for a CUSTOM grouping",
    ),
    (
        "custom-unused",
        STREAM + "    grouping: {type: all, customClass: FIX.ModGrouping}\n",
        11,
        "streams[0].grouping.customClass",
        "only a CUSTOM grouping",
    ),
    (
        "custom-not-grouping",
        STREAM + "    grouping:\n      customClass: FIX.Plain\n",
        12,
        "streams[0].grouping.customClass",
        "has no choose_tasks method",
    ),
    (
        "class-module",
        "  - id: c\n    className: nope_mod_xyz.Bolt\n",
        9,
        "bolts[1].className",
        "class not found: cannot import module 'nope_mod_xyz'",
    ),
    (
        "class-attribute",
        "  - id: c\n    className: FIX.Missing\n",
        9,
        "bolts[1].className",
        "has no attribute 'Missing'",
    ),
    (
        "class-undotted",
        "  - id: c\n    className: Missing\n",
        9,
        "bolts[1].className",
        "'Missing' is not a dotted path",
    ),
    (
        "not-a-spout",
        "name: t\nspouts:\n  - id: s\n    className: FIX.CountBolt\n",
        4,
        "spouts[0].className",
        "is not a spout: it has no next_tuple method; it looks like a bolt",
    ),
    (
        "not-a-bolt",
        "  - id: c\n    className: FIX.Plain\n",
        9,
        "bolts[1].className",
        "is not a bolt: it has no process method",
    ),
    (
        "outputs-string",
        "name: t\nspouts:\n  - id: s\n    className: FIX.StringOutputsSpout\n",
        4,
        "spouts[0].className",
        "outputs must be a list of field names, got 'word'",
    ),
    (
        "outputs-number",
        "  - id: c\n    className: FIX.NumberOutputsBolt\n",
        9,
        "bolts[1].className",
        "outputs must be a list of field names, got 5",
    ),
    (
        "duplicate-id",
        "  - id: s\n    className: FIX.SinkBolt\n",
        8,
        "bolts[1].id",
        "two components are named 's'",
    ),
    (
        "stream-unknown",
        "streams:\n  - from: nope\n    to: b\n",
        9,
        "streams[0].from",
        "stream from unknown component 'nope'",
    ),
    (
        "stream-to-spout",
        "streams:\n  - from: b\n    to: s\n",
        10,
        "streams[0].to",
        "'s' is a spout",
    ),
    (
        "stream-undeclared",
        STREAM + "    grouping: {streamId: errors}\n",
        11,
        "streams[0].grouping.streamId",
        "'s' does not declare stream 'errors'",
    ),
    (
        "fields-unknown",
        STREAM + "    grouping: {type: FIELDS, args: [count]}\n",
        11,
        "streams[0].grouping.args",
        "FIELDS grouping on ['count'] but stream 'default' of 's' has fields",
    ),
    (
        "cycle",
        "  - id: c\n    className: FIX.CountBolt\nstreams:\n  - from: b\n    to: c\n"
        "  - from: c\n    to: b\n",
        11,
        "streams[0]",
        "the streams form a cycle through ['b', 'c']",
    ),
    (
        "config-value",
        "config:\n  reliability: none\n  batch.size: two\n",
        10,
        "config.batch.size",
        "expected a positive integer, got 'two'",
    ),
    (
        "config-reliability",
        "config: {reliability: sometimes}\n",
        8,
        "config.reliability",
        "expected one of none, at_least_once, exactly_once",
    ),
    ("config-key", "config:\n  1: x\n", 9, "config.1", "keys must be strings"),
    (
        "duplicate-yaml-key",
        "config:\n  a: 1\n  a: 2\n",
        10,
        "a",
        "this map already sets it at line 9",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_errors_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, fragment: str
) -> None:
    whole = text.startswith("name:") or text.startswith("spouts:")
    path = write(tmp_path, "wc.yaml", text if whole else BASE + text)
    message = load_error(path)
    assert_at(message, path, line, key)
    assert fragment in message, message


def test_parallelism_above_max_parallelism(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yaml",
        BASE.replace("bolts:", "config: {max_parallelism: 4}\nbolts:") + "    parallelism: 5\n",
    )
    message = load_error(path)
    assert_at(message, path, 9, "bolts[0].parallelism")
    assert "between 1 and max_parallelism (4), got 5" in message


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "name: t\nspouts:\n  - id: s: x\n")
    message = load_error(path)
    assert message.startswith(f"{path}:3: YAML syntax error at column 10: "), message
    assert "mapping values are not allowed here" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("- a\n- b\n", ":1: the top level must be a map"), ("# nothing\n", ": the file is empty")],
)
def test_top_level_not_a_map(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "t.yaml", text)
    message = load_error(path)
    assert message.startswith(f"{path}{expected}"), message
    assert "name, config, spouts, bolts, streams, includes" in message


def test_missing_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nope.yaml")
    assert message.startswith(f"{tmp_path / 'nope.yaml'}: cannot read")


def test_bad_setting_from_override_and_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", BASE)
    with pytest.raises(ConfigError, match=r"^-c batch.size=two: expected a positive integer"):
        load_topology(path, overrides={"batch.size": "two"}, environ={})
    message = load_error(path, environ={"RAYFLOW_BATCH_SIZE": "0"})
    assert message.startswith(f"{path}: environment variable RAYFLOW_BATCH_SIZE: expected")


# ------------------------------------------------------------------------------------ properties
def test_load_properties(tmp_path: Path) -> None:
    path = tmp_path / "app.properties"
    path.write_text(
        "# comment\n"
        "! also a comment\n"
        "host = broker:9092\n"
        "port:9092\n"
        "name   word\\\n"
        "       count\n"
        "path=C:\\\\data\\ttab\n"
        "key\\ with\\=odd = \\u00e9t\\u00E9  \n"
        "   indented=yes\n"
        "empty\n"
        "host=again\n"
    )
    assert load_properties(path) == {
        "host": "again",
        "port": "9092",
        "name": "wordcount",
        "path": "C:\\data\ttab",
        "key with=odd": "été  ",
        "indented": "yes",
        "empty": "",
    }


def test_load_properties_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.properties"
    path.write_text("a=1\nb=\\u12\n")
    with pytest.raises(TopologyError, match=r"bad.properties:2: malformed \\uXXXX escape"):
        load_properties(path)
    with pytest.raises(TopologyError, match="cannot read the properties file"):
        load_properties(tmp_path / "missing.properties")


def test_properties_feed_variables(tmp_path: Path) -> None:
    props = tmp_path / "dev.properties"
    props.write_text("spout.parallelism=4\n")
    path = write(
        tmp_path,
        "t.yaml",
        "name: t\nspouts:\n  - id: s\n"
        "    className: FIX.WordSpout\n    parallelism: ${spout.parallelism}\n",
    )
    spec = load_topology(path, variables=load_properties(props), environ={})
    assert spec.component("s").parallelism == 4


def test_a_forward_grouping_needs_the_same_parallelism_on_both_ends(tmp_path: Path) -> None:
    text = BASE + "    parallelism: 2\n" + STREAM + "    grouping:\n      type: forward\n"
    path = write(tmp_path, "t.yaml", text)
    message = load_error(path)
    assert_at(message, path, 13, "streams[0].grouping.type")
    assert "'s' has 1, 'b' has 2" in message and "use SHUFFLE" in message, message
    same = write(tmp_path, "same.yaml", BASE + STREAM + "    grouping: {type: FORWARD}\n")
    from rayflow.spec.yaml_loader import load_topology

    (stream,) = load_topology(str(same)).streams
    assert stream.grouping.type == "FORWARD"
