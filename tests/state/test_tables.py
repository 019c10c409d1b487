"""The Streams API's keyed tables and due-key indexes on the rocksdb backend, on a real RocksDB:
values changed in place are written back when the task settles, tables move between backends
in the same form, the index of due keys lives in the store, is left out of savepoints, is found
again after a restore of a RocksDB checkpoint (also of other key groups) and built again from
the table otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rayflow.keys import encode_key, key_group_of, key_groups_of_task
from rayflow.spec.state_settings import StoreSettings
from rayflow.state import due as due_module
from rayflow.state import tables
from rayflow.state.backends import open_store
from rayflow.state.due import DueKeys, StoreDueKeys
from rayflow.state.incremental import take_local
from rayflow.state.keyed import KeyedState, StateError
from rayflow.state.rocksdb import RocksStore
from rayflow.state.tables import StoreTable

GROUPS = 16


def keyed(tmp_path: Path, backend: str = "rocksdb", owner: str = "t/win.0") -> KeyedState:
    store = open_store(StoreSettings(backend, str(tmp_path / "db")), owner)
    return KeyedState("win", ("k",), GROUPS, store=store)


def stored(state: KeyedState, name: str) -> dict[bytes, Any]:
    """What the store holds of one state: encoded key -> (key, value)."""
    out = {}
    for _group, states in state.store.grouped(None):
        out.update({k: (e[0], e[1]) for k, e in states.get(name, {}).items()})
    return out


def test_a_store_table_writes_back_changes_made_in_place_and_deletes(tmp_path: Path) -> None:
    state = keyed(tmp_path)
    windows = state.table("window")
    assert isinstance(windows, StoreTable)
    windows["a"] = {0: [10, 1, False]}
    windows["a"][0][1] += 1  # in place, as the window operator does
    windows["b"] = {0: [10, 5, False]}
    assert "c" not in windows and windows.get("c") is None
    assert stored(state, "window") == {}  # nothing written before the task settles
    state.settle()
    assert stored(state, "window") == {
        encode_key("a"): ("a", {0: [10, 2, False]}),
        encode_key("b"): ("b", {0: [10, 5, False]}),
    }
    windows["a"][0][2] = True  # read (from the store) and changed in place
    del windows["b"]
    with pytest.raises(KeyError):
        del windows["c"]
    state.settle()
    assert stored(state, "window") == {encode_key("a"): ("a", {0: [10, 2, True]})}
    assert dict(windows.items()) == {"a": {0: [10, 2, True]}} and len(windows) == 1
    state.close()


def test_a_large_cache_settles_between_keys_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rayflow.state.keyed.CACHE_ENTRIES", 10)
    state = keyed(tmp_path)
    counts = state.table("count")
    for i in range(11):
        counts[f"k{i}"] = i
    assert stored(state, "count") == {}
    state.settle_some()
    assert len(stored(state, "count")) == 11 and counts.cache == {}  # type: ignore[attr-defined]
    state.close()
    assert tables.CACHE_ENTRIES > 10  # the module's own bound is untouched


@pytest.mark.parametrize("first, second", [("memory", "rocksdb"), ("rocksdb", "memory")])
def test_tables_move_between_backends_with_keys_of_any_type(
    tmp_path: Path, first: str, second: str
) -> None:
    keys: list[Any] = ["cow", 7, (1, "a"), 1.0, True, None]
    before = keyed(tmp_path / "a", first)
    table = before.table("reduce")
    for n, key in enumerate(keys):
        index = tables.table_key(key)
        before.keep_original(index, key)
        table[index] = n
    before.settle()
    snapshot = before.snapshot()
    before.close()
    after = keyed(tmp_path / "b", second, owner="t/win.1")
    again = after.table("reduce")
    after.restore(snapshot)
    got = sorted((repr(after.original(index)), value) for index, value in again.items())
    assert got == sorted((repr(key), n) for n, key in enumerate(keys))  # 1.0 and True apart
    after.close()


def test_due_keys_live_in_the_store_and_savepoints_leave_them_out(tmp_path: Path) -> None:
    state = keyed(tmp_path)
    timers: list[int] = []
    due = state.due("window", range(GROUPS), timers.append)
    assert isinstance(due, StoreDueKeys)
    for i in range(100):
        due.add(f"k{i}", 1_000 * (i % 3) - 1_000)  # negative times sort first too
    assert timers == [-1000, 0, 1000]  # one timer per distinct time
    assert sorted(due.keys(0)) == sorted(f"k{i}" for i in range(1, 100, 3))
    due.drop(0)
    assert list(due.keys(0)) == [] and len(list(due.keys(1_000))) == 33
    assert len(list(due.keys(-1_000))) == 34  # the range deleted was that time's only
    assert stored(state, "~window")  # in the store...
    assert all("~window" not in states for states in map(_unpickled, state.snapshot().values()))
    state.close()  # ...and not in the full form a savepoint is


def test_a_fired_time_is_deleted_key_by_key_with_what_it_gained_while_firing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = keyed(tmp_path)
    due = state.due("window", range(GROUPS), lambda when: None)
    for i in range(10):
        due.add(f"k{i}", 100)
    due.add("later", 200)
    store = state.store
    assert isinstance(store, RocksStore)

    def point_deletes() -> int:
        return store.database().property_int_value("rocksdb.num-deletes-active-mem-table")

    before = point_deletes()
    fired = []
    for key in due.keys(100):
        fired.append(key)
        if key == "k3":
            due.add("gained", 100)  # added to the time being fired: gone with it
    due.drop(100)
    assert sorted(fired) == sorted(f"k{i}" for i in range(10))
    assert [key for key, _ in stored(state, "~window").values()] == ["later"]
    # One point delete per entry, no range tombstone (reads would step over it ever after).
    assert point_deletes() - before == 11

    for i in range(5):
        due.add(f"m{i}", 300)
    reading = due.keys(300)
    next(reading)  # not read to its end (an error stopped the firing): the whole time goes
    due.drop(300)
    assert [key for key, _ in stored(state, "~window").values()] == ["later"]

    monkeypatch.setattr(due_module, "_POINT_DELETES", 5)  # more keys than it remembers
    for i in range(10):
        due.add(f"n{i}", 400)
    before = point_deletes()
    assert len(list(due.keys(400))) == 10 and len(due.fired) == 6
    due.drop(400)
    assert point_deletes() == before  # by range, and all gone
    assert [key for key, _ in stored(state, "~window").values()] == ["later"]
    state.close()


def _unpickled(data: bytes) -> dict[str, Any]:
    import pickle

    return pickle.loads(data)


def test_a_restored_rocksdb_checkpoint_brings_its_due_keys_a_savepoint_rebuilds_them(
    tmp_path: Path,
) -> None:
    state = keyed(tmp_path)
    due = state.due("window", range(GROUPS), lambda when: None)
    for i in range(200):
        due.add(f"k{i}", 10_000 if i % 2 else 20_000)
    state.settle()
    store = state.store
    assert isinstance(store, RocksStore)
    folder = take_local(store, 1, keep=True)
    savepoint = state.snapshot()
    state.close()

    def never() -> Any:
        raise AssertionError("the index was restored: the table need not be read")
        yield

    # Rescaled to 2 tasks: task 1's key groups copied out of the checkpoint, index included.
    mine = key_groups_of_task(1, GROUPS, 2)
    restored = keyed(tmp_path, owner="t/win.5")
    restored.restore_databases([(folder, range(GROUPS), ({}, ""))], mine)
    timers: list[int] = []
    again = restored.due("window", mine, timers.append)
    again.resume(never())
    assert sorted(timers) == [10_000, 20_000]
    owned = {f"k{i}" for i in range(200) if key_group_of(encode_key(f"k{i}"), GROUPS) in mine}
    assert set(again.keys(10_000)) | set(again.keys(20_000)) == owned
    restored.close()

    from_savepoint = keyed(tmp_path, owner="t/win.6")
    from_savepoint.restore(savepoint)
    rebuilt = from_savepoint.due("window", range(GROUPS), timers.append)
    rebuilt.resume(iter([("k1", 10_000), ("k2", 20_000)]))
    assert list(rebuilt.keys(10_000)) == ["k1"] and list(rebuilt.keys(20_000)) == ["k2"]
    from_savepoint.close()


def test_the_memory_backend_keeps_due_keys_in_a_dict(tmp_path: Path) -> None:
    state = keyed(tmp_path, "memory")
    due = state.due("window", range(GROUPS), lambda when: None)
    assert isinstance(due, DueKeys)
    due.add("a", 5)
    assert state.store.empty and list(due.keys(5)) == ["a"]


def test_an_unpicklable_value_is_named_and_the_rest_of_the_batch_is_written(
    tmp_path: Path,
) -> None:
    state = keyed(tmp_path)
    table = state.table("reduce")
    table["good"] = 1
    table["bad"] = lambda: None  # cannot be pickled
    with pytest.raises(StateError, match=r"'bad'.*function"):
        state.settle()
    assert {key for key, _ in stored(state, "reduce").values()} == {"good"}
    state.close()


def test_a_key_deleted_before_the_table_settles_is_still_known(tmp_path: Path) -> None:
    state = keyed(tmp_path)
    table = state.table("process.timers")
    index = tables.table_key(("a", 1))
    state.keep_original(index, ("a", 1))
    table[index] = [5]
    state.settle()  # the key now lives only with its entry
    del table[index]
    assert state.original(index) == ("a", 1)
    state.close()
