"""A :class:`~rayflow.api.windows.WindowedBolt`'s windows in the task's RocksDB
(``state.backend: rocksdb``), so that open windows may outgrow the task's memory.

Used for time windows (tumbling, sliding, session) keyed by the fields their bolt is grouped
by: then a window's key group is the one routing sends its key to, and its entries move with the
key group on a rescale, like the rest of the keyed state. Count windows and windows keyed
otherwise (or not at all) stay in the bolt's own snapshot.

Entries, in the key's key group (``k`` is the window key's encoding with its length first, so
no key's entries fall within another's prefix):

- ``window.panes`` ``k | start`` -> ``(key, [end, fired, count], None)``: a tumbling or sliding
  window;
- ``window.sessions`` ``k`` -> ``(key, [[start, end, fired, count, [[part, n], ...]], ...], None)``:
  a key's sessions; a session that absorbed others lists their *parts* in order, so a merge
  rewrites no tuple;
- ``window.tuples`` ``k | part | n`` -> ``(None, (values, stream, component, task, fields),
  None)``: the ``n``-th tuple of a window's part (a tumbling or sliding window is one part, its
  start); appended without rewriting what the window holds;
- ``~window`` (:class:`~rayflow.state.due.StoreDueKeys`): which keys have a window ending, or
  its allowed lateness over, at a time; one runtime timer per distinct time.

Savepoints hold the first three as any keyed state, so a savepoint restores with either backend
(:meth:`StoredWindows.take_over` and :func:`windows_in_memory` move windows between this form
and the memory form) and at another parallelism.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from rayflow.api.tuple import Tuple, TupleSource
from rayflow.keys import encode_fields, key_group_of
from rayflow.state.due import DERIVED, time_bytes
from rayflow.state.rocksdb import RocksStore
from rayflow.state.stores import Store

if TYPE_CHECKING:
    from rayflow.api.windows import WindowedBolt, _Pane

PANES, SESSIONS, TUPLES = "window.panes", "window.sessions", "window.tuples"
INDEX = "window"  # the due index's name (StoreDueKeys keeps it as the state DUE)
DUE = DERIVED + INDEX
_TIME_BYTES = 8


def _prefix(encoded: bytes) -> bytes:
    return len(encoded).to_bytes(4, "big") + encoded


def _tuple_of(stored: tuple, sources: dict[tuple[Any, ...], TupleSource]) -> Tuple:
    """A stored tuple back, its source shared with the others from the same place."""
    values, *where = stored
    source = sources.get(tuple(where))
    if source is None:
        source = sources[tuple(where)] = TupleSource(*where)
    return Tuple(values, source)


def _untime(raw: bytes) -> int:
    return int.from_bytes(raw, "big") - (1 << 63)


class StoredWindows:
    """The open windows of one WindowedBolt task in its RocksDB; ``bolt`` decides what is
    late and handles what fires (``_fire_stored``)."""

    def __init__(self, bolt: WindowedBolt, store: RocksStore, due_of: Callable[..., Any]) -> None:
        self.bolt = bolt
        self.store = store
        spec = bolt._spec
        self.sessions = spec.type == "session"
        self.size, self.lateness = spec.size, spec.allowed_lateness
        self.event_time = spec.time == "event"
        state = bolt.state
        self.max_parallelism = state.max_parallelism
        self.due = due_of(INDEX, self._timer_at)
        self.sources: dict[tuple[Any, ...], TupleSource] = {}
        self.own_times: list[int] = []  # a heap of the due times, when the bolt keeps its own

    def _timer_at(self, when: int) -> None:
        if self.bolt._own_time:  # fired by fire_own as the bolt's own event time moves
            heapq.heappush(self.own_times, when)
        else:
            self.bolt.register_timer(when, self.event_time, ("due", None, when))

    # ---------------------------------------------------------------- adding
    def _where(self, key: Any) -> tuple[int, bytes, bytes]:
        encoded = encode_fields(key)
        return key_group_of(encoded, self.max_parallelism), encoded, _prefix(encoded)

    def _put_tuple(self, group: int, k: bytes, part: int, n: int, tup: Tuple) -> None:
        s = tup.source
        value = (tup.values, s.stream, s.component, s.task, s.fields)
        at = k + time_bytes(part) + n.to_bytes(8, "big")
        self.store.put(group, TUPLES, at, (None, value, None))

    def add_to_pane(self, key: Any, start: int, end: int, tup: Tuple) -> None:
        """``tup`` into the tumbling or sliding window [start, end) of ``key``."""
        group, encoded, k = self._where(key)
        at = k + time_bytes(start)
        entry = self.store.get(group, PANES, at)
        header = [end, False, 0] if entry is None else entry[1]
        if entry is None:
            self.due.add(encoded, end - 1)
        self._put_tuple(group, k, start, header[2], tup)
        header[2] += 1
        self.store.put(group, PANES, at, (key, header, None))
        if header[1] or (self.event_time and end - 1 <= self.bolt._now()):
            self._fire_pane(group, k, key, start, header)  # late, within allowed lateness

    def add_to_session(self, key: Any, ts: int, gap: int, tup: Tuple) -> None:
        """``tup`` at ``ts`` into ``key``'s sessions, merging those it touches."""
        group, encoded, k = self._where(key)
        entry = self.store.get(group, SESSIONS, k)
        sessions = [] if entry is None else entry[1]
        merged: list[Any] = [ts, ts + gap, False, 0, []]
        for s in [s for s in sessions if s[0] <= merged[1] and merged[0] <= s[1]]:
            sessions.remove(s)  # touching or overlapping sessions merge (as in Flink)
            merged = [min(s[0], merged[0]), max(s[1], merged[1]), False, s[3] + merged[3],
                      s[4] + merged[4]]  # fmt: skip
        if not merged[4]:
            merged[4] = [[ts, 0]]  # a new part: no open session of the key holds ts
        part = merged[4][-1]
        self._put_tuple(group, k, part[0], part[1], tup)
        part[1] += 1
        merged[3] += 1
        sessions.append(merged)
        if self.event_time and merged[1] - 1 <= self.bolt._now():
            self._fire_session(key, merged, group, k)  # event time already passed its end
        self.due.add(encoded, merged[1] - 1)
        self.store.put(group, SESSIONS, k, (key, sessions, None))

    # ---------------------------------------------------------------- firing
    def fire_due(self, when: int) -> None:
        """Every window ending (or leaving its allowed lateness) at ``when``."""
        error = None
        for encoded in self.due.keys(when):
            try:
                self.fire_key(encoded, when)
            except Exception as exc:  # the other keys' windows still fire (as in memory)
                error = error or exc
        self.due.drop(when)
        if error is not None:
            raise error

    def fire_own(self, upto: int) -> None:
        """Own event time reached ``upto``: what is due until then, in time order (and what
        firing made due by then: the end of an allowed lateness)."""
        times = self.own_times
        while times and times[0] <= upto:
            when = heapq.heappop(times)
            if when in self.due.times:  # not fired since it was pushed
                self.fire_due(when)

    def fire_key(self, encoded: bytes, when: int) -> None:
        group, k = key_group_of(encoded, self.max_parallelism), _prefix(encoded)
        if not self.sessions:
            self._fire_panes(encoded, group, k, when)
            return
        entry = self.store.get(group, SESSIONS, k)
        if entry is None:
            return
        key, sessions = entry[0], entry[1]
        for s in list(sessions):
            if s[2] and when >= s[1] - 1 + self.lateness:
                sessions.remove(s)  # the allowed lateness is over
                self._drop_parts(group, k, s[4])
            elif when >= s[1] - 1 and not s[2]:
                self._fire_session(key, s, group, k)
                self._expire_session(sessions, s, encoded, group, k)
            elif when == s[1] - 1:  # fired early (event time had passed its end)
                self._expire_session(sessions, s, encoded, group, k)
        if sessions:
            self.store.put(group, SESSIONS, k, (key, sessions, None))
        else:
            self.store.delete(group, SESSIONS, k)

    def _fire_panes(self, encoded: bytes, group: int, k: bytes, when: int) -> None:
        # the window ending at when + 1, and the one whose allowed lateness ends at when
        for start in {when + 1 - self.size, when + 1 - self.size - self.lateness}:
            entry = self.store.get(group, PANES, k + time_bytes(start))
            if entry is not None:
                self._due_pane(group, k, entry[0], start, entry[1], when)

    def _due_pane(
        self, group: int, k: bytes, key: Any, start: int, header: list, when: int
    ) -> None:
        end, fired = header[0], header[1]
        if fired and when >= end - 1 + self.lateness:
            self._drop_pane(group, k, start, header)  # the allowed lateness is over
        elif when >= end - 1:
            if not fired:
                self._fire_pane(group, k, key, start, header)
            if self.lateness and self.event_time:
                self.due.add(k[4:], end - 1 + self.lateness)
            else:
                self._drop_pane(group, k, start, header)

    def _expire_session(
        self, sessions: list, s: list, encoded: bytes, group: int, k: bytes
    ) -> None:
        if self.lateness and self.event_time:
            self.due.add(encoded, s[1] - 1 + self.lateness)
        else:
            sessions.remove(s)
            self._drop_parts(group, k, s[4])

    def _fire_pane(self, group: int, k: bytes, key: Any, start: int, header: list) -> None:
        header[1] = True
        self.store.put(group, PANES, k + time_bytes(start), (key, header, None))
        tuples = list(self._tuples(group, k, start))
        self.bolt._fire_stored(key, start, header[0], tuples)

    def _fire_session(self, key: Any, s: list, group: int, k: bytes) -> None:
        s[2] = True
        tuples = [t for part, _ in s[4] for t in self._tuples(group, k, part)]
        self.bolt._fire_stored(key, s[0], s[1], tuples)

    def _tuples(self, group: int, k: bytes, part: int) -> Iterator[Tuple]:
        prefix = k + time_bytes(part)
        for encoded, entry in self.store.scan(group, TUPLES, prefix):
            if not encoded.startswith(prefix):
                break
            yield self._tuple(entry[1])

    def _tuple(self, stored: tuple) -> Tuple:
        return _tuple_of(stored, self.sources)

    def _drop_pane(self, group: int, k: bytes, start: int, header: list) -> None:
        self.store.delete(group, PANES, k + time_bytes(start))
        self._drop_parts(group, k, [[start, header[2]]])

    def _drop_parts(self, group: int, k: bytes, parts: list) -> None:
        # Point deletes of the n tuples each part holds: range deletes leave tombstones that
        # every later read must step over (one per window: reads became 100x slower).
        gone = [(group, k + time_bytes(p) + i.to_bytes(8, "big"), None)
                for p, n in parts for i in range(n)]  # fmt: skip
        self.store.write(TUPLES, gone)

    # ------------------------------------------------------ restore, either form
    def resume(self) -> None:
        """After a restore: the due index as restored, or built again from the windows (a
        savepoint leaves the index out)."""
        self.own_times = []
        self.due.resume(self._due_pairs())

    def _due_pairs(self) -> Iterator[tuple[bytes, int]]:
        for group in self.due.groups:
            for at, (_, header, _) in self.store.scan(group, PANES):
                end = header[0]
                yield at[4:-_TIME_BYTES], end - 1 + (self.lateness if header[1] else 0)
            for k, (_, sessions, _) in self.store.scan(group, SESSIONS):
                for s in sessions:
                    yield k[4:], s[1] - 1 + (self.lateness if s[2] else 0)

    def take_over(self, panes: dict[tuple[Any, int], _Pane], sessions: dict[Any, list]) -> None:
        """Windows of a snapshot taken on the memory backend, into the store."""
        mine = self.due.groups  # a snapshot of one task restored into several: their keys
        for (key, start), pane in panes.items():
            group, _, k = self._where(key)
            if group not in mine:
                continue
            for n, tup in enumerate(pane.tuples):
                self._put_tuple(group, k, start, n, tup)
            header = [pane.end, pane.fired, len(pane.tuples)]
            self.store.put(group, PANES, k + time_bytes(start), (key, header, None))
        for key, held in sessions.items():
            group, _, k = self._where(key)
            if group not in mine:
                continue
            stored = []
            for pane in held:
                for n, tup in enumerate(pane.tuples):
                    self._put_tuple(group, k, pane.start, n, tup)
                parts = [[pane.start, len(pane.tuples)]]
                stored.append([pane.start, pane.end, pane.fired, len(pane.tuples), parts])
            self.store.put(group, SESSIONS, k, (key, stored, None))


def windows_in_memory(
    store: Store, groups: Iterable[int], make_pane: Callable[..., _Pane]
) -> tuple[dict[tuple[Any, int], _Pane], dict[Any, list[_Pane]]]:
    """Windows of the stored form that a restore put into ``store`` (a RocksDB task's
    checkpoint restored on the memory backend, or a savepoint of windows this bolt no longer
    keeps in RocksDB: other window fields, or count windows), in the memory form
    (``make_pane(start, end, tuples, fired)``); taken out of the store."""
    sources: dict[tuple[Any, ...], TupleSource] = {}
    panes: dict[tuple[Any, int], _Pane] = {}
    sessions: dict[Any, list[_Pane]] = {}
    for group in groups:
        held = {name: dict(store.scan(group, name)) for name in (TUPLES, PANES, SESSIONS, DUE)}
        parts: dict[bytes, list[Tuple]] = {}
        for encoded in sorted(held[TUPLES]):
            parts.setdefault(encoded[:-8], []).append(_tuple_of(held[TUPLES][encoded][1], sources))
        for at, (key, (end, fired, _), _) in held[PANES].items():
            start = _untime(at[-_TIME_BYTES:])
            panes[(key, start)] = make_pane(start, end, parts.get(at, []), fired)
        for k, (key, stored, _) in held[SESSIONS].items():
            sessions[key] = []
            for start, end, fired, _, held_parts in stored:
                tuples = [t for p, _ in held_parts for t in parts.get(k + time_bytes(p), [])]
                sessions[key].append(make_pane(start, end, tuples, fired))
        for name, entries in held.items():  # the due index too: nothing reads it here
            for encoded in entries:
                store.delete(group, name, encoded)
    return panes, sessions
