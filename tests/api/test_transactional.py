"""Two-phase commit and exactly-once in one process (rayflow.testing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rayflow import Spout, Topology, TopologyError, TwoPhaseCommitBolt
from rayflow.api.transactional import FINAL
from rayflow.connectors.files import FileSink
from rayflow.testing import TestingSpout, run


class Recorder(TwoPhaseCommitBolt):
    def __init__(self) -> None:
        self.log: list[Any] = []

    def begin(self, checkpoint_id: int) -> list:
        self.log.append(("begin", checkpoint_id))
        return []

    def write(self, transaction: list, tup: Any) -> None:
        transaction.append(tup)

    def pre_commit(self, transaction: list) -> None:
        self.log.append(("pre_commit", list(transaction)))

    def commit(self, transaction: list) -> None:
        self.log.append(("commit", list(transaction)))


def test_transactions_commit_only_when_their_checkpoint_completes() -> None:
    sink = Recorder()
    sink.process("a")
    snapshot = sink._snapshot_for(1)  # barrier 1 passes: pre-commit, a new one on demand
    sink.process("b")
    sink._snapshot_for(2)
    assert ("commit", ["a"]) not in sink.log
    sink.notify_checkpoint_complete(1)
    assert sink.log[-1] == ("commit", ["a"])
    assert not any(entry == ("commit", ["b"]) for entry in sink.log)
    restored = Recorder()  # a crash after checkpoint 1: its transaction commits again
    restored._restore_for(snapshot)
    assert restored.log == [("commit", ["a"])]
    restored.process("c")
    assert restored.log[-1] == ("begin", 2)
    restored._snapshot_for(FINAL)
    restored.notify_checkpoint_complete(FINAL)
    assert restored.log[-1] == ("commit", ["c"])


def test_file_sink_exactly_once_in_process(tmp_path: Path) -> None:
    t = Topology("files", config={"reliability": "exactly_once"})
    t.spout("nums", TestingSpout, args=([[i] for i in range(50)],))
    t.bolt("out", FileSink, kwargs={"path": str(tmp_path)}).shuffle("nums")
    run(t)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names and all(n.startswith("part-out-0-") for n in names), names
    lines = [json.loads(x) for n in names for x in (tmp_path / n).read_text().splitlines()]
    assert sorted(lines) == [[i] for i in range(50)]


class Forgetful(Spout):
    outputs = ["n"]

    def next_tuple(self) -> None:
        self.finish()


def test_exactly_once_refuses_a_spout_that_cannot_rewind() -> None:
    t = Topology("forgetful", config={"reliability": "exactly_once"})
    t.spout("src", Forgetful)
    t.bolt("out", FileSink, kwargs={"path": "/nonexistent"}).shuffle("src")
    with pytest.raises(TopologyError, match=r"spout 'src' .*Forgetful\) cannot rewind"):
        run(t)
