"""Where a task's keyed state lives: the *state backend* (``state.backend: memory | rocksdb``).

Both stores hold entries ``(key, value, expiry in ms or None)`` under (key group, state name,
encoded key) and give them back grouped the same way, so a snapshot taken with one backend
restores with the other (:meth:`rayflow.state.keyed.KeyedState.snapshot`).

- ``memory`` (the default): dicts in the task; fastest (tens of nanoseconds an access), bounded
  by the task's memory.
- ``rocksdb``: an embedded RocksDB per task (:mod:`rayflow.state.rocksdb`) under
  ``state.rocksdb.dir`` with a memory budget ``state.rocksdb.memory`` (block cache and write
  buffers); state may outgrow memory, each access costs microseconds (a pickle and a RocksDB
  call).

The rule both backends share: state changes only through ``.set()``, ``map[k] = v``, ``del``,
``.append()``, ``.clear()``. A value read and then changed in place (``state.get().append(x)``)
is a copy on RocksDB, so the change is lost there, and the memory backend's checkpoint deltas
miss it (they hold the keys that were set); set it back.

>>> store = MemoryStore()
>>> store.put(3, "count", b"scow", ("cow", 2, None)); store.get(3, "count", b"scow")
('cow', 2, None)
>>> [(group, sorted(states)) for group, states in store.grouped(now=0)]
[(3, ['count'])]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

Entry = tuple[Any, Any, "int | None"]
"""(key, value, expiry in ms or None) of one key in one state."""
Entries = dict[bytes, Entry]
"""Encoded key -> entry, for one state name in one key group."""


class Store(Protocol):
    """What :class:`~rayflow.state.keyed.KeyedState` asks of a backend."""

    def get(self, group: int, name: str, encoded: bytes) -> Entry | None: ...
    def put(self, group: int, name: str, encoded: bytes, entry: Entry) -> None: ...
    def delete(self, group: int, name: str, encoded: bytes) -> None: ...
    def scan(self, group: int, name: str, start: bytes = b"") -> Iterator[tuple[bytes, Entry]]: ...
    def grouped(self, now: int | None) -> Iterator[tuple[int, dict[str, Entries]]]: ...
    def load(self, group: int, states: dict[str, Entries]) -> None: ...
    def sweep(self, now: int, limit: int) -> int: ...
    def restart_increments(self) -> None: ...
    def close(self) -> None: ...
    @property
    def empty(self) -> bool: ...


class MemoryStore:
    """Keyed state in dicts: key group -> state name -> encoded key -> entry."""

    def __init__(self) -> None:
        self.groups: dict[int, dict[str, Entries]] = {}
        self._sweep_from = 0  # the key group the next sweep starts at
        # For incremental checkpoints (rayflow.state.deltas): the keys changed since the last
        # (None until the first: a job without checkpoints keeps no such set), and the shared
        # files, base first, that the last incremental checkpoint consists of.
        self.changed: set[tuple[int, str, bytes]] | None = None
        self.chain: list[dict[str, Any]] = []
        self.force_full = False  # a part was lost: the next checkpoint starts a new base
        self.writes: Any = None  # rayflow.state.deltas.PartWrites, from the first checkpoint

    def restart_increments(self) -> None:
        """The next checkpoint writes a base (its last one referenced no part)."""
        self.force_full = True

    def get(self, group: int, name: str, encoded: bytes) -> Entry | None:
        states = self.groups.get(group)
        if states is None:
            return None
        entries = states.get(name)
        return None if entries is None else entries.get(encoded)

    def put(self, group: int, name: str, encoded: bytes, entry: Entry) -> None:
        self.groups.setdefault(group, {}).setdefault(name, {})[encoded] = entry
        if self.changed is not None:
            self.changed.add((group, name, encoded))

    def delete(self, group: int, name: str, encoded: bytes) -> None:
        self.groups.get(group, {}).get(name, {}).pop(encoded, None)
        if self.changed is not None:
            self.changed.add((group, name, encoded))

    def scan(self, group: int, name: str, start: bytes = b"") -> Iterator[tuple[bytes, Entry]]:
        """(encoded key, entry) of one state in one key group, in key order from ``start``."""
        entries = self.groups.get(group, {}).get(name, {})
        yield from ((k, e) for k, e in sorted(entries.items()) if k >= start)

    def grouped(self, now: int | None) -> Iterator[tuple[int, dict[str, Entries]]]:
        """Each key group's entries, those expired by ``now`` left out (None: no state has a
        time to live); copies, so the caller may add to them."""
        for group, states in self.groups.items():
            if now is None:
                held = {name: entries for name, entries in states.items() if entries}
                if held:
                    yield group, held
                continue
            live = {}
            for name, entries in states.items():
                kept = {k: e for k, e in entries.items() if e[2] is None or e[2] > now}
                if kept:
                    live[name] = kept
            if live:
                yield group, live

    def load(self, group: int, states: dict[str, Entries]) -> None:
        mine = self.groups.setdefault(group, {})
        for name, entries in states.items():
            mine.setdefault(name, {}).update(entries)

    def sweep(self, now: int, limit: int) -> int:
        """Drop expired entries of the key groups after the last sweep's, about ``limit``
        entries looked at; returns how many were dropped."""
        groups = sorted(self.groups)
        if not groups:
            return 0
        start = next((i for i, g in enumerate(groups) if g >= self._sweep_from), 0)
        looked = dropped = 0
        for group in groups[start:] + groups[:start]:
            for name, entries in self.groups[group].items():
                gone = [k for k, e in entries.items() if e[2] is not None and e[2] <= now]
                for encoded in gone:
                    del entries[encoded]
                    if self.changed is not None:
                        self.changed.add((group, name, encoded))
                looked += len(entries) + len(gone)
                dropped += len(gone)
            self._sweep_from = group + 1
            if looked >= limit:
                break
        return dropped

    def close(self) -> None:
        """Nothing to let go of (the dicts stay readable, as tests of a finished task expect)."""

    @property
    def empty(self) -> bool:
        return not any(entries for states in self.groups.values() for entries in states.values())
