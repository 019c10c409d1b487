"""FileSpout: whole files over several tasks, and files followed as they grow."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from rayflow import Topology
from rayflow.connectors.files import FileSink, FileSpout
from rayflow.errors import TaskError
from rayflow.testing import ListSink, TestingSpout, run


def topology(paths: list[str], parallelism: int, **kwargs: object) -> Topology:
    t = Topology("files")
    t.spout("lines", FileSpout, parallelism=parallelism, kwargs=dict(paths=paths, **kwargs))
    t.bolt("sink", ListSink).shuffle("lines")
    return t


@pytest.mark.parametrize("reliability", ["none", "at_least_once"])
def test_every_line_of_every_file_once(tmp_path: Path, reliability: str) -> None:
    expected = set()
    for name in ("a.log", "b.log", "c.txt"):
        lines = [f"{name} line {i}" for i in range(500)]
        (tmp_path / name).write_text("\n".join(lines))  # the last line has no newline
        expected |= {(str(tmp_path / name), line) for line in lines}
    t = topology([str(tmp_path / "*.log"), str(tmp_path / "c.txt")], parallelism=2)
    result = run(t, overrides={"reliability": reliability})
    rows = result.outputs["sink"]
    assert len(rows) == len(expected)
    assert {(path, line) for path, _, line in rows} == expected
    first = next(r for r in rows if r[2] == "b.log line 1")
    assert first[1] == len("b.log line 0\n")  # offsets are byte positions


def test_no_matching_file_is_an_error_naming_the_pattern(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"no file matches .*nothing-\*\.log"):
        run(topology([str(tmp_path / "nothing-*.log")], parallelism=1))


def test_follow_reads_appended_lines_new_files_and_rotation(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\n")
    appended = threading.Event()

    def writer() -> None:
        with open(log, "a") as f:
            f.write("three\nfou")
            f.flush()
            f.write("r\n")
        (tmp_path / "other.log").write_text("new file\n")
        os.replace(log, tmp_path / "app.log.1")  # rotated: a new app.log starts empty
        (tmp_path / "app.log").write_text("after rotation\n")
        appended.set()

    t = topology([str(tmp_path / "*.log")], parallelism=1, follow=True, discover_ms=100)
    thread = threading.Timer(0.5, writer)
    thread.start()
    result = run(t, duration=4)
    thread.join()
    assert appended.is_set()
    lines = [line for _, _, line in result.outputs["sink"]]
    assert sorted(lines) == sorted(["one", "two", "three", "four", "new file", "after rotation"])


def parts(folder: Path) -> tuple[list[list[object]], list[str]]:
    """Every line of the visible parts, and the names of hidden files left."""
    rows = [
        json.loads(line)
        for f in sorted(folder.glob("part-*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    return rows, sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("reliability", ["none", "at_least_once"])
def test_file_sink_writes_every_tuple_in_rolling_visible_parts(
    tmp_path: Path, reliability: str
) -> None:
    class Numbers(TestingSpout):
        outputs = ["n", "word"]

    out = tmp_path / "out"
    t = Topology("sink")
    t.spout("numbers", Numbers, args=([[i, f"w{i % 7}"] for i in range(3000)],))
    t.bolt("out", FileSink, parallelism=3, kwargs={"path": str(out), "roll_bytes": 4096}
           ).shuffle("numbers")  # fmt: skip
    result = run(t, overrides={"reliability": reliability})
    rows, hidden = parts(out)
    assert sorted(rows) == sorted([i, f"w{i % 7}"] for i in range(3000))
    assert hidden == []  # every part was made visible at the end
    assert len(list(out.glob("part-out-*.jsonl"))) > 3  # rolled by size
    if reliability == "at_least_once":
        assert result.counter("out", "acked") == 3000


def test_file_sink_makes_a_crashed_tasks_lines_visible(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    left = out / ".part-out-0-3.jsonl.inprogress"
    left.write_text('[1, "a"]\n[2, "b"]\n[3, "c')  # the crash cut the last line
    t = Topology("sink")
    t.spout("numbers", TestingSpout, args=([[10], [11]],))
    t.bolt("out", FileSink, kwargs={"path": str(out)}).shuffle("numbers")
    run(t)
    assert (out / "part-out-0-3.jsonl").read_text() == '[1, "a"]\n[2, "b"]\n'
    assert sorted(json.loads(x) for x in (out / "part-out-0-4.jsonl").read_text().splitlines()) == [
        [10], [11]
    ]  # fmt: skip
    assert parts(out)[1] == []
