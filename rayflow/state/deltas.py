"""Incremental checkpoints of the ``memory`` backend: a full *base* now and then, *deltas* of
the keys changed in between.

A store's keys changed since the last checkpoint are tracked per key (1% of a million keys
touches every key group, so per key group would copy it all). At a checkpoint
:func:`next_part` pickles either the whole store (a base: the first time, after a restore,
after :data:`MAX_DELTAS` deltas or a failed write) or only the changed keys (a delta: each
entry, or ``None`` where the key was deleted), so the loop's work is proportional to what
changed. The part is written to the checkpoint storage's ``shared/`` folder (after the parts
before it: :class:`PartWrites`); the task file lists the chain (base first) and pruning keeps
each file while a kept checkpoint lists it.
:func:`apply_chain` replays a chain into any store, keeping the key groups a task owns.

>>> from rayflow.state.stores import MemoryStore
>>> store = MemoryStore(); store.put(5, "n", b"sa", ("a", 1, None))
>>> base, _, chain = next_part(store, None, "count-0", 1)
>>> store.put(5, "n", b"sb", ("b", 2, None)); store.delete(5, "n", b"sa")
>>> delta, _, chain = next_part(store, None, "count-0", 2)
>>> len(delta) < 200, [entry["path"].rsplit(".", 1)[1] for entry in chain]
(True, ['base', 'delta'])
>>> again = MemoryStore(); apply_chain(again, [base, delta], range(128)); again.groups
{5: {'n': {b'sb': ('b', 2, None)}}}
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import uuid
from typing import Any

from rayflow.state.storage import SHARED, CheckpointError
from rayflow.state.stores import MemoryStore, Store

MAX_DELTAS = 9
"""Deltas after a base before the next base (a restore reads the base and at most this many)."""


class PartWrites:
    """Which parts of a store's chain the writing threads have written: a part is written
    only after the parts before it (a checkpoint whose earlier part was lost fails instead of
    referencing it; see :meth:`wait`)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.state: dict[str, bool | None] = {}  # shared path -> written (None: not yet)

    def started(self, path: str, chain: list[dict[str, Any]]) -> None:
        """A part is on its way; parts no longer in the chain are forgotten (on the loop)."""
        with self.lock:
            keep = {entry["path"] for entry in chain}
            self.state = {p: done for p, done in self.state.items() if p in keep}
            self.state[path] = None

    def finished(self, path: str, written: bool) -> None:
        with self.lock:
            self.state[path] = written
            self.lock.notify_all()

    def wait(self, chain: list[dict[str, Any]], timeout: float) -> None:
        """Until every earlier part of ``chain`` this process writes is written (in a
        thread); a lost or late one raises CheckpointError."""
        paths = [entry["path"] for entry in chain[:-1]]
        with self.lock:
            if not self.lock.wait_for(
                lambda: all(self.state.get(p, True) is not None for p in paths), timeout
            ):
                raise CheckpointError(
                    f"an earlier part of the chain was not written in {timeout:g}s"
                )
            lost = [p for p in paths if self.state.get(p, True) is False]
        if lost:
            raise CheckpointError(f"an earlier part of the chain was lost: {lost[0]}")


def next_part(
    store: MemoryStore, now: int | None, prefix: str, checkpoint_id: int
) -> tuple[bytes, dict[str, Any], list[dict[str, Any]]]:
    """(the part to write, its shared entry, the chain the checkpoint consists of); resets the
    changed keys (call on the loop, at the barrier)."""
    changed = store.changed
    if changed is None or not store.chain or len(store.chain) > MAX_DELTAS or store.force_full:
        kind, chain = "base", []
        groups = {
            group: pickle.dumps(states, pickle.HIGHEST_PROTOCOL)
            for group, states in store.grouped(now)
        }
    else:
        kind, chain = "delta", list(store.chain)
        by_group: dict[int, dict[str, dict[bytes, Any]]] = {}
        for group, name, encoded in changed:
            by_group.setdefault(group, {}).setdefault(name, {})[encoded] = store.get(
                group, name, encoded
            )
        groups = {g: pickle.dumps(s, pickle.HIGHEST_PROTOCOL) for g, s in by_group.items()}
    store.changed, store.force_full = set(), False
    data = pickle.dumps({"kind": kind, "groups": groups}, pickle.HIGHEST_PROTOCOL)
    name = f"{prefix}-{uuid.uuid4().hex[:12]}-{checkpoint_id}.{kind}"
    entry = {
        "path": f"{SHARED}/{name}",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    chain.append(entry)
    store.chain = chain
    if store.writes is None:
        store.writes = PartWrites()
    store.writes.started(entry["path"], chain)
    return data, entry, chain


def apply_chain(store: Store, parts: list[bytes], mine: range) -> None:
    """Replay a chain's parts (base first) into ``store``, only the key groups in ``mine``."""
    for data in parts:
        part = pickle.loads(data)
        base = part["kind"] == "base"
        for group, raw in part["groups"].items():
            if group not in mine:
                continue
            states = pickle.loads(raw)
            if base:
                store.load(group, states)
                continue
            for name, entries in states.items():
                for encoded, entry in entries.items():
                    if entry is None:
                        store.delete(group, name, encoded)
                    else:
                        store.put(group, name, encoded, entry)
