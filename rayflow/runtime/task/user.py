"""The user's spout or bolt inside a task: creating it, binding the runtime's methods (emit, ack,
timers, keyed state) onto it, and choosing how its ``process`` is called (the *executor*, see
:mod:`rayflow.runtime.task.executors`).

>>> from rayflow import Bolt
>>> class Counter(Bolt):
...     def process(self, tup):
...         self.state.value("n", default=0)
>>> _mentions_state(Counter())
True
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from rayflow.api.components import Bolt, Context, Spout
from rayflow.errors import TaskError
from rayflow.runtime.acking.binding import bind_acking
from rayflow.runtime.acking.tracker import Acking
from rayflow.runtime.task.executors import (
    Execute,
    keyed_process,
    make_acking_executor,
    make_executor,
)
from rayflow.spec.state_settings import StoreSettings
from rayflow.state.backends import open_store
from rayflow.state.incremental import forget_local
from rayflow.state.keyed import KeyedState

if TYPE_CHECKING:
    from rayflow.runtime.task.core import TaskCore


def _mentions_state(bolt: Bolt) -> bool:
    """Whether the bolt's own methods read ``self.state``: then every tuple's key is set from the
    first tuple on (else only once it is first used, sparing bolts without state the cost)."""
    for cls in type(bolt).__mro__:
        if cls is Bolt or cls is object:
            break
        for member in vars(cls).values():
            code = getattr(member, "__code__", None)
            if code is not None and "state" in code.co_names:
                return True
    return False


class UserObject:
    """The user object of one task, its :class:`Acking` (at-least-once) and its executor."""

    def __init__(self, task: TaskCore) -> None:
        self.task = task
        self.obj: Spout | Bolt | None = None
        self.acking: Acking | None = None
        self.execute: Execute | None = None  # bolts: how one batch is processed
        self.state_owner = f"{task.spec.name}/{task.component.id}.{task.key[1]}"  # its folders

    def open(self) -> None:
        """A fresh user object, bound, with ``open``/``prepare`` called (a raise: TaskError)."""
        task = self.task
        comp = task.component
        where = f"{comp.kind} '{comp.id}' ({comp.class_ref.path})"
        try:
            obj = comp.instantiate()
        except Exception as exc:
            raise TaskError(
                comp.id,
                task.key[1],
                f"creating {where} raised {type(exc).__name__}: {exc}",
                traceback.format_exc(),
            ) from exc
        self.close_state()  # a reset: the old object's store goes (its state is in a checkpoint)
        self.obj, self.execute = obj, None
        self.acking = bind_acking(task, obj) if task.reliable else None
        self._bind(obj)
        context = self._context(obj)
        obj.context = context  # type: ignore[attr-defined]
        hook = obj.open if task.is_spout else obj.prepare  # type: ignore[union-attr]
        try:
            hook(context)
        except Exception as exc:
            self.close_state()  # the task fails here: nothing else would close its store
            name = "open" if task.is_spout else "prepare"
            raise TaskError(
                comp.id,
                task.key[1],
                f"{where}.{name}() raised {type(exc).__name__}: {exc}",
                traceback.format_exc(),
            ) from exc

    def _bind(self, obj: Any) -> None:
        task = self.task
        c, event_time, reliable = task.collector, task.event_time, task.reliable
        if task.is_spout:
            if not reliable:
                obj.emit = event_time.spout_emit(c.spout_emit)
                if obj.emit == c.spout_emit:  # no event-time tracking in the way: the fast path
                    obj.emit_many = c.spout_emit_many
            obj.finish = task.finish
            obj.emit_watermark = event_time.emit_watermark
            obj.mark_idle = event_time.mark_idle
        else:
            if not reliable:
                obj.emit = c.emit
                obj.emit_many = c.emit_many
                obj.ack = task.report.user_ack
                obj.fail = task.report.user_fail
            obj.register_timer = event_time.timers.register
            obj.current_watermark = event_time.current_watermark
            obj.__dict__["_rayflow_state"] = KeyedState(
                task.component.id,
                self.key_fields(),
                task.settings.max_parallelism,
                task.clock,
                on_first_use=self._keyed_state_in_use,
                store=open_store(StoreSettings.from_config(task.config), self.state_owner),
            )
        if not reliable:
            obj.emit_direct = c.emit_direct
        obj.current_processing_time = task.clock
        if getattr(obj, "_rayflow_fused", False):
            self._bind_fused(obj)

    def _bind_fused(self, obj: Any) -> None:
        """What a fused operator (:mod:`rayflow.streams`) needs beyond a spout's or bolt's API: a
        source that did work though it emitted nothing (all filtered out), a tracked spout tuple
        that became several rows, a bolt's single row that failed while its batch goes on."""
        task = self.task
        acking, report = self.acking, task.report
        if task.is_spout:
            obj._rayflow_progress = task.collector.progress
            if acking is not None:
                obj._rayflow_emit_tracked = acking.spout_emit_group

            def fail_items(indexes: list[int], exc: BaseException) -> None:
                # Its msg_ids fail through the spout itself; under exactly-once this raises.
                report.user_error("next_tuple", exc, count=max(1, len(indexes)))

            obj._rayflow_fail_rows = fail_items
            return

        def fail_rows(indexes: list[int], exc: BaseException) -> None:
            # Under exactly-once this raises: the task fails and the job recovers.
            report.user_error("process", exc, count=0 if acking is not None else len(indexes))
            if acking is not None:
                acking.fail_rows(indexes)

        obj._rayflow_fail_rows = fail_rows

    def _context(self, obj: Any) -> Context:
        task = self.task
        comp, spec = task.component, task.spec
        return Context(
            comp.id,
            task.key[1],
            comp.parallelism,
            spec.name,
            task.config,
            {c.id: c.parallelism for c in spec.components},
            tuple(task.inputs.channels),
            self.key_fields(),
            reuses_tuples=bool(
                task.settings.tuple_reuse
                and not task.is_spout
                and obj.auto_ack
                and not task.reliable
                and type(obj).process_batch is Bolt.process_batch
            ),
            reliability=task.settings.reliability,
        )

    def key_fields(self) -> tuple[str, ...]:
        """The fields of this bolt's fields grouping, when all its inputs agree on one."""
        task = self.task
        groupings = {
            s.grouping.fields_ if s.grouping.type == "FIELDS" else ()
            for s in task.spec.upstream(task.key[0])
        }
        return groupings.pop() if len(groupings) == 1 else ()

    def choose_executor(self) -> Execute:
        """How the bolt processes a batch (keyed, acking, batched or per tuple); kept in
        ``execute``."""
        bolt = self.obj
        assert isinstance(bolt, Bolt)
        state = bolt.__dict__.get("_rayflow_state")
        process = None
        if state is not None and state.key_fields and (state.used or _mentions_state(bolt)):
            process = keyed_process(bolt.process, state)
        user_error = self.task.report.user_error
        if self.acking is not None:
            execute = make_acking_executor(bolt, self.acking, user_error, process)
        else:
            execute = make_executor(bolt, self.task.settings.tuple_reuse, user_error, process)
        self.execute = execute
        return execute

    def keyed_state(self) -> KeyedState | None:
        """The bolt's keyed state (None for a spout or before ``open``)."""
        return None if self.obj is None else self.obj.__dict__.get("_rayflow_state")

    def sweep_state(self) -> None:
        """Drop some expired state nobody reads (the loop calls it about once a second)."""
        state = self.keyed_state()
        if state is not None and state.used:
            state.sweep()

    def close_state(self, ended: bool = False) -> None:
        """Close the keyed state's store (a RocksDB folder is removed); ``ended``: the task
        is over, its local RocksDB checkpoints go too (a reset keeps them to restore from)."""
        state = self.keyed_state()
        if state is not None:
            state.close()
        if ended:
            forget_local(self.state_owner)

    def _keyed_state_in_use(self) -> None:
        """The bolt asked for keyed state: from now on each tuple's key is set first."""
        if self.execute is not None:  # else the loop chooses it when it starts
            self.choose_executor()
