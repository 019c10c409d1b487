"""Hostile or wrong YAML: alias bombs, deep nesting, huge files, arguments the class cannot take,
unsafe names, and errors at the line of the offending key (issue 17, item 3)."""

from __future__ import annotations

import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from rayflow import Spout, Topology
from rayflow.cli import EXIT_USAGE, main
from rayflow.errors import ConfigError, TopologyError
from rayflow.spec.model import ClassRef, ComponentSpec, Grouping, StreamSpec, TopologySpec
from rayflow.spec.yaml_loader import load_topology
from rayflow.testing import ListSink

from . import fixtures_mod

FIX = fixtures_mod.__name__

HEAD = """\
name: t
spouts:
  - id: s
    className: FIX.WordSpout
"""  # lines 1-4
TAIL = """\
bolts:
  - id: b
    className: FIX.CountBolt
streams:
  - {from: s, to: b}
"""


@pytest.fixture(autouse=True)
def _keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


def write(folder: Path, text: str, name: str = "t.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n").replace("FIX.", FIX + "."))
    return path


def load_error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(TopologyError) as info:
        load_topology(path, environ=environ or {})
    return str(info.value)


def bomb(indent: str, levels: int = 10, width: int = 10) -> str:
    """Ten levels of ten aliases: 10**10 values once expanded."""
    lines = [f"{indent}l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"{indent}l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ alias bombs
@pytest.mark.parametrize("where", ["config", "kwargs"])
def test_an_alias_bomb_fails_fast_with_small_memory(tmp_path: Path, where: str) -> None:
    if where == "config":
        text = HEAD + "config:\n" + bomb("  ") + TAIL  # the bomb's lines are 6-15
        first = 6
    else:
        text = HEAD + "    kwargs:\n" + bomb("      ") + TAIL
        first = 6
    path = write(tmp_path, text)
    tracemalloc.start()
    started = time.monotonic()
    try:
        message = load_error(path)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0, elapsed
    assert peak < 20 * 1024 * 1024, peak
    assert "aliases expand to more than 100,000 values" in message, message
    assert "RAYFLOW_YAML_MAX_ALIAS_NODES" in message, message
    line = int(message.split(":")[1])
    assert message.startswith(f"{path}:{line}: "), message
    assert first + 3 <= line <= first + 9, message  # an alias line of the bomb, not line 1


def test_the_alias_limit_can_be_raised_and_moderate_aliases_pass(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "config:\n" + bomb("  ", levels=4) + TAIL)  # aliases add 12,330
    assert load_topology(path, environ={}).config["l3"][9][9][9][9] == "lol"
    message = load_error(path, {"RAYFLOW_YAML_MAX_ALIAS_NODES": "1000"})
    assert message.startswith(f"{path}:8: aliases expand to more than 1,000 values"), message
    raised = load_topology(path, environ={"RAYFLOW_YAML_MAX_ALIAS_NODES": "1000000"})
    assert len(raised.config["l3"]) == 10


def test_shared_blocks_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = HEAD + "    kwargs: {<<: &common {seed: 3}, extra: *common}\n" + TAIL
    spec = load_topology(write(tmp_path, text), environ={})
    assert dict(spec.component("s").kwargs) == {"seed": 3, "extra": {"seed": 3}}


def test_a_merge_key_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["  m0: &m0 {k: 1}"]
    for level in range(1, 10):
        refs = ", ".join([f"*m{level - 1}"] * 10)
        lines.append(f"  m{level}: &m{level} {{<<: [{refs}], k{level}: 1}}")
    path = write(tmp_path, HEAD + "config:\n" + "\n".join(lines) + "\n" + TAIL)
    started = time.monotonic()
    message = load_error(path)
    assert time.monotonic() - started < 2.0
    assert "aliases expand to more than" in message, message


def test_a_value_that_contains_itself_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "config:\n  loop: &loop [1, *loop]\n" + TAIL)
    message = load_error(path)
    assert message.startswith(f"{path}:6: this alias refers to a map or list that contains it")


# ---------------------------------------------------------------------------------------- nesting
@pytest.mark.parametrize(
    "deep",
    ["[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000, "\n    " + "- " * 5000 + "x"],
    ids=["flow-lists", "flow-maps", "block-lists"],
)
def test_nesting_5000_deep_is_an_error_with_file_and_line(tmp_path: Path, deep: str) -> None:
    path = write(tmp_path, HEAD + "config:\n  deep: " + deep + "\n" + TAIL)
    message = load_error(path)
    assert message.startswith(f"{path}:"), message
    assert int(message.split(":")[1]) in (6, 7), message
    assert "nest deeper than 100 levels" in message and "RAYFLOW_YAML_MAX_DEPTH" in message


def test_nesting_beyond_the_recursion_limit_is_still_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "config:\n  deep: " + "[" * 5000 + "]" * 5000 + "\n" + TAIL)
    message = load_error(path, {"RAYFLOW_YAML_MAX_DEPTH": "100000"})
    assert message.startswith(f"{path}: maps and lists nest too deeply"), message


def test_nesting_through_aliases_counts_the_expanded_depth(tmp_path: Path) -> None:
    inner = "[" * 60 + "]" * 60
    text = HEAD + f"config:\n  a: &a {inner}\n  b: {'[' * 60}*a{']' * 60}\n" + TAIL
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}:7: maps and lists nest deeper than 100 levels once"), message
    value = load_topology(path, environ={"RAYFLOW_YAML_MAX_DEPTH": "200"}).config["b"]
    depth = 0
    while value:
        value, depth = value[0], depth + 1
    assert depth == 119  # 60 lists around the alias, 60 in it, the innermost one empty


def test_validate_reports_deep_nesting_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, HEAD + "config:\n  deep: " + "[" * 5000 + "]" * 5000 + "\n" + TAIL)
    assert main(["validate", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{path}:6:" in err and "Traceback" not in err and "RecursionError" not in err


# ------------------------------------------------------------------------------------------- size
def test_a_100_mb_file_is_refused_by_its_size_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as handle:
        handle.write(b"name: t\n")
        handle.truncate(100 * 1024 * 1024)  # sparse: 100 MiB on paper, nothing to write
    started = time.monotonic()
    message = load_error(path)
    assert time.monotonic() - started < 0.5
    assert message.startswith(f"{path}: '{path}' is too large (100 MiB; the limit is 1 MiB)")
    assert "RAYFLOW_YAML_MAX_BYTES" in message, message


def test_the_size_limit_can_be_raised(tmp_path: Path) -> None:
    padding = "# " + "x" * 1000 + "\n"
    path = write(tmp_path, HEAD + padding * 1100 + TAIL)  # about 1.05 MiB
    assert "is too large" in load_error(path)
    spec = load_topology(path, environ={"RAYFLOW_YAML_MAX_BYTES": "2MiB"})
    assert spec.component("b").kind == "bolt"
    message = load_error(path, {"RAYFLOW_YAML_MAX_BYTES": "4000"})
    assert "the limit is 3.9 KiB" in message, message


def test_the_size_limit_covers_the_includes_together(tmp_path: Path) -> None:
    padding = "# " + "x" * 1000 + "\n"
    write(tmp_path, TAIL + padding * 600, "common.yaml")
    path = write(tmp_path, HEAD + padding * 600 + "includes:\n  - file: common.yaml\n")
    message = load_error(path)
    line = 4 + 600 + 2
    assert message.startswith(f"{path}:{line}: key 'includes[0].file': "), message
    assert "for a file and its includes together" in message, message
    spec = load_topology(path, environ={"RAYFLOW_YAML_MAX_BYTES": "2MiB"})
    assert [c.id for c in spec.components] == ["s", "b"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("RAYFLOW_YAML_MAX_BYTES", "huge"), ("RAYFLOW_YAML_MAX_ALIAS_NODES", "0")],
)
def test_a_bad_limit_in_the_environment_names_the_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    path = write(tmp_path, HEAD + TAIL)
    with pytest.raises(ConfigError, match=f"environment variable {name}: expected a positive"):
        load_topology(path, environ={name: value})


# -------------------------------------------------------------------------- constructor arguments
SPOUT_AT_3 = """\
name: t
spouts:
  - id: s
    className: FIX.FileSpout
"""  # line 5 onwards: the case's keys


@pytest.mark.parametrize(
    ("keys", "line", "key", "fragment"),
    [
        (
            "    constructorArgs: [a, b, c]\n",
            5,
            "spouts[0].constructorArgs",
            "too many positional arguments; FileSpout takes (path, mode='r')",
        ),
        (
            "    kwargs:\n      path: x\n      mdoe: w\n",
            7,
            "spouts[0].kwargs.mdoe",
            "unexpected keyword argument 'mdoe' (did you mean 'mode'?)",
        ),
        (
            "    constructorArgs: [x]\n    kwargs: {path: y}\n",
            6,
            "spouts[0].kwargs.path",
            "multiple values for argument 'path'",
        ),
        ("", 4, "spouts[0].className", "missing a required argument: 'path'"),
        ("    kwargs: {mode: w}\n", 5, "spouts[0].kwargs", "missing a required argument: 'path'"),
    ],
    ids=["too-many-args", "unknown-kwarg", "twice", "missing", "missing-with-kwargs"],
)
def test_constructor_arguments_are_bound_at_load_time(
    tmp_path: Path, keys: str, line: int, key: str, fragment: str
) -> None:
    path = write(tmp_path, SPOUT_AT_3 + keys + TAIL)
    message = load_error(path)
    assert message.startswith(f"{path}:{line}: key '{key}': spout 's': class "), message
    assert "cannot be created with these arguments" in message and fragment in message, message


def test_arguments_that_fit_load_and_instantiate(tmp_path: Path) -> None:
    keys = "    constructorArgs: [in.txt]\n    kwargs: {mode: rb}\n"
    path = write(tmp_path, SPOUT_AT_3 + keys + TAIL)
    instance = load_topology(path, environ={}).component("s").instantiate()
    assert (instance.path, instance.mode) == ("in.txt", "rb")


def test_a_class_with_star_args_takes_anything(tmp_path: Path) -> None:
    text = HEAD + "    constructorArgs: [1, 2, 3]\n    kwargs: {anything: 1}\n" + TAIL
    spec = load_topology(write(tmp_path, text), environ={})
    assert spec.component("s").args == (1, 2, 3)


def test_custom_grouping_arguments_are_bound_too(tmp_path: Path) -> None:
    custom = "{className: FIX.ModGrouping, constructorArgs: [1, 2]}"
    text = HEAD + TAIL + f"  - from: s\n    to: b\n    grouping:\n      customClass: {custom}\n"
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}:13: key 'streams[1].grouping.customClass': "), message
    assert "too many positional arguments; ModGrouping takes (modulo=1)" in message, message


def test_classes_without_a_signature_are_not_checked() -> None:
    spout = ComponentSpec("s", "spout", ClassRef.of(dict), args=(1, 2, 3), kwargs={"x": 1})
    spec = TopologySpec("t", (spout,), ())
    assert spec.component("s").args == (1, 2, 3)


def test_the_builder_binds_arguments_too() -> None:
    class Needs(Spout):
        def __init__(self, path: str) -> None:
            self.path = path

        def next_tuple(self) -> None:
            self.finish()

    t = Topology("t")
    t.spout("s", Needs, kwargs={"path": "x", "paht": "x"})
    with pytest.raises(TopologyError, match=r"spout 's': .*'paht' \(did you mean 'path'\?\)"):
        t.build()


# ------------------------------------------------------------------------------------------ names
@pytest.mark.parametrize(
    "name",
    ["../../x", "a/b", "-x", ".hidden", "a..b", "x y", "n" * 101, "x\n", "__acker", "ü"],
)
def test_an_unsafe_topology_name_is_refused_at_its_line(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, "spouts:\n  - id: s\n    className: FIX.WordSpout\nname: placeholder\n")
    path.write_text(path.read_text().replace("placeholder", repr(name).replace("'", '"')))
    message = load_error(path)
    assert message.startswith(f"{path}:4: key 'name': topology name "), message
    assert "not safe in file paths and URLs" in message or "kept for rayflow's own" in message, (
        message
    )


@pytest.mark.parametrize("bad", ["../x", "a/b", "__acker", "x:y"])
def test_an_unsafe_component_id_is_refused_at_the_id_line(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, HEAD + TAIL)
    path.write_text(path.read_text().replace("id: b", f'id: "{bad}"'))
    message = load_error(path)
    assert message.startswith(f"{path}:6: key 'bolts[0].id': bolt name "), message


def test_safe_names_load(tmp_path: Path) -> None:
    text = (HEAD + TAIL).replace("name: t", "name: Word-Count.v2_1")
    text = text.replace("id: b", "id: b_2.x-y").replace("to: b}", "to: b_2.x-y}")
    spec = load_topology(write(tmp_path, text), environ={})
    assert spec.name == "Word-Count.v2_1" and spec.components[1].id == "b_2.x-y"


def test_the_builder_shares_the_name_rules() -> None:
    with pytest.raises(TopologyError, match=r"topology name '\.\./\.\./x' is not safe"):
        Topology("../../x").spout("s", _BuilderSpout).build()
    t = Topology("t")
    t.spout("s", _BuilderSpout)
    t.bolt("a/b", ListSink).shuffle("s")
    with pytest.raises(TopologyError, match="bolt name 'a/b' is not safe"):
        t.build()


class _BuilderSpout(Spout):
    def next_tuple(self) -> None:
        self.finish()


def test_system_components_keep_their_names() -> None:
    from rayflow.runtime.plan import with_ackers

    spout = ComponentSpec("s", "spout", ClassRef.of(_BuilderSpout))
    spec = with_ackers(TopologySpec("t", (spout,), ()), ackers=2)
    assert [c.id for c in spec.components] == ["s", "__acker"]


# --------------------------------------------------------------------------- the offending key
def test_an_unknown_to_is_reported_at_the_to_line(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + TAIL + "  - from: s\n    to: cuont\n")
    message = load_error(path)
    assert message.startswith(f"{path}:11: key 'streams[1].to': stream to unknown component"), (
        message
    )
    assert "'cuont'" in message


def test_a_stream_built_in_python_keeps_its_message_without_a_line() -> None:
    spout = ComponentSpec("s", "spout", ClassRef.of(_BuilderSpout))
    with pytest.raises(TopologyError) as info:
        TopologySpec("t", (spout,), (StreamSpec("s", "nope", Grouping()),))
    assert str(info.value).startswith("stream to unknown component 'nope'")
