"""Routes fed a whole list of rows (a batch bolt's ``emit_many``): the batches they send are
those that row-by-row emits would send, never over ``batch.size``, with the same acking runs."""

from __future__ import annotations

from typing import Any

import pytest

from rayflow.runtime.io.channels import OutputChannel
from rayflow.runtime.io.route import Route, RouteStats
from rayflow.runtime.io.routing import make_route

BATCH = 4


class Edges:
    """A tracker that gives each sealed run's mark a recognisable edge."""

    def register(self, marks: list[Any], start: int, edges: dict | None) -> dict:
        edges = dict(edges or {})
        for mark in marks[start:]:
            edges[mark] = -mark
        return edges


def routed(grouping: str, targets: int, tracked: bool = False) -> tuple[Route, list[tuple]]:
    """A route to ``targets`` tasks whose channels record (task, rows, runs) per batch."""
    sent: list[tuple] = []

    def channel(i: int) -> OutputChannel:
        def transmit(seq: int, kind: int, stream: str, rows: Any, meta: Any, on_done: Any) -> None:
            sent.append((i, list(rows), meta))

        return OutputChannel(("count", i), 10**6, transmit)

    route = make_route(
        grouping, "default", [channel(i) for i in range(targets)], BATCH, RouteStats(), (0,)
    )
    route.pos, route.cur, route.buf = 0, 0, route.bufs[0]  # a shuffle starts at task 0
    if tracked:
        route.tracker = Edges()
    return route, sent


@pytest.mark.parametrize(
    ("grouping", "targets"), [("SHUFFLE", 2), ("SHUFFLE", 3), ("GLOBAL", 1), ("FORWARD", 2)]
)
def test_emit_many_sends_what_emits_row_by_row_send(grouping: str, targets: int) -> None:
    rows = [[f"w{i}"] for i in range(11)]
    one_by_one, expected = routed(grouping, targets)
    for row in rows:
        one_by_one.add(row)
    one_by_one.flush_all()
    at_once, sent = routed(grouping, targets)
    at_once.add_many(rows[:2])  # a partly filled batch first
    at_once.add_many(iter(rows[2:]))  # any iterable
    at_once.flush_all()
    assert sent == expected
    assert all(len(batch) <= BATCH for _task, batch, _runs in sent)
    assert [row for _task, batch, _runs in sent for row in batch] == rows


def test_a_long_emit_many_to_one_task_is_cut_into_batches() -> None:
    route, sent = routed("GLOBAL", 1)
    route.add_many([[i] for i in range(10)])
    route.flush_all()
    assert [len(batch) for _task, batch, _runs in sent] == [4, 4, 2]  # was one batch of 10


@pytest.mark.parametrize(("grouping", "targets"), [("SHUFFLE", 2), ("GLOBAL", 1)])
def test_emit_many_under_at_least_once_keeps_the_runs_of_row_by_row_emits(
    grouping: str, targets: int
) -> None:
    emits = [(1, [[f"a{i}"] for i in range(3)]), (2, [[f"b{i}"] for i in range(6)])]
    one_by_one, expected = routed(grouping, targets, tracked=True)
    for mark, rows in emits:
        for row in rows:
            one_by_one.add_marked(row, mark)
    one_by_one.flush_all()
    at_once, sent = routed(grouping, targets, tracked=True)
    for mark, rows in emits:
        at_once.add_many_marked(rows, mark)
    at_once.flush_all()
    assert sent == expected
    edges, starts, marks = sent[0][2]
    assert (starts, marks, edges) == ([0, 3], [1, 2], {1: -1, 2: -2})  # a run per mark


def per_task(sent: list[tuple]) -> dict[int, list[tuple]]:
    """The batches each task got, in order (tasks' batches interleave differently)."""
    tasks: dict[int, list[tuple]] = {}
    for task, batch, runs in sent:
        tasks.setdefault(task, []).append((batch, runs))
    return tasks


@pytest.mark.parametrize("targets", [2, 3])
def test_fields_emit_many_looks_keys_up_per_batch_and_routes_as_emits_do(targets: int) -> None:
    words = [f"w{i % 7}" for i in range(40)]
    batches = [
        [[w, i] for i, w in enumerate(words)],  # new keys: row by row, filling the cache
        [[w, -i] for i, w in enumerate(words)],  # all cached: looked up per batch
        [[w, 0] for w in words[:20]] + [[5, 0], [(1, "t"), 0], [["l"], 0]],  # other key types
    ]
    one_by_one, expected = routed("FIELDS", targets)
    for rows in batches:
        for row in rows:
            one_by_one.add(row)
    one_by_one.flush_all()
    at_once, sent = routed("FIELDS", targets)
    spread = []
    original = at_once._spread
    at_once._spread = lambda rows, mark: spread.append(original(rows, mark)) or spread[-1]
    for rows in batches:
        at_once.add_many(rows)
    at_once.flush_all()
    assert spread == [False, True, False]
    assert per_task(sent) == per_task(expected)
    assert all(len(batch) <= BATCH for _task, batch, _runs in sent)


def test_fields_emit_many_under_at_least_once_keeps_the_runs_of_row_by_row_emits() -> None:
    emits = [(1, [[f"w{i % 5}"] for i in range(19)]), (2, [[f"w{i % 3}"] for i in range(30)])]
    one_by_one, expected = routed("FIELDS", 2, tracked=True)
    at_once, sent = routed("FIELDS", 2, tracked=True)
    for row in emits[0][1]:
        at_once.add(row)  # fills the cache: both emits below are looked up per batch
    at_once.flush_all()
    sent.clear()
    for mark, rows in emits:
        for row in rows:
            one_by_one.add_marked(row, mark)
        at_once.add_many_marked(rows, mark)
    one_by_one.flush_all()
    at_once.flush_all()
    assert per_task(sent) == per_task(expected)
    assert any(len(runs[2]) == 2 for _task, _batch, runs in sent)  # a batch with both marks


def test_fields_emit_many_routes_a_str_subclass_key_as_emit_does() -> None:
    class Tagged(str):  # equal to "red" (a str-mixin Enum is alike), yet keyed as "tag:red"
        def __str__(self) -> str:
            return "tag:" + super().__str__()

    for targets in (2, 3, 5):
        one_by_one, expected = routed("FIELDS", targets)
        at_once, sent = routed("FIELDS", targets)
        for route in (one_by_one, at_once):
            route.add(["red"])  # "red" cached
        rows = [[Tagged("red")] for _ in range(20)]
        for row in rows:
            one_by_one.add(row)
        at_once.add_many(rows)
        for route in (one_by_one, at_once):
            route.flush_all()
        assert per_task(sent) == per_task(expected)
