"""Keyed *tables* on the rocksdb backend: a dict-like view of one state in the task's RocksDB,
for the Streams API's keyed operators (:meth:`rayflow.state.keyed.KeyedState.table`).

The operators change a table's values in place (a window's accumulator, a join's item lists)
and keep what they read for the rest of the batch. So the table keeps every entry it read or
wrote in a small cache and writes all of them back, in one write batch, when the task
*settles* (after each batch, timer and the end of the input, before a checkpoint) or when
the cache grows past :data:`CACHE_ENTRIES` at a point the operator marks safe. Entries are
stored exactly as the memory backend's tables are snapshotted (state name = table name, the
encoded key, ``(key, value, None)``), so checkpoints and savepoints of either restore the
other.

>>> import tempfile
>>> from rayflow.spec.state_settings import StoreSettings
>>> from rayflow.state.rocksdb import RocksStore
>>> store = RocksStore(StoreSettings("rocksdb", tempfile.mkdtemp()), "demo/sums/0")
>>> sums = StoreTable(store, "sums", 128, originals=lambda index: index)
>>> sums["cow"] = [1]; sums["cow"].append(2)  # changed in place, before the table settles
>>> sums.settle(); sums.cache
{}
>>> sums["cow"], "moon" in sums, sorted(sums.items())
([1, 2], False, [('cow', [1, 2])])
>>> store.close()
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from rayflow.keys import encode_key, key_group_of
from rayflow.state.rocksdb import RocksStore

CACHE_ENTRIES = 20_000
"""Entries a table holds before :meth:`~rayflow.state.keyed.KeyedState.settle_some` writes
them back."""

_ABSENT = object()


def table_key(key: Any) -> Any:
    """What a table is indexed by: a str or int key itself (never equal to a key of another
    type), the canonical bytes of any other (so ``1``, ``1.0`` and ``True`` stay three keys, as
    in routing).

    >>> table_key("a"), table_key(7), table_key(True), table_key(1.0)[:1]
    ('a', 7, b'T', b'f')
    """
    cls = key.__class__
    return key if cls is str or cls is int else encode_key(key)


def locate(index: Any, max_parallelism: int) -> tuple[int, bytes]:
    """(key group, encoded key) of a table's index.

    >>> locate("cow", 128) == (key_group_of(b"scow", 128), b"scow")
    True
    """
    encoded = index if index.__class__ is bytes else encode_key(index)
    return key_group_of(encoded, max_parallelism), encoded


class StoreTable(MutableMapping[Any, Any]):
    """One table's entries in a :class:`~rayflow.state.rocksdb.RocksStore`, indexed as the
    memory backend's dict tables are; ``originals(index)`` gives the key an index stands for
    when it is set (a bytes index is the encoding of a key that is not a str or int)."""

    def __init__(
        self,
        store: RocksStore,
        name: str,
        max_parallelism: int,
        originals: Callable[[Any], Any],
    ) -> None:
        self.store = store
        self.name = name
        self.max_parallelism = max_parallelism
        self.originals = originals
        # index -> [key, value (or _ABSENT), whether the store holds it, key group, encoded]
        self.cache: dict[Any, list[Any]] = {}

    def _held(self, index: Any) -> list[Any]:
        held = self.cache.get(index)
        if held is None:
            group, encoded = locate(index, self.max_parallelism)
            entry = self.store.get(group, self.name, encoded)
            if entry is None:
                held = [None, _ABSENT, False, group, encoded]
            else:
                held = [entry[0], entry[1], True, group, encoded]
            self.cache[index] = held
        return held

    def __getitem__(self, index: Any) -> Any:
        value = self._held(index)[1]
        if value is _ABSENT:
            raise KeyError(index)
        return value

    def get(self, index: Any, default: Any = None) -> Any:
        value = self._held(index)[1]
        return default if value is _ABSENT else value

    def __contains__(self, index: object) -> bool:
        return self._held(index)[1] is not _ABSENT

    def __setitem__(self, index: Any, value: Any) -> None:
        held = self._held(index)
        if held[1] is _ABSENT:
            held[0] = self.originals(index)
        held[1] = value

    def __delitem__(self, index: Any) -> None:
        held = self._held(index)
        if held[1] is _ABSENT:
            raise KeyError(index)
        held[1] = _ABSENT

    def key_of(self, index: Any, default: Any = None) -> Any:
        """The key stored under ``index`` (``default`` when there is none; a key deleted since
        the last settle is still known)."""
        held = self._held(index)
        return default if held[1] is _ABSENT and not held[2] else held[0]

    def __iter__(self) -> Iterator[Any]:
        return (index for index, _ in self.items())

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def items(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
        """Every (index, value), read from the store after writing back what is held."""
        return ((table_key(key), value) for key, value in self.keyed_items())

    def keyed_items(self) -> Iterator[tuple[Any, Any]]:
        """Every (key, value): the keys as they were set, read with their values."""
        self.settle()
        for group in range(self.max_parallelism):
            for _, (key, value, _expires) in self.store.scan(group, self.name):
                yield key, value

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        return (value for _, value in self.items())

    def settle(self) -> None:
        """Write back every entry read or written since the last time (its value may have
        been changed in place), and forget them. A value that cannot be pickled keeps its
        stored one (the rest is written) and raises :class:`UnpicklableEntry`."""
        if not self.cache:
            return
        changes = []
        for key, value, stored, group, encoded in self.cache.values():
            if value is not _ABSENT:
                changes.append((group, encoded, (key, value, None)))
            elif stored:
                changes.append((group, encoded, None))
        try:
            self.store.write(self.name, changes)
        except Exception:
            self.cache = {}
            bad, good = None, []
            for change in changes:  # which one: the others are written
                try:
                    if change[2] is not None:
                        pickle.dumps(change[2], pickle.HIGHEST_PROTOCOL)
                    good.append(change)
                except Exception as exc:
                    bad = bad or UnpicklableEntry(change[2][0], change[2][1], exc)
            if bad is None:
                raise
            self.store.write(self.name, good)
            raise bad from None
        self.cache = {}


class UnpicklableEntry(Exception):
    """A table's value that cannot be pickled (so it cannot be stored): its key, the value
    and what pickle said."""

    def __init__(self, key: Any, value: Any, cause: Exception) -> None:
        super().__init__(key, value, cause)
        self.key, self.value, self.cause = key, value, cause
