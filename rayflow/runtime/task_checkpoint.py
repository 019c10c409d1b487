"""Exactly-once for the task core: barriers, alignment, snapshots, restore and reset in place.
A mixin of :class:`rayflow.runtime.task.TaskCore`.

A spout told to take checkpoint N snapshots its position and sends barrier N after everything it
emitted before. A task with several inputs *aligns* barrier N: an input that delivered it is held
(its batches wait in the task, keeping their credits, so only that channel's sender stalls) until
every open input has delivered it; then the task snapshots, forwards barrier N, and lets the held
batches through. The snapshot is pickled in the loop (consistent) and written to the checkpoint
storage in a thread (the loop goes on). ``checkpoint_result(N)`` answers the coordinator.

At the end of a bounded stream every task takes a *final* snapshot (after its cleanup; a
two-phase-commit sink pre-commits there) into the folder the coordinator named, and waits until
every task has: that is the final checkpoint, and only then do sinks commit their last output.
A failure after it restores every task from it *finished*: bolts do not run their cleanup again,
spouts end at once, sinks commit (again, idempotently) what it holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
import time
from collections import deque
from typing import Any

from rayflow.api.transactional import FINAL  # the final checkpoint of a bounded run
from rayflow.errors import TaskError, TopologyError
from rayflow.runtime.channels import BARRIER, InputChannel
from rayflow.runtime.eventtime import InputWatermarks, Timers
from rayflow.runtime.keys import key_groups_of_task
from rayflow.spec.model import TopologySpec
from rayflow.state.storage import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointStorage,
    resolve_storage,
)

log = logging.getLogger("rayflow.task")

TaskKey = tuple[str, int]
_RESULTS_KEPT = 16


UNTOLD = object()  # the final snapshot's folder, before the coordinator names it


class Reset(Exception):
    """Raised out of the task loop by the ``reset`` command; ``run`` applies it and re-enters."""

    def __init__(
        self,
        generation: int,
        plan: dict[str, Any] | None,
        states: list[dict[str, Any]] | None,
        done: Any,
    ) -> None:
        super().__init__(generation)
        self.generation, self.plan, self.states, self.done = generation, plan, states, done


def restore_plan_for(
    metadata: dict[str, Any] | None, component: str, task: int, parallelism: int
) -> list[dict[str, Any]]:
    """The task files a task reads to restore from a checkpoint's ``metadata``: its own when its
    component's parallelism is unchanged, else every file of its component (the task keeps the
    key groups it now owns).

    >>> meta = {"tasks": {"count/0": {"file": "count-0.state"}, "count/1": {"file": "c-1"}},
    ...         "parallelism": {"count": 2}}
    >>> [i["file"] for i in restore_plan_for(meta, "count", 1, 2)]
    ['c-1']
    >>> len(restore_plan_for(meta, "count", 0, 3))
    2
    """
    if not metadata:
        return []
    old = metadata.get("parallelism", {}).get(component)
    if old is None:
        return []
    if old == parallelism:
        info = metadata["tasks"].get(f"{component}/{task}")
        return [info] if info else []
    return [metadata["tasks"][f"{component}/{i}"] for i in range(old)]


def rewindable(cls: type) -> bool:
    """True when a spout class can go back to a snapshot: it defines snapshot and restore."""
    from rayflow.api.components import Component

    return cls.snapshot is not Component.snapshot and cls.restore is not Component.restore


def check_exactly_once(spec: TopologySpec) -> TopologySpec:
    """Refuse spouts that cannot rewind; resolve the checkpoint storage (on the submitting side,
    where ``$RAYFLOW_CHECKPOINT_STORAGE`` is set, so every task writes to the same place)."""
    for spout in spec.spouts:
        try:
            cls = spout.class_ref.load()
        except Exception:
            continue  # its code is not here (submitted as a package): its tasks check it
        if not rewindable(cls):
            raise TopologyError(unrewindable(spout.id, spout.class_ref.path))
    storage = resolve_storage(spec.settings.checkpoint_storage)
    return dataclasses.replace(
        spec, settings=dataclasses.replace(spec.settings, checkpoint_storage=storage)
    )


def unrewindable(component: str, path: str) -> str:
    return (
        f"spout '{component}' ({path}) cannot rewind, and reliability exactly_once needs every "
        "spout to: define snapshot() (its position) and restore(snapshot), use a source that can "
        "replay (Kafka, files), or run with reliability at_least_once"
    )


class CheckpointMixin:
    """Barriers, alignment, snapshots, restore, reset (see module docstring)."""

    def _init_checkpoints(self) -> None:
        self.exactly_once = self.settings.reliability == "exactly_once"
        self.aligning: int | None = None
        self.align_where = ""
        self.align_started = 0.0
        self.barriers_from: set[TaskKey] = set()
        self.holding: dict[TaskKey, deque] = {}  # inputs held for alignment -> their batches
        self.checkpoint_results: dict[int, dict[str, Any] | None] = {}
        self.checkpoint_waiters: dict[int, list[asyncio.Future]] = {}
        self.last_barrier = 0
        self.final_committed = False
        self.final_where: Any = UNTOLD  # None: keep no file (one process, nothing to recover)
        self.finished_on_restore = False
        self.paused = False
        # (plan, states read from it): applied once the user object is open
        self.restore_from: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
        self._storage: CheckpointStorage | None = None

    @property
    def storage(self) -> CheckpointStorage:
        if self._storage is None:
            self._storage = CheckpointStorage(self.settings.checkpoint_storage)
        return self._storage

    # --------------------------------------------------------------- barriers
    def _trigger_checkpoint(self, arg: tuple[int, str]) -> None:
        """A spout: snapshot the position, then barrier N after everything emitted so far."""
        checkpoint_id, where = arg
        if self.end_sent or self._finishing:  # a finished source takes the final one instead
            self._record(checkpoint_id, {"finished": True})
            return
        if checkpoint_id <= self.last_barrier:
            return
        self.last_barrier = checkpoint_id
        self.collector.flush_all()
        self._snapshot(checkpoint_id, where, 0.0)
        self.collector.broadcast(BARRIER, (checkpoint_id, where))

    def _on_barrier(self, channel: InputChannel, payload: tuple[int, str]) -> None:
        checkpoint_id, where = payload
        if checkpoint_id <= self.last_barrier:
            return  # of a checkpoint this task already took (or gave up)
        if self.aligning is not None and checkpoint_id > self.aligning:
            # A newer barrier overtakes one still aligning: that checkpoint was aborted.
            self._give_up_alignment()
        if self.aligning is None:
            self.aligning, self.align_where = checkpoint_id, where
            self.align_started = time.perf_counter()
            self.barriers_from = set()
        self.barriers_from.add(channel.key)
        self.holding.setdefault(channel.key, deque())
        self._check_aligned()

    def _check_aligned(self) -> None:
        """Every open input delivered the barrier being aligned: snapshot and forward it."""
        if self.aligning is None:
            return
        waiting = [
            k for k, ch in self.inputs.items() if not ch.ended and k not in self.barriers_from
        ]
        if waiting:
            return
        checkpoint_id, where = self.aligning, self.align_where
        align_seconds = time.perf_counter() - self.align_started
        self.last_barrier = checkpoint_id
        self.aligning = None
        self.collector.flush_all()
        self._snapshot(checkpoint_id, where, align_seconds)
        self.collector.broadcast(BARRIER, (checkpoint_id, where))
        self._release_held()

    def _release_held(self) -> None:
        """The held batches go back to the front of the inbox, in their channels' order."""
        held = [item for batches in self.holding.values() for item in batches]
        self.holding = {}
        self.inbox.extendleft(reversed(held))

    def _give_up_alignment(self) -> None:
        if self.aligning is not None:
            self._record(self.aligning, None)
            self.last_barrier = max(self.last_barrier, self.aligning)
        self.aligning = None
        self._release_held()

    def abort_checkpoint(self, checkpoint_id: int) -> None:
        """The coordinator gave checkpoint N up (timeout): stop holding inputs for it."""
        if self.aligning is not None and self.aligning <= checkpoint_id:
            self._give_up_alignment()
            self._wake_loop()

    # -------------------------------------------------------------- snapshots
    def _task_state(self, checkpoint_id: int) -> dict[str, Any]:
        obj = self.obj
        keyed = obj.__dict__.get("_rayflow_state")  # type: ignore[union-attr]
        return {
            "format": FORMAT_VERSION,
            "component": self.key[0],
            "task": self.key[1],
            "parallelism": self.component.parallelism,
            "checkpoint": checkpoint_id,
            "final": checkpoint_id == FINAL,
            "operator": obj._snapshot_for(checkpoint_id),  # type: ignore[union-attr]
            "keyed": keyed.snapshot() if keyed is not None and keyed.groups else {},
            "timers": self.timers.entries(),
        }

    def _snapshot(self, checkpoint_id: int, where: str, align_seconds: float) -> None:
        started = time.perf_counter()
        try:
            data = pickle.dumps(self._task_state(checkpoint_id), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            self._user_error("snapshot", exc, count=0)
            self._record(checkpoint_id, {"error": f"{self.name}: snapshot failed: {exc}"})
            return
        sync_seconds = time.perf_counter() - started
        assert self.loop is not None
        write = self.loop.run_in_executor(None, self.storage.write_task, where, self.key, data)

        def written(fut: asyncio.Future) -> None:
            if fut.exception() is not None:
                error = f"{self.name}: writing the snapshot to {where} failed: {fut.exception()}"
                log.error("%s", error)
                self._record(checkpoint_id, {"error": error})
                return
            info = fut.result()
            info.update(
                sync_ms=round(sync_seconds * 1000, 3),
                align_ms=round(align_seconds * 1000, 3),
                async_ms=round((time.perf_counter() - started - sync_seconds) * 1000, 3),
            )
            self._record(checkpoint_id, info)

        write.add_done_callback(written)

    def _record(self, checkpoint_id: int, result: dict[str, Any] | None) -> None:
        self.checkpoint_results[checkpoint_id] = result
        for fut in self.checkpoint_waiters.pop(checkpoint_id, []):
            if not fut.done():
                fut.set_result(result)
        while len(self.checkpoint_results) > _RESULTS_KEPT:
            del self.checkpoint_results[min(self.checkpoint_results)]

    async def checkpoint_result(self, checkpoint_id: int) -> dict[str, Any] | None:
        """What this task recorded for checkpoint N (file, size, timings), once it has; None
        when it gave N up (aborted, or the task was reset)."""
        if checkpoint_id in self.checkpoint_results:
            return self.checkpoint_results[checkpoint_id]
        assert self.loop is not None
        fut = self.loop.create_future()
        self.checkpoint_waiters.setdefault(checkpoint_id, []).append(fut)
        return await fut

    def _checkpoint_complete(self, checkpoint_id: int) -> None:
        """Every task has checkpoint N: sinks commit, sources commit their positions."""
        if checkpoint_id == FINAL:
            self.final_committed = True
        self._call_user(
            self.obj.notify_checkpoint_complete,  # type: ignore[union-attr]
            "notify_checkpoint_complete",
            checkpoint_id,
        )

    def _final_snapshot(self) -> None:
        """The end of a bounded stream under exactly-once: this task's part of the final
        checkpoint (sinks pre-commit); then it waits for the others."""
        if self.final_where is None:  # hosted in one process: nothing to restore it into
            try:
                self.obj._snapshot_for(FINAL)  # type: ignore[union-attr]
            except Exception as exc:
                self._user_error("snapshot", exc, count=0)
            self._record(FINAL, {"final": True})
            return
        self._snapshot(FINAL, self.final_where, 0.0)

    # ---------------------------------------------------------------- restore
    def _read_plan(self, plan: dict[str, Any]) -> list[dict[str, Any]]:
        """Read (and check) the task files ``plan`` names: ``path``, ``files``."""
        where, states = plan["path"], []
        for info in plan["files"]:
            data = self.storage.read_task(where, info)
            try:
                states.append(pickle.loads(data))
            except Exception as exc:
                raise CheckpointError(
                    f"checkpoint file {where}/{info['file']} cannot be read: {exc}"
                ) from None
        return states

    def _restore(self, plan: dict[str, Any], states: list[dict[str, Any]] | None = None) -> None:
        """Take back this task's state from a checkpoint (``plan`` from the coordinator): keyed
        state of the key groups this task owns now, timers, and the user object's own state."""
        if states is None:
            states = self._read_plan(plan)
        mine = set(
            key_groups_of_task(
                self.key[1], self.settings.max_parallelism, self.component.parallelism
            )
        )
        keyed: dict[int, bytes] = {}
        timers: list[tuple[int, bool, Any]] = []
        for state in states:
            keyed.update({g: v for g, v in state["keyed"].items() if g in mine})
            if len(states) == 1 or state["task"] == 0:
                timers.extend(state["timers"])  # after a rescale, task 0 takes the timers
        obj = self.obj
        if keyed:
            obj.__dict__["_rayflow_state"].restore(keyed)  # type: ignore[union-attr]
        for timestamp, event_time, payload in timers:
            self.timers.register(timestamp, event_time, payload)
        self.finished_on_restore = any(state.get("final") for state in states)
        operators = [state["operator"] for state in states]
        if len(states) == 1:
            self._call_restore(obj._restore_for, operators[0])  # type: ignore[union-attr]
        elif states:
            self._call_restore(obj._restore_rescaled_for, operators)  # type: ignore[union-attr]

    def _call_restore(self, fn: Any, snapshot: Any) -> None:
        try:
            fn(snapshot)
        except Exception as exc:
            raise TaskError(
                self.key[0],
                self.key[1],
                f"{self.component.class_ref.path}.{_user_name(fn)}() raised "
                f"{type(exc).__name__}: {exc}",
            ) from exc

    def _reset(
        self,
        generation: int,
        plan: dict[str, Any] | None,
        states: list[dict[str, Any]] | None = None,
    ) -> None:
        """Go back to a checkpoint in place: drop everything in flight, a fresh user object
        restored from ``plan`` (or from nothing), inputs and outputs of a new generation. The
        task stays paused until ``resume``."""
        self._release_inputs()
        self.aligning = None
        for checkpoint_id in list(self.checkpoint_waiters):
            self._record(checkpoint_id, None)
        self.checkpoint_results.clear()  # a final snapshot from before counts no more
        self.collector.discard_all()
        for channel in self.outputs.values():
            channel.pending.clear()
        self.blocked = 0
        self.epoch = generation
        for channel in self.inputs.values():
            channel.epoch, channel.next_seq, channel.ended = generation, 0, False
        self.open_inputs = len(self.inputs)
        self.watermarks = InputWatermarks(self.inputs)
        self.timers = Timers()
        self.end_sent = False
        self.sent_watermark = -(2**63)
        self.max_event_time = None  # the rewound source sets event time again as it replays
        self.idle_sent = False
        self._finishing = False
        self.final_committed = False
        self.final_where = UNTOLD
        self.finished_on_restore = False
        self.last_barrier = 0
        old = self.obj
        if self.is_spout and old is not None:
            self._call_user(old.close, "close")  # type: ignore[union-attr]
        self._open_user_object()
        if plan is not None:
            self._restore(plan, states)
        self.paused = True
        log.warning(
            "task %s: reset to %s (generation %d)",
            self.name,
            f"checkpoint {plan.get('checkpoint')}" if plan else "the start",
            generation,
        )


def _user_name(fn: Any) -> str:
    """``_restore_for`` -> ``restore``: the user's method that the runtime hook calls."""
    return fn.__name__.strip("_").removesuffix("_for")
