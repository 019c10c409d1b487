"""The user's spout or bolt inside the task core: creating it, binding the runtime's methods
(emit, ack, timers, keyed state) onto it, and choosing how its ``process`` is called. A mixin of
:class:`rayflow.runtime.task.TaskCore`.
"""

from __future__ import annotations

import traceback

from rayflow.api.components import Bolt, Context
from rayflow.errors import TaskError
from rayflow.runtime.executors import (
    Execute,
    keyed_process,
    make_acking_executor,
    make_executor,
)
from rayflow.state.keyed import KeyedState


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


class UserObjectMixin:
    """Creates and binds the user object; picks its executor."""

    def _open_user_object(self) -> None:
        comp = self.component
        where = f"{comp.kind} '{comp.id}' ({comp.class_ref.path})"
        try:
            obj = comp.instantiate()
        except Exception as exc:
            raise TaskError(
                comp.id,
                self.key[1],
                f"creating {where} raised {type(exc).__name__}: {exc}",
                traceback.format_exc(),
            ) from exc
        self.obj = obj
        c = self.collector
        if self.reliable:
            self._bind_acking(obj)
        elif self.is_spout:
            obj.emit = self._spout_emit(c.spout_emit)  # type: ignore[method-assign]
            if obj.emit == c.spout_emit:  # no event-time tracking in the way: the fast path
                obj.emit_many = c.spout_emit_many  # type: ignore[method-assign]
        if self.is_spout:
            obj.finish = self._user_finish  # type: ignore[method-assign]
            obj.emit_watermark = self._emit_watermark  # type: ignore[method-assign]
            obj.mark_idle = self._mark_idle  # type: ignore[method-assign]
        else:
            if not self.reliable:
                obj.emit = c.emit  # type: ignore[method-assign]
                obj.emit_many = c.emit_many  # type: ignore[method-assign]
                obj.emit_direct = c.emit_direct  # type: ignore[method-assign]
                obj.ack = self._user_ack  # type: ignore[method-assign]
                obj.fail = self._user_fail  # type: ignore[method-assign]
            obj.register_timer = self.timers.register  # type: ignore[method-assign]
            obj.current_watermark = self._current_watermark  # type: ignore[method-assign]
            obj.__dict__["_rayflow_state"] = KeyedState(
                comp.id,
                self._key_fields(),
                self.settings.max_parallelism,
                self.clock,
                on_first_use=self._keyed_state_in_use,
            )
        if not self.reliable:
            obj.emit_direct = c.emit_direct  # type: ignore[method-assign]
        obj.current_processing_time = self.clock  # type: ignore[method-assign]
        context = Context(
            comp.id,
            self.key[1],
            comp.parallelism,
            self.spec.name,
            self.config,
            {c.id: c.parallelism for c in self.spec.components},
            tuple(self.inputs),
            self._key_fields(),
            reuses_tuples=bool(
                self.settings.tuple_reuse
                and not self.is_spout
                and obj.auto_ack  # type: ignore[union-attr]
                and not self.reliable
                and type(obj).process_batch is Bolt.process_batch
            ),
        )
        obj.context = context  # type: ignore[attr-defined]
        hook = obj.open if self.is_spout else obj.prepare  # type: ignore[union-attr]
        try:
            hook(context)
        except Exception as exc:
            name = "open" if self.is_spout else "prepare"
            raise TaskError(
                comp.id,
                self.key[1],
                f"{where}.{name}() raised {type(exc).__name__}: {exc}",
                traceback.format_exc(),
            ) from exc

    def _user_finish(self) -> None:
        self._finishing = True

    def _key_fields(self) -> tuple[str, ...]:
        groupings = {
            s.grouping.fields_ if s.grouping.type == "FIELDS" else ()
            for s in self.spec.upstream(self.key[0])
        }
        return groupings.pop() if len(groupings) == 1 else ()

    def _choose_executor(self, bolt: Bolt) -> Execute:
        state = bolt.__dict__.get("_rayflow_state")
        process = None
        if state is not None and state.key_fields and (state.used or _mentions_state(bolt)):
            process = keyed_process(bolt.process, state)
        if self.acking is not None:
            return make_acking_executor(bolt, self.acking, self._user_error, process)
        return make_executor(bolt, self.settings.tuple_reuse, self._user_error, process)

    def _keyed_state_in_use(self) -> None:
        """The bolt asked for keyed state: from now on each tuple's key is set first."""
        if getattr(self, "_execute", None) is not None:  # else the loop chooses it when it starts
            self._execute = self._choose_executor(self.obj)  # type: ignore[arg-type]
