"""Keyed state for bolts: ``self.state.value(name)``, ``.map(name)``, ``.list(name)``, each
scoped to the key of the tuple being processed (the fields of the bolt's FIELDS grouping).

State lives in the task's *store* (:mod:`rayflow.state.stores`: dicts, or an embedded RocksDB
with ``state.backend: rocksdb``), organised by key group (the same groups fields grouping routes
by), so a key group's state can move to another task when the parallelism changes, and a snapshot
is one picklable object per key group, the same for either backend.

State changes only through ``.set()``, ``map[k] = v``, ``del map[k]``, ``.append()`` and
``.clear()``: a value read and changed in place is a copy on RocksDB (the change is lost there)
and, in memory, missed by incremental checkpoints (only keys that were set are in a delta).

>>> state = KeyedState("count", ("word",), max_parallelism=128)
>>> counts = state.value("count", default=0)
>>> state.set_key(("cow",)); counts.set(counts.get() + 1)
>>> state.set_key(("moon",)); counts.set(counts.get() + 1)
>>> state.set_key(("cow",)); counts.set(counts.get() + 1); counts.get()
2
>>> seen = state.map("seen"); seen["monday"] = 1; sorted(seen.items())
[('monday', 1)]
>>> restored = KeyedState("count", ("word",), 128); restored.restore(state.snapshot())
>>> restored.set_key(("cow",)); restored.value("count", default=0).get()
2
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from rayflow.errors import RayflowError
from rayflow.keys import encode_fields, encode_key, key_group_of
from rayflow.spec.durations import parse_duration
from rayflow.state.due import DueKeys, StoreDueKeys, is_derived
from rayflow.state.rocksdb import RocksStore, copy_database, read_database
from rayflow.state.stores import Entries, MemoryStore, Store
from rayflow.state.tables import CACHE_ENTRIES, StoreTable, UnpicklableEntry, table_key

_MISSING = object()
SWEEP_ENTRIES = 10_000
"""Entries a :meth:`KeyedState.sweep` looks at for expired ones (the task sweeps once a second)."""


class StateError(RayflowError, RuntimeError):
    """Keyed state used where there is no key, or a value that cannot be snapshotted."""


class KeyedState:
    """The keyed state of one bolt task (``self.state``)."""

    def __init__(
        self,
        component: str,
        key_fields: tuple[str, ...],
        max_parallelism: int,
        clock: Callable[[], int] | None = None,
        on_first_use: Callable[[], None] | None = None,
        store: Store | None = None,
    ) -> None:
        self.component = component
        self.used = False
        self.on_first_use = on_first_use
        self.key_fields = key_fields
        self.max_parallelism = max_parallelism
        self.clock = clock or (lambda: 0)
        self.store: Store = store if store is not None else MemoryStore()
        self._key: tuple[Any, bytes, int] | None = None  # (key, encoded, key group)
        self._ttls: dict[str, int | None] = {}
        self.tables: dict[str, dict[Any, Any]] = {}
        self.originals: dict[bytes, Any] = {}  # a table's bytes-indexed keys, as they were
        # rocksdb: tables in the store, and the bytes-indexed keys seen since they settled
        self.store_tables: dict[str, StoreTable] = {}
        self.store_dues: list[StoreDueKeys] = []
        self.recent: dict[bytes, Any] = {}

    # ---------------------------------------------------------------- the runtime's side
    def set_key(self, values: tuple[Any, ...] | None) -> None:
        """The key of the tuple about to be processed (its key fields' values), or None."""
        if values is None:
            self._key = None
            return
        encoded = encode_fields(values)
        key = values[0] if len(values) == 1 else tuple(values)
        self._key = (key, encoded, key_group_of(encoded, self.max_parallelism))

    @property
    def empty(self) -> bool:
        return self.store.empty and not any(self.tables.values())

    @property
    def incremental(self) -> bool:
        """Whether checkpoints take the store's own checkpoint (rocksdb) rather than
        :meth:`snapshot` of all of it (see :mod:`rayflow.state.incremental`)."""
        return isinstance(self.store, RocksStore)

    def snapshot(self, with_store: bool = True) -> dict[int, bytes]:
        """Each key group's state, pickled (a value that cannot be pickled is named), expired
        entries left out. Tables are written in the same form as the rest, so either restores
        the other; the form does not depend on the backend. ``with_store=False``: the tables
        only (the store is in an incremental checkpoint). Call :meth:`settle` first."""
        now = self.expiry_time()
        groups: dict[int, dict[str, Entries]] = {}
        if with_store:  # derived states (indexes) are built again on restore
            for group, states in self.store.grouped(now):
                kept = {name: entries for name, entries in states.items() if not is_derived(name)}
                if kept:
                    groups[group] = kept
        originals, max_parallelism = self.originals, self.max_parallelism
        for name, table in self.tables.items():
            for index, value in table.items():
                encoded = index if index.__class__ is bytes else encode_key(index)
                group = groups.setdefault(key_group_of(encoded, max_parallelism), {})
                entries = group.setdefault(name, {})
                entries[encoded] = (originals.get(index, index), value, None)
        out = {}
        for group, states in groups.items():
            try:
                out[group] = pickle.dumps(states, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                raise self._unpicklable(states) from None
        return out

    def expiry_time(self) -> int | None:
        """The time snapshots drop expired entries at (None: no state has a time to live)."""
        return self.clock() if any(self._ttls.values()) else None

    def restore(self, groups: dict[int, bytes]) -> None:
        """Take back key groups from :meth:`snapshot` (of this task or of others, after a
        change of parallelism); entries of a table made before come back into it."""
        for group, data in groups.items():
            self._restore_group(group, pickle.loads(data))

    def restore_databases(self, databases: list[tuple[Path, range, Any]], mine: range) -> None:
        """Take back the key groups in ``mine`` from restored RocksDB checkpoints: (folder,
        the key groups its task owned, (its SST files' shared entries, the storage's topology
        folder they are in)) each. One database of
        exactly these key groups becomes a rocksdb store's own; otherwise the entries are read
        out of each (a rescale, or the memory backend)."""
        try:
            if len(databases) == 1 and isinstance(self.store, RocksStore) and self.store.empty:
                folder, theirs, (uploaded, home) = databases[0]
                if theirs.start >= mine.start and theirs.stop <= mine.stop:
                    self.store.adopt(folder, uploaded, home)
                    return
            for folder, theirs, _ in databases:
                wanted = range(max(mine.start, theirs.start), min(mine.stop, theirs.stop))
                if isinstance(self.store, RocksStore):
                    copy_database(folder, wanted, self.store)  # as stored: nothing unpickled
                    continue
                for group, states in read_database(folder, wanted):
                    self._restore_group(group, states)
        finally:  # what was not adopted or read (an error midway) goes
            for folder, _, _ in databases:
                shutil.rmtree(folder, ignore_errors=True)

    def _restore_group(self, group: int, states: dict[str, Entries]) -> None:
        for name in [n for n in states if is_derived(n)]:
            del states[name]  # an index: its operator builds it again from its table
        for name in [n for n in states if n in self.tables]:
            table = self.tables[name]
            for key, value, _expires in states.pop(name).values():
                index = table_key(key)
                if index.__class__ is bytes:
                    self.originals[index] = key
                table[index] = value
        if states:
            self.store.load(group, states)

    def sweep(self) -> int:
        """Drop some expired entries no one reads any more (called once a second by the task;
        nothing to do until a state with a time to live is declared); returns how many went."""
        if not any(self._ttls.values()):
            return 0
        return self.store.sweep(self.clock(), SWEEP_ENTRIES)

    def close(self) -> None:
        """Let go of the store (a RocksDB closes and removes its folder)."""
        self.store.close()

    def table(self, name: str) -> MutableMapping[Any, Any]:
        """A table of one value per key, for code that handles many keys per call (the
        Streams API's keyed operators: a dict operation per item, no key to set first). It is
        indexed by :func:`table_key` of the key; :meth:`keep_original` keeps a key that is not
        its own index (not a str or int). Saved and moved by key group like the rest, after
        ``table`` was called again in the new task (before its restore). A plain dict on the
        memory backend; on rocksdb a :class:`~rayflow.state.tables.StoreTable` (its values may
        be changed in place until :meth:`settle`).

        >>> state = KeyedState("count", ("key",), 128)
        >>> counts = state.table("count"); counts["cow"] = 2
        >>> again = KeyedState("count", ("key",), 128); again.table("count") is not None
        True
        >>> again.restore(state.snapshot()); again.tables["count"]
        {'cow': 2}
        """
        if isinstance(self.store, RocksStore):
            held = self.store_tables.get(name)
            if held is None:
                held = self.store_tables[name] = StoreTable(
                    self.store, name, self.max_parallelism, self.original
                )
            return held
        table = self.tables.get(name)
        if table is None:
            table = self.tables[name] = {}
        return table

    def due(
        self, name: str, groups: range, on_new: Callable[[int], None]
    ) -> DueKeys | StoreDueKeys:
        """Which keys of a table have something due at a time (:mod:`rayflow.state.due`):
        in memory, or in the store on rocksdb (``groups``: the key groups the task owns)."""
        if isinstance(self.store, RocksStore):
            held = StoreDueKeys(self.store, name, self.max_parallelism, groups, on_new)
            self.store_dues.append(held)
            return held
        return DueKeys(on_new)

    def keyed_items(self, table: MutableMapping[Any, Any]) -> Iterator[tuple[Any, Any]]:
        """Every (key, value) of a table from :meth:`table`."""
        if isinstance(table, StoreTable):
            return table.keyed_items()  # the keys are stored with the values
        return ((self.original(index), value) for index, value in table.items())

    def keep_original(self, index: Any, key: Any) -> None:
        """``key`` is in a table under ``index`` (:func:`table_key`), which is not the key."""
        if index.__class__ is bytes:
            if isinstance(self.store, RocksStore):
                self.recent[index] = key  # until the entry, which keeps it, is written
            else:
                self.originals[index] = key

    def original(self, index: Any) -> Any:
        """The key a table's ``index`` stands for."""
        if index.__class__ is not bytes:
            return index
        key = self.originals.get(index, _MISSING)
        if key is _MISSING:
            key = self.recent.get(index, _MISSING)
        tables = iter(self.store_tables.values())
        while key is _MISSING and (table := next(tables, None)) is not None:
            key = table.key_of(index, _MISSING)
        return index if key is _MISSING else key

    def settle(self) -> None:
        """Write back what the store tables hold (after each batch, timer and the end of the
        input, and before a checkpoint: nothing read from them is being changed then)."""
        error = None
        for name, table in self.store_tables.items():
            try:
                table.settle()
            except UnpicklableEntry as bad:
                error = error or self._unpicklable_value(name, bad.key, bad.value, bad.cause)
        for due in self.store_dues:
            due.settle()
        self.recent.clear()
        if error is not None:  # the rest is written: only that value's change is lost
            raise error

    def settle_some(self) -> None:
        """Settle the store tables whose cache grew large; call it between keys."""
        for table in self.store_tables.values():  # none on the memory backend
            if len(table.cache) > CACHE_ENTRIES:
                self.settle()
                return

    # ---------------------------------------------------------------- the user's side
    def value(self, name: str, default: Any = None, ttl: float | str | None = None) -> ValueState:
        """One value per key: ``.get()``, ``.set(v)``, ``.clear()``; ``ttl`` (seconds or
        ``"10m"``) expires a value that long after it was last set."""
        self._ttl(name, ttl)
        return ValueState(self, name, default)

    def map(self, name: str, ttl: float | str | None = None) -> MapState:
        """A dict per key: ``m[k]``, ``m.get(k, d)``, ``m[k] = v``, ``del m[k]``, ``items()``."""
        self._ttl(name, ttl)
        return MapState(self, name)

    def list(self, name: str, ttl: float | str | None = None) -> ListState:
        """A list per key: ``.append(v)``, iteration, ``.clear()``."""
        self._ttl(name, ttl)
        return ListState(self, name)

    def current_key(self) -> Any:
        """The key the state is scoped to now (one value, or a tuple for several fields)."""
        return self._current()[0]

    # ---------------------------------------------------------------- internals
    def _ttl(self, name: str, ttl: float | str | None) -> None:
        if not self.used:
            self.used = True
            if self.on_first_use is not None:
                self.on_first_use()  # the runtime starts telling the state each tuple's key
        ms = None if ttl is None else int(parse_duration(ttl) * 1000)
        self._ttls[name] = ms

    def _current(self) -> tuple[Any, bytes, int]:
        if self._key is None:
            if not self.key_fields:
                raise StateError(
                    f"bolt '{self.component}' uses keyed state, but its inputs are not all "
                    "grouped by the same FIELDS: keyed state is scoped to that key. Group every "
                    "input by the same fields, or keep task-wide state in attributes "
                    "(with snapshot()/restore() for checkpoints)"
                )
            raise StateError(
                f"bolt '{self.component}': keyed state is scoped to the tuple being processed; "
                "use it in process() (process_batch and timers have no single key)"
            )
        return self._key

    def _get(self, name: str) -> Any:
        _, encoded, group = self._current()
        entry = self.store.get(group, name, encoded)
        if entry is None:
            return _MISSING
        if entry[2] is not None and entry[2] <= self.clock():
            self.store.delete(group, name, encoded)
            return _MISSING
        return entry[1]

    def _set(self, name: str, value: Any) -> None:
        key, encoded, group = self._current()
        ttl = self._ttls.get(name)
        expires = None if ttl is None else self.clock() + ttl
        try:
            self.store.put(group, name, encoded, (key, value, expires))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # rocksdb pickles here
            raise self._unpicklable_value(name, key, value, exc) from None

    def _clear(self, name: str) -> None:
        _, encoded, group = self._current()
        self.store.delete(group, name, encoded)

    def _unpicklable(
        self, states: dict[str, dict[bytes, tuple[Any, Any, int | None]]]
    ) -> StateError:
        for name, entries in states.items():
            for key, value, _ in entries.values():
                try:
                    pickle.dumps(value)
                except Exception as exc:
                    return self._unpicklable_value(name, key, value, exc)
        return StateError(f"bolt '{self.component}': its state cannot be pickled")

    def _unpicklable_value(self, name: str, key: Any, value: Any, exc: Exception) -> StateError:
        return StateError(
            f"bolt '{self.component}': state '{name}' of key {key!r} holds a "
            f"{type(value).__name__}, which cannot be pickled ({exc}); keep "
            "picklable values (numbers, strings, lists, dicts, dataclasses) in state"
        )


class ValueState:
    def __init__(self, state: KeyedState, name: str, default: Any) -> None:
        self.state, self.name, self.default = state, name, default

    def get(self) -> Any:
        value = self.state._get(self.name)
        return self.default if value is _MISSING else value

    def set(self, value: Any) -> None:
        self.state._set(self.name, value)

    def clear(self) -> None:
        self.state._clear(self.name)


class MapState:
    def __init__(self, state: KeyedState, name: str) -> None:
        self.state, self.name = state, name

    def _dict(self) -> dict[Any, Any]:
        found = self.state._get(self.name)
        return {} if found is _MISSING else found

    def __getitem__(self, key: Any) -> Any:
        return self._dict()[key]

    def get(self, key: Any, default: Any = None) -> Any:
        return self._dict().get(key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        found = self._dict()
        found[key] = value
        self.state._set(self.name, found)  # stored again: a copy on RocksDB; refreshes the TTL

    def __delitem__(self, key: Any) -> None:
        found = self._dict()
        del found[key]
        self.state._set(self.name, found)

    def __contains__(self, key: Any) -> bool:
        return key in self._dict()

    def __len__(self) -> int:
        return len(self._dict())

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._dict()))

    def items(self) -> list[tuple[Any, Any]]:
        return list(self._dict().items())

    def keys(self) -> list[Any]:
        return list(self._dict())

    def values(self) -> list[Any]:
        return list(self._dict().values())

    def clear(self) -> None:
        self.state._clear(self.name)


class ListState:
    def __init__(self, state: KeyedState, name: str) -> None:
        self.state, self.name = state, name

    def _list(self) -> list[Any]:
        found = self.state._get(self.name)
        return [] if found is _MISSING else found

    def append(self, value: Any) -> None:
        found = self._list()
        found.append(value)
        self.state._set(self.name, found)  # stored again: a copy on RocksDB; refreshes the TTL

    def extend(self, values: Any) -> None:
        found = self._list()
        found.extend(values)
        self.state._set(self.name, found)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._list()))

    def __len__(self) -> int:
        return len(self._list())

    def get(self) -> list[Any]:
        """A copy of the list."""
        return list(self._list())

    def clear(self) -> None:
        self.state._clear(self.name)
