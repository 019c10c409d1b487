"""Incremental, asynchronous checkpoints of the ``rocksdb`` backend (Flink's way).

At the barrier the task takes a RocksDB checkpoint (:func:`take_local`: the memtable flushed
and the immutable SST files hard-linked into a folder beside the database: milliseconds for a
small memtable) and goes on with the stream. A thread then uploads the SST files the storage
does not hold yet (:func:`upload`: each store remembers what it uploaded) to the checkpoint
storage's ``shared/`` folder; the task file keeps a *manifest*: every SST file the checkpoint
needs with its shared path, size and digest, plus the small files (``CURRENT``,
``MANIFEST-*``, ``OPTIONS-*``) inline. So a checkpoint writes what changed since the last one.

Restoring (:func:`fetch`) rebuilds a complete RocksDB folder from a manifest: hard links from
the local checkpoint when this process still has it (a task reset in place), else the files
downloaded and checked. :meth:`rayflow.state.keyed.KeyedState.restore_databases` then adopts
that folder as the task's database (the same key groups) or reads the key groups the task owns
out of it (a rescale, or the memory backend). Savepoints stay self-contained (the full,
backend-independent form).

>>> import tempfile
>>> from pathlib import Path
>>> from rayflow.spec.state_settings import StoreSettings
>>> from rayflow.state.rocksdb import RocksStore
>>> from rayflow.state.storage import CheckpointStorage, parent_of
>>> base = Path(tempfile.mkdtemp())
>>> store = RocksStore(StoreSettings("rocksdb", str(base / "db")), "wc/count.0")
>>> store.put(3, "n", b"scow", ("cow", 2, None))
>>> storage = CheckpointStorage(str(base / "ckpt")); where = storage.checkpoint_path("wc", 1)
>>> manifest = upload(store, take_local(store, 1), storage, where, "count-0")
>>> sorted(manifest)
['files', 'meta', 'uploaded']
>>> again = upload(store, take_local(store, 2), storage, where, "count-0")
>>> manifest["uploaded"] > 0, again["uploaded"]  # nothing changed: nothing uploaded
(True, 0)
>>> store.close()
"""

from __future__ import annotations

import os
import pickle
import shutil
import uuid
from pathlib import Path
from typing import Any

from rayflow.state.due import is_derived
from rayflow.state.rocksdb import RocksStore, read_database, rocksdict_module
from rayflow.state.storage import CheckpointStorage, parent_of

LOCAL: dict[str, dict[int, Path]] = {}
"""owner (``topology/component.task``) -> checkpoint id -> its local checkpoint folder in this
process; the newest two are kept (the one in flight and the last complete one)."""


def take_local(store: RocksStore, checkpoint_id: int, keep: bool = True) -> Path:
    """A RocksDB checkpoint of ``store`` beside its folder (hard links; call on the loop);
    ``keep``: registered for a local recovery (else the caller removes it: a savepoint's)."""
    folder = Path(f"{store.path}.{'chk' if keep else 'full'}-{checkpoint_id}")
    for stale in (folder, Path(f"{folder}.tmp")):  # .tmp: where RocksDB writes it first
        shutil.rmtree(stale, ignore_errors=True)
    rocksdict_module().Checkpoint(store.database()).create_checkpoint(str(folder))
    if not keep:
        return folder
    held = LOCAL.setdefault(store.owner, {})
    held[checkpoint_id] = folder
    for old in sorted(held)[:-2]:  # the one in flight and the one before (complete, or not)
        shutil.rmtree(held.pop(old), ignore_errors=True)
    return folder


def upload(
    store: RocksStore, folder: Path, storage: CheckpointStorage, where: str, prefix: str
) -> dict[str, Any]:
    """The manifest of the local checkpoint ``folder``, having uploaded the SST files that
    ``store`` has not uploaded before (call in a thread). ``uploaded``: bytes sent now."""
    files: dict[str, dict[str, Any]] = {}
    meta: dict[str, bytes] = {}
    sent = 0
    home = parent_of(where)
    if store.uploaded_to != home:  # restored from another run's checkpoint: upload it all once
        store.uploaded, store.uploaded_to = {}, home
    for name in sorted(os.listdir(folder)):
        path = folder / name
        if not name.endswith(".sst"):
            meta[name] = path.read_bytes()  # CURRENT, MANIFEST, OPTIONS: small, every time
            continue
        entry = store.uploaded.get(name)
        if entry is None:
            shared = f"{prefix}-{uuid.uuid4().hex[:12]}-{name}"
            entry = store.uploaded[name] = storage.upload_shared(where, str(path), shared)
            sent += entry["bytes"]
        files[name] = entry
    return {"files": files, "meta": meta, "uploaded": sent}


def full_form(folder: Path, tables: dict[int, bytes], now: int | None) -> dict[int, bytes]:
    """The local checkpoint ``folder`` in the full form of
    :meth:`~rayflow.state.keyed.KeyedState.snapshot` (pickled per key group, entries expired
    by ``now`` left out; None: none expire), merged with the tables' groups (call in a thread;
    the folder is removed)."""
    groups = dict(tables)
    for group, states in read_database(folder, range(1 << 16)):
        live = {}
        for name, entries in states.items():
            if is_derived(name):
                continue  # an index: built again on restore
            kept = {k: e for k, e in entries.items() if e[2] is None or now is None or e[2] > now}
            if kept:
                live[name] = kept
        if group in groups:
            live.update(pickle.loads(groups[group]))
        if live:
            groups[group] = pickle.dumps(live, pickle.HIGHEST_PROTOCOL)
    return groups


def shared_paths(manifest: dict[str, Any]) -> list[str]:
    """The shared files a manifest references (listed in ``_metadata`` for pruning)."""
    return sorted(entry["path"] for entry in manifest["files"].values())


def fetch(
    manifest: dict[str, Any],
    source: str,
    checkpoint_id: int,
    storage: CheckpointStorage,
    where: str,
    into: Path,
) -> Path:
    """A complete RocksDB folder of checkpoint ``checkpoint_id`` of task ``source`` (its
    owner name) at ``into``: linked from the local checkpoint where this process has it, else
    downloaded from ``where``'s shared files (a missing or corrupted one raises
    CheckpointError naming it)."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    local = LOCAL.get(source, {}).get(checkpoint_id)
    for name, entry in manifest["files"].items():
        if local is not None and _link(local / name, into / name, entry["bytes"]):
            continue
        storage.fetch_shared(where, entry, str(into / name))
    for name, data in manifest["meta"].items():
        (into / name).write_bytes(data)
    return into


def _link(source: Path, target: Path, size: int) -> bool:
    """Hard-link a local checkpoint's file (SST files never change once written); False when
    it is not there as recorded (then the caller downloads it)."""
    try:
        if source.stat().st_size != size:
            return False
        os.link(source, target)
    except OSError:
        return False
    return True


def forget_local(owner: str) -> None:
    """Remove the local checkpoints of ``owner`` (its task ended)."""
    for folder in LOCAL.pop(owner, {}).values():
        shutil.rmtree(folder, ignore_errors=True)
