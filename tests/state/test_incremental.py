"""Incremental checkpoints: RocksDB's on a real RocksDB and a real folder (what is uploaded, what
a checkpoint restores: adopted, read at other parallelism, into the memory backend; what pruning
keeps; a missing or corrupted shared file named) and the memory backend's bases and deltas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rayflow.keys import key_groups_of_task
from rayflow.spec.state_settings import StoreSettings
from rayflow.state.backends import open_store
from rayflow.state.deltas import MAX_DELTAS, apply_chain, next_part
from rayflow.state.incremental import LOCAL, fetch, full_form, shared_paths, take_local, upload
from rayflow.state.keyed import KeyedState
from rayflow.state.rocksdb import RocksStore
from rayflow.state.storage import CheckpointError, CheckpointStorage
from rayflow.state.stores import MemoryStore

GROUPS = 16


def keyed(tmp_path: Path, backend: str = "rocksdb", owner: str = "t/count.0") -> KeyedState:
    store = open_store(StoreSettings(backend, str(tmp_path / "db")), owner)
    return KeyedState("count", ("k",), GROUPS, store=store)


def write(state: KeyedState, keys: range, value: Any) -> None:
    for key in keys:
        state.set_key((f"k{key}",))
        state.value("n").set(value(key))


def read(state: KeyedState, keys: range) -> dict[int, Any]:
    out = {}
    for key in keys:
        state.set_key((f"k{key}",))
        out[key] = state.value("n").get()
    return out


def checkpoint(state: KeyedState, storage: CheckpointStorage, number: int) -> dict[str, Any]:
    store = state.store
    assert isinstance(store, RocksStore)
    where = storage.checkpoint_path("t", number)
    return upload(store, take_local(store, number), storage, where, "count-0")


def restored(
    tmp_path: Path, manifest: dict, number: int, storage: CheckpointStorage, into: str
) -> Path:
    """The checkpoint's database rebuilt from the storage alone (no local checkpoint)."""
    return fetch(
        manifest, "nobody/count.0", number, storage, storage.checkpoint_path("t", number),
        tmp_path / into,
    )  # fmt: skip


@pytest.fixture
def storage(tmp_path: Path) -> CheckpointStorage:
    return CheckpointStorage(str(tmp_path / "checkpoints"))


def test_a_checkpoint_uploads_what_changed_since_the_last_and_restores_exactly(
    tmp_path: Path, storage: CheckpointStorage
) -> None:
    state = keyed(tmp_path)
    write(state, range(20_000), lambda k: k)
    first = checkpoint(state, storage, 1)
    write(state, range(0, 20_000, 100), lambda k: -k)  # 1% of the keys change
    second = checkpoint(state, storage, 2)
    assert first["uploaded"] > 0
    assert second["uploaded"] < first["uploaded"] / 5  # the change, not the whole state
    assert set(shared_paths(first)) & set(shared_paths(second))  # files shared by both
    expected = read(state, range(20_000))
    state.close()

    again = keyed(tmp_path, owner="t/count.1")
    folder = restored(tmp_path, second, 2, storage, "fetched")
    home = storage.topology_path("t")
    again.restore_databases([(folder, range(GROUPS), (second["files"], home))], range(GROUPS))
    assert read(again, range(20_000)) == expected
    again.set_key(("k5",))
    again.value("n").set("changed after the restore")  # the adopted database is writable
    # the adopted database knows its files are uploaded: the next checkpoint adds only its own
    assert checkpoint(again, storage, 3)["uploaded"] < first["uploaded"] / 5
    again.close()


@pytest.mark.parametrize("backend", ["rocksdb", "memory"])
def test_a_rescaled_task_or_the_memory_backend_reads_only_its_key_groups(
    tmp_path: Path, storage: CheckpointStorage, backend: str
) -> None:
    state = keyed(tmp_path)
    write(state, range(3_000), lambda k: k * 2)
    manifest = checkpoint(state, storage, 1)
    expected = read(state, range(3_000))
    state.close()
    parts = [keyed(tmp_path, backend, f"t/count.{i}") for i in range(3)]  # parallelism 1 -> 3
    for index, part in enumerate(parts):
        folder = restored(tmp_path, manifest, 1, storage, f"fetched-{index}")
        home = storage.topology_path("t")
        part.restore_databases(
            [(folder, range(GROUPS), (manifest["files"], home))],
            key_groups_of_task(index, GROUPS, 3),
        )
        assert not folder.exists()  # read out, then removed
    found: dict[int, Any] = {}
    for part in parts:
        for key, value in read(part, range(3_000)).items():
            if value is not None:
                assert key not in found, "a key restored into two tasks"
                found[key] = value
        part.close()
    assert found == expected


def test_a_task_reset_in_place_links_its_local_checkpoint_instead_of_downloading(
    tmp_path: Path, storage: CheckpointStorage
) -> None:
    state = keyed(tmp_path)
    write(state, range(500), lambda k: k)
    manifest = checkpoint(state, storage, 1)
    for entry in manifest["files"].values():  # the storage's copies are gone...
        (Path(storage.topology_path("t")) / entry["path"]).unlink()
    state.close()  # ...but this process still has its local checkpoint
    folder = fetch(
        manifest, "t/count.0", 1, storage, storage.checkpoint_path("t", 1), tmp_path / "r"
    )
    again = keyed(tmp_path, owner="t/count.0")
    home = storage.topology_path("t")
    again.restore_databases([(folder, range(GROUPS), (manifest["files"], home))], range(GROUPS))
    assert read(again, range(500)) == {k: k for k in range(500)}
    again.close()
    LOCAL.pop("t/count.0", None)


def test_a_missing_or_corrupted_shared_file_is_named(
    tmp_path: Path, storage: CheckpointStorage
) -> None:
    state = keyed(tmp_path)
    write(state, range(500), lambda k: k)
    manifest = checkpoint(state, storage, 1)
    state.close()
    LOCAL.clear()
    name, entry = next(iter(manifest["files"].items()))
    shared = Path(storage.topology_path("t")) / entry["path"]
    shared.write_bytes(b"x" * entry["bytes"])
    with pytest.raises(CheckpointError, match=rf"shared file .*{name} is corrupted"):
        restored(tmp_path, manifest, 1, storage, "bad")
    shared.unlink()
    with pytest.raises(CheckpointError, match=rf"shared file .*{name} is missing"):
        restored(tmp_path, manifest, 1, storage, "bad")


def test_pruning_deletes_shared_files_only_when_no_kept_checkpoint_references_them(
    tmp_path: Path, storage: CheckpointStorage
) -> None:
    base = Path(storage.topology_path("t"))
    (base / "shared").mkdir(parents=True)
    references = {1: {"a", "b"}, 2: {"b", "c"}, 3: {"c", "d"}, 4: {"d", "e"}}
    for number, files in references.items():
        for name in files:
            (base / "shared" / name).write_bytes(b"sst")
        where = storage.checkpoint_path("t", number)
        info = storage.write_task(where, ("count", 0), b"state")
        info["shared"] = [f"shared/{name}" for name in sorted(files)]
        storage.write_metadata(where, {"id": number, "tasks": {"count/0": info}})
    storage.prune("t", keep=2)
    assert sorted(p.name for p in base.iterdir() if p.name.startswith("chk-")) == ["chk-3", "chk-4"]
    assert sorted(p.name for p in (base / "shared").iterdir()) == ["c", "d", "e"]


def test_the_full_form_of_a_local_checkpoint_restores_on_the_memory_backend(
    tmp_path: Path,
) -> None:
    """A savepoint with the rocksdb backend: the database's entries (expired ones left out)
    merged with the tables, in the form :meth:`KeyedState.snapshot` writes."""
    now = [0]
    state = keyed(tmp_path)
    state.clock = lambda: now[0]
    write(state, range(300), lambda k: k)
    state.set_key(("k7",))
    state.value("brief", ttl=1).set("gone by then")
    state.table("counts")["cow"] = 3
    now[0] = 5_000
    store = state.store
    assert isinstance(store, RocksStore)
    state.settle()  # as the task does before a checkpoint: the table's entries into the store
    folder = take_local(store, 9, keep=False)
    groups = full_form(folder, state.snapshot(with_store=False), now[0])
    assert not folder.exists() and "t/count.0" not in LOCAL
    state.close()
    memory = KeyedState("count", ("k",), GROUPS)
    memory.table("counts")
    memory.restore(groups)
    assert read(memory, range(300)) == {k: k for k in range(300)}
    assert memory.tables["counts"] == {"cow": 3}
    memory.set_key(("k7",))
    assert memory.value("brief").get() is None


def test_memory_checkpoints_are_a_base_then_deltas_of_the_changed_keys(tmp_path: Path) -> None:
    """The memory backend: the first checkpoint writes all keys, the next ones only those
    changed (per key, deletions and swept keys included), a new base after MAX_DELTAS; the
    chain replays exactly, also into three tasks of a new parallelism."""
    now = [0]
    state = KeyedState("count", ("k",), GROUPS, clock=lambda: now[0])
    store = state.store
    assert isinstance(store, MemoryStore)
    write(state, range(10_000), lambda k: k)
    base, _, _ = next_part(store, None, "count-0", 1)
    write(state, range(0, 10_000, 100), lambda k: -k)  # 1% changed
    state.set_key(("k1",))
    state.value("n").clear()
    state.set_key(("k2",))
    state.value("brief", ttl=1).set("expires")
    now[0] = 2_000
    assert state.sweep() == 1  # nobody read it: swept, and the delta says so
    delta, _, chain = next_part(store, None, "count-0", 2)
    assert len(delta) < len(base) / 20
    assert [entry["path"].rsplit(".", 1)[1] for entry in chain] == ["base", "delta"]
    expected = read(state, range(10_000))
    parts = [base, delta]
    tasks = [KeyedState("count", ("k",), GROUPS) for _ in range(3)]
    for index, task in enumerate(tasks):
        apply_chain(task.store, parts, key_groups_of_task(index, GROUPS, 3))
    found = {}
    for task in tasks:
        found.update({k: v for k, v in read(task, range(10_000)).items() if v is not None})
    assert found == {k: v for k, v in expected.items() if v is not None}
    assert 1 not in found and found[100] == -100
    for number in range(3, 2 + MAX_DELTAS):  # deltas up to MAX_DELTAS after the base
        _, _, chain = next_part(store, None, "count-0", number)
    assert len(chain) == MAX_DELTAS + 1
    _, _, chain = next_part(store, None, "count-0", 99)
    assert [entry["path"].rsplit(".", 1)[1] for entry in chain] == ["base"]


def test_a_database_restored_from_another_runs_checkpoint_uploads_all_of_its_files_once(
    tmp_path: Path, storage: CheckpointStorage
) -> None:
    """Files the adopted checkpoint's run holds are not in this run's folder: the first
    checkpoint into another topology folder uploads everything, the next ones only news."""
    state = keyed(tmp_path)
    write(state, range(2_000), lambda k: k)
    manifest = checkpoint(state, storage, 1)
    state.close()
    again = keyed(tmp_path, owner="t/count.1")
    folder = restored(tmp_path, manifest, 1, storage, "fetched")
    home = storage.topology_path("t")
    again.restore_databases([(folder, range(GROUPS), (manifest["files"], home))], range(GROUPS))
    store = again.store
    assert isinstance(store, RocksStore)
    elsewhere = storage.checkpoint_path("t2/run-2", 1)
    first = upload(store, take_local(store, 11), storage, elsewhere, "count-0")
    assert first["uploaded"] == sum(entry["bytes"] for entry in first["files"].values()) > 0
    assert upload(store, take_local(store, 12), storage, elsewhere, "count-0")["uploaded"] == 0
    again.close()


def test_a_chain_never_builds_on_a_part_that_was_not_written() -> None:
    store = MemoryStore()
    store.put(1, "n", b"sa", ("a", 1, None))
    _, first, _ = next_part(store, None, "count-0", 1)
    _, _, chain = next_part(store, None, "count-0", 2)
    store.writes.finished(first["path"], False)  # checkpoint 1's write failed after 2 began
    with pytest.raises(CheckpointError, match="an earlier part of the chain was lost"):
        store.writes.wait(chain, timeout=1.0)
    store.force_full = True  # as the failed write's callback does
    _, _, chain = next_part(store, None, "count-0", 3)
    assert [entry["path"].rsplit(".", 1)[1] for entry in chain] == ["base"]
    store.restart_increments()  # an empty checkpoint referenced nothing: a base again
    _, _, chain = next_part(store, None, "count-0", 4)
    assert len(chain) == 1
