"""The ``rocksdb`` state backend: a task's keyed state in an embedded RocksDB on local disk.

Through ``rocksdict`` (wheels for Linux, macOS and Windows on CPython 3.8-3.13, kept up with
RocksDB's releases, and the one Python binding that exposes what this backend needs next:
``Checkpoint`` (hard-linked SST files) and ``ingest_external_file``). A key is

    key group (2 bytes, big-endian) | length of the state name (1 byte) | name | encoded key

so one key group's state is one contiguous range (cut and moved on a rescale) and a task's
state sorts by key group. A value is the pickled ``(key, value, expiry)`` (written and read
only by the task itself, like its checkpoint files).

Memory: one LRU block cache of ``state.rocksdb.memory`` bytes, with the write buffers
(memtables) charged to it and the index and filter blocks kept in it, so the task's RSS stays
near the budget whatever the number of keys. The write-ahead log is off: a task recovers from
its checkpoints, never from its local RocksDB after a crash.

Folders: ``<state.rocksdb.dir>/<topology>/<component>.<task>.<pid>.<n>`` (by default under
:func:`default_folder`, which must be local to the node), removed when the store closes; a store
that opens its database removes the folders that processes no longer alive left behind (actors
killed with their state open). A bolt that never uses keyed state opens no database.

>>> import tempfile
>>> from rayflow.spec.state_settings import StoreSettings
>>> folder = tempfile.mkdtemp()
>>> store = RocksStore(StoreSettings("rocksdb", folder), "demo/count/0")
>>> store.put(7, "count", b"scow", ("cow", 2, None)); store.get(7, "count", b"scow")
('cow', 2, None)
>>> [(group, states) for group, states in store.grouped(now=0)]
[(7, {'count': {b'scow': ('cow', 2, None)}})]
>>> store.close()
"""

from __future__ import annotations

import itertools
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from rayflow.spec.state_settings import StoreSettings
from rayflow.state.stores import Entries, Entry

_opened = itertools.count()
_DUMP = pickle.dumps
_LOAD = pickle.loads
_PROTOCOL = pickle.HIGHEST_PROTOCOL


def rocksdict_module() -> Any:
    try:
        import rocksdict
    except ImportError:
        raise RuntimeError(
            "state.backend: rocksdb needs the rocksdict package: pip install 'rayflow[rocksdb]'"
        ) from None
    return rocksdict


def name_prefix(name: str) -> bytes:
    """The bytes a state name puts after the key group (at most 255 bytes of UTF-8).

    >>> name_prefix("count")
    b'\\x05count'
    """
    raw = name.encode()
    if len(raw) > 255:
        raise ValueError(f"state name {name[:40]!r}... is over 255 bytes")
    return bytes((len(raw),)) + raw


def split_key(raw: bytes) -> tuple[int, str, bytes]:
    """(key group, state name, encoded key) of a stored key."""
    size = raw[2]
    return int.from_bytes(raw[:2], "big"), raw[3 : 3 + size].decode(), raw[3 + size :]


def default_folder(environ: Mapping[str, str] = os.environ) -> str:
    """Where tasks keep RocksDB when ``state.rocksdb.dir`` is not set: the node's
    ``RAYFLOW_STATE_ROCKSDB_DIR`` (the Helm chart's volume), else YARN's local folder of the
    application (``LOCAL_DIRS``, removed by YARN when it ends), else the temporary folder.

    >>> default_folder({"LOCAL_DIRS": "/data1/app_1,/data2/app_1"})
    '/data1/app_1/rayflow-state'
    """
    if environ.get("RAYFLOW_STATE_ROCKSDB_DIR"):
        return environ["RAYFLOW_STATE_ROCKSDB_DIR"]
    local = environ.get("LOCAL_DIRS", "").split(",")[0]
    return os.path.join(local or tempfile.gettempdir(), "rayflow-state")


def task_folder(settings: StoreSettings, owner: str) -> tuple[Path, str]:
    """(the folder of a topology's stores, the stem of a task's) for ``topology/comp.task``."""
    topology, _, task = owner.partition("/")
    return Path(settings.directory or default_folder()) / topology, task.replace("/", ".")


def restore_folder(settings: StoreSettings, owner: str) -> Path:
    """A fresh folder beside the task's stores to rebuild a checkpoint's database in."""
    parent, stem = task_folder(settings, owner)
    return parent / f"{stem}.{os.getpid()}.restore-{next(_opened)}"


def read_database(folder: Path, groups: range) -> Iterator[tuple[int, dict[str, Entries]]]:
    """The entries of key groups ``groups`` in the RocksDB at ``folder`` (a restored
    checkpoint), a key group at a time; the folder is removed afterwards."""
    rocksdict = rocksdict_module()
    db = rocksdict.Rdict(str(folder), rocksdict.Options(raw_mode=True))
    try:
        it = db.iter()
        it.seek(groups.start.to_bytes(2, "big"))
        current, states = -1, {}
        while it.valid():
            group, name, encoded = split_key(it.key())
            if group >= groups.stop:
                break
            if group != current:
                if states:
                    yield current, states
                current, states = group, {}
            states.setdefault(name, {})[encoded] = _LOAD(it.value())
            it.next()
        if states:
            yield current, states
        del it
    finally:
        db.close()
        shutil.rmtree(folder, ignore_errors=True)


def copy_database(folder: Path, groups: range, target: RocksStore) -> None:
    """Copy key groups ``groups`` of the RocksDB at ``folder`` into ``target`` as they are
    stored (no unpickling: a rescale between rocksdb tasks); the folder is removed."""
    rocksdict = rocksdict_module()
    db = rocksdict.Rdict(str(folder), rocksdict.Options(raw_mode=True))
    try:
        it = db.iter()
        it.seek(groups.start.to_bytes(2, "big"))
        stop = groups.stop.to_bytes(2, "big")
        batch, size = rocksdict.WriteBatch(raw_mode=True), 0
        while it.valid() and it.key() < stop:
            batch.put(it.key(), it.value())
            size += 1
            if size == 10_000:
                target.database().write(batch)
                batch, size = rocksdict.WriteBatch(raw_mode=True), 0
            it.next()
        target.database().write(batch)
        del it
    finally:
        db.close()
        shutil.rmtree(folder, ignore_errors=True)


# <stem>.<pid>.<n>, its local checkpoints (.chk-7, .full-7; .tmp while RocksDB writes one),
# <stem>.<pid>.restore-<n>
_FOLDER = re.compile(r"\.(\d+)\.(?:\d+|restore-\d+)(?:\.(?:chk|full)-[-\d]+(?:\.tmp)?)?$")


def remove_abandoned(parent: Path) -> None:
    """Remove the folders of this node's processes that are no longer alive (databases, local
    checkpoints and restores of actors that were killed) in a topology's folder. The folder
    must be local to the node (a process id says nothing about another machine's).

    >>> [_FOLDER.search(name).group(1) for name in ("count.0.42.3.chk-7", "a.1.2.0.55.3.chk-2.tmp")]
    ['42', '55']
    """
    for folder in parent.iterdir():
        match = _FOLDER.search(folder.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a killed one its parent has not reaped yet does not).

    >>> _alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's process
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # Z: a zombie
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal answered


class RocksStore:
    """Keyed state of one task in its own RocksDB (see the module docstring)."""

    def __init__(self, settings: StoreSettings, owner: str) -> None:
        self.parent, stem = task_folder(settings, owner)
        self.path = self.parent / f"{stem}.{os.getpid()}.{next(_opened)}"
        self.owner = owner
        self.memory = settings.memory
        self.uploaded: dict[str, dict[str, Any]] = {}  # SST file -> its shared entry...
        self.uploaded_to: str | None = None  # ...in this topology folder of the storage
        self._names: dict[str, bytes] = {}
        self._sweep_from = b""
        self._rocksdict = rocksdict_module()
        self.db: Any = None  # opened on first use: a bolt without keyed state opens none

    def database(self) -> Any:
        """The open database (opened, and dead processes' folders removed, on first use)."""
        if self.db is None:
            self.db = self._open()
        return self.db

    def _open(self) -> Any:
        self.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(self.parent)
        db = self._rocksdict.Rdict(str(self.path), self._options(self._rocksdict, self.memory))
        writes = self._rocksdict.WriteOptions()
        writes.disable_wal = True
        db.set_write_options(writes)
        return db

    def adopt(self, folder: Path, uploaded: dict[str, dict[str, Any]], home: str) -> None:
        """Become the database in ``folder`` (a restored checkpoint of the same key groups),
        whose SST files the storage's topology folder ``home`` already holds (``uploaded``)."""
        if self.db is not None:
            self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        os.rename(folder, self.path)
        self.db = self._open()
        self.uploaded, self.uploaded_to = dict(uploaded), home

    def restart_increments(self) -> None:
        """The next checkpoint uploads every file again (its last one referenced none)."""
        self.uploaded, self.uploaded_to = {}, None

    @staticmethod
    def _options(rocksdict: Any, memory: int) -> Any:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        cache = rocksdict.Cache(memory)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        # Memtables are charged to the same cache: half of the budget at most.
        buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            memory // 2, False, cache
        )
        options.set_write_buffer_manager(buffers)
        options.set_write_buffer_size(max(1 << 20, memory // 8))
        options.set_max_write_buffer_number(2)
        options.set_max_background_jobs(1)  # tasks share the node's cores
        options.set_max_manifest_file_size(4 << 20)  # every checkpoint carries a copy of it
        return options

    def _key(self, group: int, name: str, encoded: bytes) -> bytes:
        prefix = self._names.get(name)
        if prefix is None:
            prefix = self._names[name] = name_prefix(name)
        return group.to_bytes(2, "big") + prefix + encoded

    def get(self, group: int, name: str, encoded: bytes) -> Entry | None:
        raw = self.database().get(self._key(group, name, encoded))
        return None if raw is None else _LOAD(raw)

    def put(self, group: int, name: str, encoded: bytes, entry: Entry) -> None:
        self.database().put(self._key(group, name, encoded), _DUMP(entry, _PROTOCOL))

    def delete(self, group: int, name: str, encoded: bytes) -> None:
        self.database().delete(self._key(group, name, encoded))

    def write(
        self,
        name: str,
        changes: Iterable[tuple[int, bytes, Entry | None]],
        ranges: Iterable[tuple[int, bytes, bytes]] = (),
    ) -> None:
        """Several puts (an entry) and deletes (None) of one state, and deletes of the ranges
        ``(group, from, to)`` of its encoded keys, in one write batch."""
        batch = self._rocksdict.WriteBatch(raw_mode=True)
        for group, encoded, entry in changes:
            if entry is None:
                batch.delete(self._key(group, name, encoded))
            else:
                batch.put(self._key(group, name, encoded), _DUMP(entry, _PROTOCOL))
        for group, start, stop in ranges:
            batch.delete_range(self._key(group, name, start), self._key(group, name, stop))
        self.database().write(batch)

    def scan(self, group: int, name: str, start: bytes = b"") -> Iterator[tuple[bytes, Entry]]:
        """(encoded key, entry) of one state in one key group, in key order from ``start``."""
        if self.db is None:
            return
        prefix = self._key(group, name, b"")
        it = self.db.iter()
        try:
            it.seek(prefix + start)
            while it.valid():
                raw = it.key()
                if not raw.startswith(prefix):
                    break
                yield raw[len(prefix) :], _LOAD(it.value())
                it.next()
        finally:
            del it

    def prefixes(self, group: int, name: str, width: int) -> Iterator[bytes]:
        """The distinct first ``width`` bytes of one state's encoded keys in one key group, in
        order (one seek each, on one iterator)."""
        if self.db is None:
            return
        prefix = self._key(group, name, b"")
        it = self.db.iter()
        try:
            it.seek(prefix)
            while it.valid():
                raw = it.key()
                if not raw.startswith(prefix):
                    break
                first = raw[len(prefix) : len(prefix) + width]
                yield first
                following = int.from_bytes(first, "big") + 1
                if following >> (8 * width):
                    break  # the last prefix there can be
                it.seek(prefix + following.to_bytes(width, "big"))
        finally:
            del it

    def grouped(self, now: int | None) -> Iterator[tuple[int, dict[str, Entries]]]:
        """Each key group's live entries in key-group order (read from the database)."""
        current, states = -1, {}
        if self.db is None:
            return
        for raw, data in self.db.items():
            group, name, encoded = split_key(raw)
            if group != current:
                if states:
                    yield current, states
                current, states = group, {}
            entry = _LOAD(data)
            if entry[2] is None or now is None or entry[2] > now:
                states.setdefault(name, {})[encoded] = entry
        if states:
            yield current, states

    def load(self, group: int, states: dict[str, Entries]) -> None:
        batch = self._rocksdict.WriteBatch(raw_mode=True)
        for name, entries in states.items():
            for encoded, entry in entries.items():
                batch.put(self._key(group, name, encoded), _DUMP(entry, _PROTOCOL))
        self.database().write(batch)

    def sweep(self, now: int, limit: int) -> int:
        """Delete expired entries among the next ``limit`` after the last sweep's (from the
        start again once the end is reached); returns how many were deleted."""
        if self.db is None:
            return 0
        it = self.db.iter()
        it.seek(self._sweep_from)
        looked = dropped = 0
        while it.valid() and looked < limit:
            raw, entry = it.key(), _LOAD(it.value())
            if entry[2] is not None and entry[2] <= now:
                self.db.delete(raw)
                dropped += 1
            looked += 1
            it.next()
        self._sweep_from = it.key() if it.valid() else b""
        del it
        return dropped

    @property
    def empty(self) -> bool:
        if self.db is None:
            return True
        it = self.db.iter()
        it.seek_to_first()
        return not it.valid()

    def close(self) -> None:
        """Close the database and remove its folder (its state is in the checkpoints)."""
        db, self.db = self.db, None
        if db is not None:
            db.close()
            shutil.rmtree(self.path, ignore_errors=True)
