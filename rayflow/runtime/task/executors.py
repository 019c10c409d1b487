"""How a bolt task runs one input batch: ``process_batch`` when the bolt defines it, else
``process`` per row. A user exception fails the row (or the batch) and the task goes on.

A :class:`Tuple` per row costs as much as the rest of a row's way through the runtime (measured
here, on fresh rows as they come off the wire: 365 ns a row with a new ``Tuple`` each, 240 with
one reused). So a ``Tuple`` is reused for the next row whenever nothing kept it: after
``process(tup)`` returns, its reference count says whether the bolt (or anything it called) still
holds it. A bolt that keeps ``tup`` (a window, a list of tuples to ack later) gets a fresh one for
the next row, so reuse never shows; ``tuple.reuse`` promises more (the same object for every row,
kept or not) and spares the check.

>>> from rayflow import Bolt
>>> from rayflow.api.tuple import TupleSource
>>> class Echo(Bolt):
...     def process(self, tup):
...         print(tup[0])
>>> run = make_executor(Echo(), False, lambda *error: None)
>>> run([["a"], ["b"]], TupleSource("default", "src", 0, ("x",)), None)
a
b
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from sys import getrefcount
from typing import Any

from rayflow.api.components import Bolt
from rayflow.api.tuple import Batch, Tuple, TupleSource
from rayflow.runtime.acking.tracker import Received, runs_of, tags_of, union_mark

Execute = Callable[[list, TupleSource, Any], Any]  # None, or an awaitable the loop awaits
UserError = Callable[..., None]  # (what, exception, count=1)


def _unshared_refcount() -> int:
    """What ``getrefcount`` says of a ``Tuple`` only a function's local variable holds (2 on
    CPython 3.11: the variable and the argument; measured, since newer versions count stack
    references differently). More than this after ``process``: someone kept it.

    >>> kept = []
    >>> tup = Tuple(None, None); kept.append(tup)
    >>> getrefcount(tup) > _UNSHARED
    True
    """
    probe = Tuple(None, None)  # type: ignore[arg-type]
    return getrefcount(probe)


_UNSHARED = _unshared_refcount()


def keyed_process(process: Callable[[Tuple], None], state: Any) -> Callable[[Tuple], None]:
    """``process`` with keyed state scoped to each tuple's key (its key fields' values)."""
    key_fields, set_key = state.key_fields, state.set_key
    indexes: dict[TupleSource, list[int]] = {}

    def process_keyed(tup: Tuple) -> None:
        source = tup.source
        where = indexes.get(source)
        if where is None:
            where = indexes[source] = [source.index[f] for f in key_fields]
        values = tup.values
        set_key(tuple([values[i] for i in where]))
        try:
            process(tup)
        finally:
            set_key(None)  # timers and cleanup have no key

    return process_keyed


def make_executor(
    bolt: Bolt,
    reuse_tuples: bool,
    user_error: UserError,
    process: Callable[[Tuple], None] | None = None,
) -> Execute:
    """The function that hands one batch's rows to ``bolt`` (to ``process`` instead of
    ``bolt.process`` when given: keyed state wraps it)."""
    if type(bolt).process_batch is not Bolt.process_batch:
        process_batch = bolt.process_batch

        def execute_batch(rows: list, source: TupleSource, meta: Any) -> Any:
            try:
                pending = process_batch(Batch(rows, source, meta))
            except Exception as exc:
                user_error("process_batch", exc, len(rows))
                return None
            if pending is not None:  # a coroutine (a flow's map_async): the loop awaits it
                return _finish(pending, user_error, len(rows))
            return None

        return execute_batch

    keyed = process is not None
    process = process or bolt.process
    if reuse_tuples and bolt.auto_ack and not keyed:

        def execute_rows_reusing(rows: list, source: TupleSource, meta: Any) -> None:
            tup = Tuple(None, source)  # type: ignore[arg-type]
            for row in rows:
                tup.values = row
                try:
                    process(tup)
                except Exception as exc:
                    user_error("process", exc)

        return execute_rows_reusing

    def execute_rows(rows: list, source: TupleSource, meta: Any) -> None:
        tup = Tuple(None, source)  # type: ignore[arg-type]
        for row in rows:
            tup.values = row
            try:
                process(tup)
            except Exception as exc:
                user_error("process", exc)
                tup = Tuple(None, source)  # type: ignore[arg-type]  # the traceback holds it
                continue
            if getrefcount(tup) > _UNSHARED:  # kept: the next row gets its own
                tup = Tuple(None, source)  # type: ignore[arg-type]

    return execute_rows


async def _finish(pending: Awaitable[Any], user_error: UserError, rows: int) -> None:
    """The rest of a ``process_batch`` that awaits (the task's loop awaits this: no other
    message of the task is handled meanwhile, so results never overtake a barrier or a
    watermark that followed the batch)."""
    try:
        await pending
    except Exception as exc:
        user_error("process_batch", exc, rows)


def make_acking_executor(
    bolt: Bolt, acking: Any, user_error: UserError, process: Callable[[Tuple], None] | None = None
) -> Execute:
    """At-least-once: a batch comes with its runs of rows that share a mark and its roots'
    edges (see ``runtime.acking.tracker``). With ``auto_ack`` the batch's edges are acked once its
    rows are processed, and a row whose ``process`` raises fails its tuple; a ``process_batch``
    takes the batch as one unit (what it emits is anchored to all its tuples, and if it raises
    they all fail). Without ``auto_ack`` the bolt acks and fails each tuple itself, in
    ``process``."""

    if not bolt.auto_ack:
        return _rich_executor(process or bolt.process, acking, user_error)
    if type(bolt).process_batch is not Bolt.process_batch and process is None:
        return _batch_executor(bolt.process_batch, acking, user_error)
    process = process or bolt.process

    def execute_acked(rows: list, source: TupleSource, meta: Any) -> None:
        edges, starts, marks = meta
        failed_before = acking.failed
        tup = Tuple(None, source)  # type: ignore[arg-type]  # reused while unshared (see top)
        for mark, start, end in runs_of(len(rows), starts, marks):
            acking.current = tup.meta = mark
            for row in rows[start:end] if start or end < len(rows) else rows:
                tup.values = row
                try:
                    process(tup)
                except Exception as exc:
                    user_error("process", exc, 0)
                    acking.fail(tup)
                    tup = Tuple(None, source, mark)  # type: ignore[arg-type]
                    continue
                if getrefcount(tup) > _UNSHARED:
                    tup = Tuple(None, source, mark)  # type: ignore[arg-type]
        acking.current = None
        acking.acked += len(rows) - (acking.failed - failed_before)
        acking.ack_batch(edges)
        acking.flush_acks()

    return execute_acked


def _rich_executor(process: Callable[[Tuple], None], acking: Any, user_error: UserError) -> Execute:
    def execute_rich(rows: list, source: TupleSource, meta: Any) -> None:
        edges, starts, marks = meta
        runs = list(runs_of(len(rows), starts, marks))
        received = Received(edges, runs)
        for mark, start, end in runs:
            acking.current = mark
            for row in rows[start:end]:
                tup = Tuple(row, source, [mark, received, False])
                try:
                    process(tup)
                except Exception as exc:
                    user_error("process", exc, 0)
                    acking.fail(tup)
        acking.current = None
        acking.flush_acks()

    return execute_rich


def _batch_failed(
    acking: Any, user_error: UserError, exc: Exception, mark: Any, before: int, rows: int
) -> None:
    user_error("process_batch", exc, 0)
    acking.failures.extend(tags_of(mark))  # every tuple of the batch fails
    acking.failed = before + rows


def _batch_done(acking: Any, edges: Any) -> None:
    acking.current = None
    acking.runs = ([], [])
    acking.ack_batch(edges)
    acking.flush_acks()


async def _ack_later(
    pending: Awaitable[Any],
    acking: Any,
    user_error: UserError,
    mark: Any,
    before: int,
    rows: int,
    edges: Any,
) -> None:
    """An awaiting ``process_batch`` under at-least-once: its inputs are acked (or failed) once
    it is done, so what it emits meanwhile is anchored to them."""
    try:
        await pending
    except Exception as exc:
        _batch_failed(acking, user_error, exc, mark, before, rows)
    else:
        acking.acked += rows - (acking.failed - before)
    _batch_done(acking, edges)


def _batch_executor(
    process_batch: Callable[[Batch], None], acking: Any, user_error: UserError
) -> Execute:
    def execute_batch_acked(rows: list, source: TupleSource, meta: Any) -> Any:
        edges, starts, marks = meta
        mark = acking.current = union_mark(marks)
        acking.runs = (starts, marks)  # a fused operator fails single rows (fail_rows)
        before = acking.failed
        try:
            pending = process_batch(Batch(rows, source))
        except Exception as exc:
            _batch_failed(acking, user_error, exc, mark, before, len(rows))
        else:
            if pending is not None:  # awaited by the loop; acked once it is done
                return _ack_later(pending, acking, user_error, mark, before, len(rows), edges)
            acking.acked += len(rows) - (acking.failed - before)
        _batch_done(acking, edges)
        return None

    return execute_batch_acked
