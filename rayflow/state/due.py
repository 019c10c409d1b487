"""Which keys have something due at a time: the keys with a window ending then, or with join
items expiring then. One runtime timer per distinct time fires them all
(:meth:`rayflow.state.keyed.KeyedState.due`).

On the memory backend a dict of time -> key indexes (:class:`DueKeys`). On rocksdb an entry
per (time, key) in the task's RocksDB (:class:`StoreDueKeys`), in the key's key group (so it
moves with the key on a rescale) under the state name ``~`` + name, and only the distinct
times in memory: the index grows with the keys on disk, not in the task's memory. Such
*derived* states are indexes of a table: savepoints leave them out, and a restore without them
builds them again from the table.

>>> fired = []
>>> due = DueKeys(fired.append)
>>> due.add("cow", 10_000); due.add("moon", 10_000); due.add("cow", 20_000)
>>> fired, sorted(due.keys(10_000))
([10000, 20000], ['cow', 'moon'])
>>> due.drop(10_000); due.keys(10_000)
[]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rayflow.state.rocksdb import RocksStore
from rayflow.state.tables import locate

DERIVED = "~"
"""The first character of a derived state's name (an index of a table, never a user's)."""
_OFFSET = 1 << 63  # times as unsigned big-endian: byte order is time order, negatives first
_HELD = 4096  # index entries held back before they are written (a classic bolt has no batch end)
_POINT_DELETES = 65_536  # a time with more entries goes by range (its keys stay out of memory)


def is_derived(name: str) -> bool:
    """Whether a state name is an index that restores rebuild (savepoints leave it out)."""
    return name.startswith(DERIVED)


def time_bytes(when: int) -> bytes:
    """Eight bytes that sort as the times do.

    >>> time_bytes(-1) < time_bytes(0) < time_bytes(1)
    True
    """
    return (when + _OFFSET).to_bytes(8, "big")


class DueKeys:
    """Time -> key indexes in a dict; ``on_new(time)`` when a time is first added (to
    register its timer)."""

    def __init__(self, on_new: Callable[[int], None]) -> None:
        self.on_new = on_new
        self.times: dict[int, set[Any]] = {}

    def add(self, index: Any, when: int) -> None:
        keys = self.times.get(when)
        if keys is None:
            keys = self.times[when] = set()
            self.on_new(when)
        keys.add(index)

    def keys(self, when: int) -> list[Any]:
        """The key indexes with something due at ``when``."""
        return list(self.times.get(when, ()))

    def drop(self, when: int) -> None:
        """Forget ``when`` (its keys were handled)."""
        self.times.pop(when, None)

    def resume(self, pairs: Iterable[tuple[Any, int]]) -> None:
        """After a restore: (key index, time) of everything the table holds now."""
        self.times = {}
        for index, when in pairs:
            self.add(index, when)

    def settle(self) -> None:
        """Nothing held back."""


class StoreDueKeys:
    """The same, as entries of the task's RocksDB; ``groups`` are the key groups the task
    owns. In memory: each time with the key groups that hold keys due then."""

    def __init__(
        self,
        store: RocksStore,
        name: str,
        max_parallelism: int,
        groups: range,
        on_new: Callable[[int], None],
    ) -> None:
        self.store = store
        self.name = DERIVED + name
        self.max_parallelism = max_parallelism
        self.groups = groups
        self.on_new = on_new
        self.times: dict[int, set[int]] = {}
        # (key group, encoded) -> entry, written when the task settles (an item of a session
        # or a join adds its key again: one write)
        self.pending: dict[tuple[int, bytes], Any] = {}
        # The entries of the time being fired (read, or added while it fires), deleted one by
        # one when it is dropped: a range delete per time leaves a tombstone that every later
        # read steps over (a session per event made reads 10x slower). A time with more than
        # _POINT_DELETES entries still goes by range: remembering them all would hold its keys.
        self.firing: int | None = None
        self.fired: list[tuple[int, bytes, None]] = []
        self.all_read = False

    def add(self, index: Any, when: int) -> None:
        groups = self.times.get(when)
        if groups is None:
            groups = self.times[when] = set()
            self.on_new(when)
        group, encoded = locate(index, self.max_parallelism)
        groups.add(group)
        at = (group, time_bytes(when) + encoded)
        if when == self.firing and len(self.fired) <= _POINT_DELETES:
            self.fired.append((*at, None))
        self.pending[at] = (index, None, None)
        if len(self.pending) >= _HELD:
            self.settle()

    def settle(self) -> None:
        if self.pending:
            pending, self.pending = self.pending, {}
            self.store.write(self.name, [(g, e, entry) for (g, e), entry in pending.items()])

    def keys(self, when: int) -> Iterator[Any]:
        """The key indexes due at ``when``, read as they are iterated (the store's iterators
        see the index as it was when each key group's read began)."""
        self.settle()
        self.firing, self.fired, self.all_read = when, [], False
        prefix = time_bytes(when)
        for group in sorted(self.times.get(when, ())):
            for encoded, entry in self.store.scan(group, self.name, prefix):
                if not encoded.startswith(prefix):
                    break
                if len(self.fired) <= _POINT_DELETES:
                    self.fired.append((group, encoded, None))
                yield entry[0]
        self.all_read = when == self.firing

    def drop(self, when: int) -> None:
        self.settle()
        groups = self.times.pop(when, ())
        if when == self.firing and self.all_read and len(self.fired) <= _POINT_DELETES:
            self.store.write(self.name, self.fired)
        else:  # not read to its end, or too many to remember: whatever it holds
            start, stop = time_bytes(when), time_bytes(when + 1)
            self.store.write(self.name, (), [(group, start, stop) for group in groups])
        self.firing, self.fired, self.all_read = None, [], False

    def resume(self, pairs: Iterable[tuple[Any, int]]) -> None:
        """The times the restored index holds (one seek per time and key group), or, restored
        from a savepoint (which leaves the index out), the index built again from ``pairs``."""
        self.times = {}
        for group in self.groups:
            for first in self.store.prefixes(group, self.name, 8):
                when = int.from_bytes(first, "big") - _OFFSET
                if when not in self.times:
                    self.times[when] = set()
                    self.on_new(when)
                self.times[when].add(group)
        if self.times:
            return
        for n, (index, when) in enumerate(pairs, 1):
            self.add(index, when)
            if n % 10_000 == 0:
                self.settle()
        self.settle()
