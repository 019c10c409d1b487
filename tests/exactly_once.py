"""Components and helpers for the exactly-once tests (importable by task actors)."""

from __future__ import annotations

import glob
import json
import os
import time
from collections import Counter
from typing import Any

from rayflow import Bolt, Topology, Tuple
from rayflow.connectors.files import FileSink
from rayflow.testing import Pause, TestingSpout

WORDS = [f"w{i}" for i in range(13)]


class Words(TestingSpout):
    outputs = ["word"]


class RunningCount(Bolt):
    """Keyed state: emits (word, how many times seen so far); exactly-once makes each pair
    appear once in the committed output, whatever fails."""

    outputs = ["word", "count"]

    def process(self, tup: Tuple) -> None:
        count = self.state.value("count", default=0)
        count.set(count.get() + 1)
        self.emit([tup[0], count.get()])


class RaisingCount(RunningCount):
    """A running count whose ``process`` raises *after* changing the key's state: once in the
    whole job (a transient fault, remembered in the file ``flag``), or every time it sees
    ``word`` when ``flag`` is empty."""

    def __init__(self, word: str, flag: str = "") -> None:
        self.word, self.flag = word, flag

    def process(self, tup: Tuple) -> None:
        count = self.state.value("count", default=0)
        count.set(count.get() + 1)
        if tup[0] == self.word and count.get() == 3:  # state changed, nothing emitted yet
            if not self.flag:
                raise RuntimeError(f"{self.word} breaks every time")
            if not os.path.exists(self.flag):
                with open(self.flag, "w"):
                    pass
                raise RuntimeError(f"a transient fault at {self.word}")
        self.emit([tup[0], count.get()])


class FinalSnapshotFailsOnce(RunningCount):
    """A running count whose snapshot raises once in the whole job (remembered in the file
    ``flag``): at the end of the input, so its part of the final checkpoint fails."""

    def __init__(self, flag: str) -> None:
        self.flag, self.ended = flag, False

    def cleanup(self) -> None:  # the end of the input: the final snapshot comes next
        self.ended = True

    def snapshot(self) -> None:
        if self.ended:
            try:
                open(self.flag, "x").close()  # exclusive: only one snapshot in the job fails
            except FileExistsError:
                return
            raise OSError("the disk is full (once)")


def events(n: int, pause_every: int, pause: float) -> list[Any]:
    """``n`` words, pausing now and then so that a run lasts long enough for failures."""
    items: list[Any] = []
    for i in range(n):
        items.append(WORDS[(i * 7 + i // 13) % len(WORDS)])
        if i % pause_every == pause_every - 1:
            items.append(Pause(pause))
    return items


def counting(
    out: str,
    fast: list[Any],
    slow: list[Any],
    count_parallelism: int = 2,
    config: dict[str, Any] | None = None,
    count: tuple[type, dict[str, Any]] = (RunningCount, {}),
    chained_sink: bool = False,
) -> Topology:
    """Two spouts (one slower: barriers must align) -> keyed running count -> FileSink;
    ``chained_sink``: a sink task per count task, over a FORWARD edge (they chain)."""
    t = Topology(
        "exactly",
        config={
            "reliability": "exactly_once",
            "checkpoint.interval": "300ms",
            "checkpoint.storage": os.path.join(out, "checkpoints"),
            "batch.size": 64,
            **(config or {}),
        },
    )
    t.spout("fast", Words, kwargs={"items": fast})
    t.spout("slow", Words, kwargs={"items": slow})
    t.bolt("count", count[0], kwargs=count[1], parallelism=count_parallelism).fields(
        "fast", "word"
    ).fields("slow", "word")
    sink = t.bolt(
        "sink",
        FileSink,
        kwargs={"path": os.path.join(out, "files")},
        parallelism=count_parallelism if chained_sink else 1,
    )
    sink.forward("count") if chained_sink else sink.shuffle("count")
    return t


def expected_rows(*streams: list[Any]) -> Counter:
    totals = Counter(w for items in streams for w in items if isinstance(w, str))
    return Counter((w, c) for w, n in totals.items() for c in range(1, n + 1))


def committed_rows(out: str) -> Counter:
    """The (word, count) lines of the sink's visible files (staged ones are hidden)."""
    rows: Counter = Counter()
    for path in glob.glob(os.path.join(out, "files", "part-*")):
        with open(path, encoding="utf-8") as f:
            rows.update(tuple(json.loads(line)) for line in f)
    return rows


def run_deployment(deployment: Any, timeout: float = 180.0, each: Any = None) -> None:
    """Drive a started deployment (as the embedded launcher does) until it ends."""
    deadline = time.monotonic() + timeout
    while not deployment.wait(timeout=0.2):
        if each is not None:
            each()
        assert time.monotonic() < deadline, "the topology did not finish in time"
