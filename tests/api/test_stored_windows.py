"""Where a WindowedBolt keeps its windows: in the task's RocksDB on ``state.backend: rocksdb``
when they are time windows keyed by the grouping's fields (so they move with their key groups),
in the bolt's own snapshot otherwise (count windows, windows keyed by other fields)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rayflow import Topology, Tuple, Window, testing
from rayflow.api.stored_windows import PANES, SESSIONS, TUPLES
from tests.windowing import Events, Tagger, WindowCount


class WhereWindows(WindowCount):
    """Emits, per window, whether it came from the store and what the bolt holds itself."""

    outputs = {"default": ["key", "stored", "held", "entries", "count"], "late": ["key", "ts"]}

    def process_window(self, window: Window, tuples: list[Tuple]) -> None:
        held = len(self._panes) + len(self._sessions) + len(self._counts)
        entries = 0
        if self._stored is not None:  # the window's tuples and headers, in the store
            store = self._stored.store
            for group in self._stored.due.groups:
                for name in (PANES, SESSIONS, TUPLES):
                    entries += sum(1 for _ in store.scan(group, name))
        key = window.key[0] if window.key else None
        self.emit([key, self._stored is not None, held, entries, window.count])


def where(window: dict[str, Any], backend: str, tmp_path: Path, key: list | None = None) -> list:
    config = {"batch.size": 4, "state.backend": backend, "state.rocksdb.dir": str(tmp_path)}
    t = Topology("where", config=config)
    events = [("a", 1_000), ("b", 1_500), ("a", 2_000), ("a", 12_000), ("b", 30_000)]
    t.spout("events", Events, kwargs={"items": events},
            config={"watermark.timestamp_field": "ts"})  # fmt: skip
    spec = {**window, "timestamp_field": "ts", **({"key": key} if key else {})}
    t.bolt("window", WhereWindows, parallelism=2, config={"window": spec}).fields("events", "key")
    t.bolt("sink", Tagger).global_("window")
    return sorted(row[1:] for row in testing.run(t).outputs["sink"])


@pytest.mark.parametrize(
    "window", [{"type": "tumbling", "size": "10s"}, {"type": "session", "gap": "3s"}]
)
def test_keyed_time_windows_live_in_rocksdb_and_the_bolt_holds_none(
    window: dict, tmp_path: Path
) -> None:
    rows = where(window, "rocksdb", tmp_path)
    assert rows and all(stored and held == 0 for _, stored, held, _, _ in rows)
    assert max(entries for *_, entries, _ in rows) >= 3  # a header and the window's tuples
    in_memory = where(window, "memory", tmp_path)
    assert all(not stored and held > 0 for _, stored, held, _, _ in in_memory)
    counts = sorted((k, c) for k, *_, c in rows)
    assert counts == sorted((k, c) for k, *_, c in in_memory)


def test_count_windows_and_windows_keyed_otherwise_stay_in_the_bolt(tmp_path: Path) -> None:
    counted = where({"type": "tumbling", "size": 2}, "rocksdb", tmp_path)
    by_time = where({"type": "tumbling", "size": "10s"}, "rocksdb", tmp_path, key=["ts"])
    assert counted and by_time
    assert not any(stored for _, stored, *_ in counted + by_time)


class FailsForB(WindowCount):
    """Raises for key b's windows; the others' windows must still fire."""

    def process_window(self, window: Window, tuples: list[Tuple]) -> None:
        if window.key and window.key[0] == "b":
            raise ValueError("b's window")
        super().process_window(window, tuples)


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_a_window_that_raises_loses_only_itself(backend: str, tmp_path: Path) -> None:
    config = {"batch.size": 8, "state.backend": backend, "state.rocksdb.dir": str(tmp_path)}
    t = Topology("raises", config=config)
    events = [(k, ts) for ts in (1_000, 2_000) for k in "abcd"] + [("a", 30_000)]
    t.spout("events", Events, kwargs={"items": events},
            config={"watermark.timestamp_field": "ts"})  # fmt: skip
    spec = {"type": "tumbling", "size": "10s", "timestamp_field": "ts"}
    t.bolt("window", FailsForB, parallelism=1, config={"window": spec}).fields("events", "key")
    t.bolt("sink", Tagger).global_("window")
    rows = testing.run(t).outputs["sink"]
    fired = sorted((key, start) for _, key, start, *_ in rows)
    assert fired == [("a", 0), ("a", 30_000), ("c", 0), ("d", 0)]


def test_windows_moved_out_of_rocksdb_take_their_due_index_along(tmp_path: Path) -> None:
    from rayflow.api.stored_windows import DUE, windows_in_memory
    from rayflow.keys import encode_fields, key_group_of
    from rayflow.spec.state_settings import StoreSettings
    from rayflow.state.backends import open_store
    from rayflow.state.due import time_bytes

    store = open_store(StoreSettings("rocksdb", str(tmp_path / "db")), "t/window.0")
    encoded = encode_fields(("a",))
    group, k = key_group_of(encoded, 16), len(encoded).to_bytes(4, "big") + encoded
    store.put(group, PANES, k + time_bytes(0), (("a",), [10_000, False, 1], None))
    source = ("default", "events", 0, ("key", "ts"))
    store.put(
        group, TUPLES, k + time_bytes(0) + (0).to_bytes(8, "big"), (None, (["a", 5], *source), None)
    )
    store.put(group, DUE, time_bytes(9_999) + encoded, (encoded, None, None))
    panes, sessions = windows_in_memory(store, range(16), lambda *pane: pane)
    ((start, end, tuples, fired),) = panes.values()
    assert list(panes) == [(("a",), 0)] and (start, end, fired) == (0, 10_000, False)
    assert [(t.values, t.component) for t in tuples] == [(["a", 5], "events")]
    assert sessions == {} and list(store.grouped(None)) == []  # nothing left behind, index included
    store.close()
