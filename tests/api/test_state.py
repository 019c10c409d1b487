"""Keyed state: value/map/list scoped to the tuple's key, TTL, key groups, clear errors; every
test on both backends (``memory`` and ``rocksdb``), which must give the same results."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rayflow import Bolt, Topology, Tuple
from rayflow.spec.state_settings import StoreSettings
from rayflow.state.backends import open_store
from rayflow.state.keyed import KeyedState, StateError
from rayflow.testing import ListSink, TestingSpout, run

Make = Callable[..., KeyedState]


@pytest.fixture(params=["memory", "rocksdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The config that picks the backend (a rocksdb folder of the test's own)."""
    return {"state.backend": request.param, "state.rocksdb.dir": str(tmp_path / "rocksdb")}


@pytest.fixture
def make(backend: dict[str, Any]) -> Iterator[Make]:
    """``KeyedState`` on the test's backend; every store made is closed afterwards."""
    made: list[KeyedState] = []

    def keyed(component: str, fields: tuple[str, ...], max_parallelism: int, **kw: Any):
        store = open_store(StoreSettings.from_config(backend), f"t/{component}.{len(made)}")
        made.append(KeyedState(component, fields, max_parallelism, store=store, **kw))
        return made[-1]

    yield keyed
    for state in made:
        state.close()


WORDS = ["the", "cow", "the", "moon", "cow", "the", "a", "moon", "the"] * 20


class Words(TestingSpout):
    outputs = ["word", "n"]


class RunningCount(Bolt):
    """Per word: a count (value), the positions seen (list) and counts by parity (map)."""

    outputs = ["word", "count", "seen", "parity"]

    def prepare(self, context: object) -> None:
        self.count = self.state.value("count", default=0)
        self.seen = self.state.list("seen")
        self.parity = self.state.map("parity")

    def process(self, tup: Tuple) -> None:
        self.count.set(self.count.get() + 1)
        self.seen.append(tup["n"])
        side = "even" if tup["n"] % 2 == 0 else "odd"
        self.parity[side] = self.parity.get(side, 0) + 1
        self.emit([tup["word"], self.count.get(), len(self.seen), dict(self.parity.items())])


def counting(grouping: str = "fields") -> Topology:
    t = Topology("keyed")
    t.spout("words", Words, args=([[w, i] for i, w in enumerate(WORDS)],))
    bolt = t.bolt("count", RunningCount, parallelism=3)
    if grouping == "fields":
        bolt.fields("words", "word")
    else:
        bolt.shuffle("words")
    t.bolt("sink", ListSink).global_("count")
    return t


@pytest.mark.parametrize("reliability", ["none", "at_least_once"])
def test_state_is_scoped_to_each_tuples_key(reliability: str, backend: dict[str, Any]) -> None:
    result = run(counting(), overrides={"reliability": reliability, **backend})
    if backend["state.backend"] == "rocksdb":  # its tasks' folders were made, and removed
        assert not any((Path(backend["state.rocksdb.dir"]) / "keyed").iterdir())
    rows = result.outputs["sink"]
    final = {}
    for word, count, seen, parity in rows:
        assert count == seen == sum(parity.values())  # the three states moved together
        final[word] = max(final.get(word, 0), count)
    assert final == dict(Counter(WORDS))


def errors(result: object, component: str) -> list[str]:
    return [e["error"] for task in result.tasks[component] for e in task.get("errors", [])]  # type: ignore[attr-defined]


def test_keyed_state_without_a_fields_grouping_says_what_to_do() -> None:
    result = run(counting(grouping="shuffle"))
    assert result.counter("count", "failed") == len(WORDS)  # each tuple fails, visibly
    assert any("not all grouped by the same FIELDS" in e for e in errors(result, "count"))


def test_keyed_state_in_process_batch_says_it_needs_process() -> None:
    class BatchCount(Bolt):
        def process_batch(self, batch: object) -> None:
            self.state.value("count").set(1)

    t = Topology("batch-state")
    t.spout("words", Words, args=([["a", 1]],))
    t.bolt("count", BatchCount).fields("words", "word")
    result = run(t)
    assert any("use it in process()" in e for e in errors(result, "count"))


def test_ttl_expires_values_on_the_tasks_clock(make: Make) -> None:
    now = [1_000]
    state = make("c", ("k",), 128, clock=lambda: now[0])
    session = state.value("session", ttl="10s")
    state.set_key(("a",))
    session.set("open")
    now[0] += 9_000
    assert session.get() == "open"
    now[0] += 2_000
    assert session.get() is None
    tags = state.list("tags", ttl=5)
    tags.append("x")
    now[0] += 6_000
    assert list(tags) == []


def test_snapshot_is_by_key_group_and_restores_into_other_tasks(make: Make) -> None:
    state = make("c", ("k",), max_parallelism=8)
    counts = state.value("n", default=0)
    for key in range(50):
        state.set_key((f"k{key}",))
        counts.set(key)
    groups = state.snapshot()
    assert set(groups) <= set(range(8)) and len(groups) > 1
    # two tasks of a new parallelism each take some of the key groups back
    first, second = make("c", ("k",), 8), make("c", ("k",), 8)
    first.restore({g: d for g, d in groups.items() if g < 4})
    second.restore({g: d for g, d in groups.items() if g >= 4})
    for key in range(50):
        for task in (first, second):
            task.set_key((f"k{key}",))
        values = {task.value("n").get() for task in (first, second)} - {None}
        assert values == {key}


def test_an_unpicklable_value_is_named(make: Make) -> None:
    state = make("count", ("k",), 128)
    state.set_key(("a",))
    with pytest.raises(StateError, match=r"state 'lock' of key 'a' holds a lock"):
        state.value("lock").set(threading.Lock())  # rocksdb: at once; memory: at the snapshot
        state.snapshot()


def test_a_snapshot_taken_on_one_backend_restores_on_the_other(tmp_path: Path) -> None:
    """The snapshot's form does not depend on the backend: memory -> rocksdb -> memory."""
    memory = KeyedState("c", ("k",), 16)
    store = open_store(StoreSettings("rocksdb", str(tmp_path)), "t/c.0")
    rocks = KeyedState("c", ("k",), 16, store=store)
    back = KeyedState("c", ("k",), 16)
    for key in range(40):
        memory.set_key((key, "x"))
        memory.value("n").set(key)
        memory.map("m")["k"] = [key]
        memory.list("l").extend([key, key + 1])
    rocks.restore(memory.snapshot())
    back.restore(rocks.snapshot())
    rocks.close()
    for key in range(40):
        back.set_key((key, "x"))
        assert (back.value("n").get(), back.map("m")["k"], back.list("l").get()) == (
            key,
            [key],
            [key, key + 1],
        )


def test_expired_state_nobody_reads_is_swept(make: Make) -> None:
    now = [0]
    state = make("c", ("k",), 8, clock=lambda: now[0])
    for key in range(30):
        state.set_key((key,))
        state.value("short", ttl=1).set(key)
        state.value("long").set(key)
    now[0] = 2_000
    swept = 0
    for _ in range(10):  # a sweep looks at part of the state; enough of them cover all of it
        swept += state.sweep()
    assert swept == 30
    assert list(state.store.grouped(None))  # what has no TTL stays
    assert all(set(states) == {"long"} for _, states in state.store.grouped(None))


def test_a_value_changed_in_place_is_kept_only_once_set_back(make: Make, backend: dict) -> None:
    """The rule both backends document: change state through set/append/[]=; a list read and
    changed in place is the store's own object in memory, a copy on rocksdb."""
    state = make("c", ("k",), 8)
    state.set_key(("a",))
    items = state.value("items", default=None)
    items.set([1])
    got = items.get()
    got.append(2)
    in_place = items.get()
    items.set(got)
    assert items.get() == [1, 2]  # set back: the same on both
    assert in_place == ([1, 2] if backend["state.backend"] == "memory" else [1])


def test_rocksdb_folders_of_dead_processes_are_removed_and_a_closed_store_removes_its_own(
    tmp_path: Path,
) -> None:
    settings = StoreSettings("rocksdb", str(tmp_path))
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    parent = tmp_path / "t"
    parent.mkdir()
    left = [  # what actors killed with their state open leave: databases, checkpoints, restores
        parent / f"c.0.{dead}.0",
        parent / f"c.1.{dead}.3.chk-7",
        parent / f"c.1.{dead}.3.chk-8.tmp",  # killed while RocksDB wrote a checkpoint
        parent / f"c.1.{dead}.restore-4",
    ]
    alive = parent / f"c.2.{os.getppid()}.0"  # a live process's folder stays
    for folder in [*left, alive]:
        folder.mkdir()
    store = open_store(settings, "t/c.0")
    assert all(folder.exists() for folder in left), "nothing is opened before the first use"
    store.put(1, "n", b"k", ("k", 1, None))
    assert not any(folder.exists() for folder in left) and alive.exists()
    mine = store.path  # type: ignore[attr-defined]
    assert mine.exists()
    store.close()
    assert not mine.exists()


def test_a_bad_backend_is_refused_naming_the_key() -> None:
    t = counting()
    with pytest.raises(ValueError, match=r"state\.backend: expected one of memory, rocksdb"):
        run(t, overrides={"state.backend": "redis"})
    with pytest.raises(ValueError, match=r"state\.rocksdb\.memory: expected at least 4MiB"):
        run(t, overrides={"state.rocksdb.memory": "1MiB"})
