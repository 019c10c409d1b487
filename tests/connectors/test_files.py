"""FileSpout: whole files over several tasks, and files followed as they grow."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from rayflow import Topology
from rayflow.connectors.files import FileSpout
from rayflow.errors import TaskError
from rayflow.testing import ListSink, run


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
