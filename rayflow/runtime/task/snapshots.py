"""A task's snapshots (exactly-once): what it writes for a checkpoint, what it answers the
coordinator, the final checkpoint of a bounded stream, and restoring from a checkpoint.

A snapshot is pickled in the loop (consistent) and written to the checkpoint storage in a thread
(the loop goes on); ``result(N)`` answers the coordinator. A spout snapshots its position when
told to take checkpoint N, a bolt once barrier N is aligned (:mod:`rayflow.runtime.task.barriers`).

At the end of a bounded stream every task takes a *final* snapshot (after its cleanup; a
two-phase-commit sink pre-commits there) into the folder the coordinator named, and waits until
every task has: that is the final checkpoint, and only then do sinks commit their last output.
A failure after it restores every task from it *finished*: bolts do not run their cleanup again,
spouts end at once, sinks commit (again, idempotently) what it holds.

The file format is versioned (``FORMAT_VERSION``; older ones still restore): a pickled dict of
the task's user state (``operator``), its keyed state by key group (``keyed``) and its timers.
With the rocksdb backend the loop only takes a local RocksDB checkpoint (and pickles the rest);
the writing thread makes of it either an incremental checkpoint (:mod:`rayflow.state.incremental`:
``keyed`` holds only the Streams API's tables, ``rocksdb`` the manifest of the database's files,
the new ones uploaded) or, for a savepoint or the final checkpoint, the full form (``keyed`` by
key group, as the memory backend writes it). The memory backend's checkpoints are incremental
too (:mod:`rayflow.state.deltas`): ``chain`` lists its base and deltas in the shared files.

>>> rewindable(type("Plain", (), {"snapshot": None, "restore": None}))
True
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rayflow.api.components import rewindable, unrewindable
from rayflow.api.transactional import FINAL  # the final checkpoint of a bounded run
from rayflow.errors import TaskError
from rayflow.keys import key_groups_of_task
from rayflow.spec.state_settings import StoreSettings
from rayflow.state.deltas import apply_chain, next_part
from rayflow.state.incremental import fetch, full_form, shared_paths, take_local, upload
from rayflow.state.keyed import KeyedState
from rayflow.state.rocksdb import restore_folder
from rayflow.state.storage import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointStorage,
    is_savepoint,
    parent_of,
)

if TYPE_CHECKING:
    from rayflow.runtime.task.core import TaskCore

log = logging.getLogger("rayflow.task")

_RESULTS_KEPT = 16
UNTOLD = object()  # the final snapshot's folder, before the coordinator names it

__all__ = ["FINAL", "UNTOLD", "Snapshots", "rewindable", "unrewindable"]


class Snapshots:
    """Snapshots taken and their results, the final checkpoint, restore (see module docstring).

    It reads the task's user object, keyed state and timers; it owns only what is below.
    """

    def __init__(self, task: TaskCore) -> None:
        self.task = task
        self.results: dict[int, dict[str, Any] | None] = {}
        self.waiters: dict[int, list[asyncio.Future]] = {}
        self.final_committed = False
        self.final_where: Any = UNTOLD  # None: keep no file (one process, nothing to recover)
        self.finished_on_restore = False
        # (plan, states read from it): applied once the user object is open
        self.restore_from: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
        self._storage: CheckpointStorage | None = None

    @property
    def storage(self) -> CheckpointStorage:
        if self._storage is None:
            self._storage = CheckpointStorage(self.task.settings.checkpoint_storage)
        return self._storage

    # -------------------------------------------------------------- snapshots
    def _task_state(
        self, checkpoint_id: int, keyed: KeyedState | None, store_elsewhere: bool
    ) -> dict[str, Any]:
        task = self.task
        obj = task.user.obj
        return {
            "format": FORMAT_VERSION,
            "component": task.key[0],
            "task": task.key[1],
            "parallelism": task.component.parallelism,
            "checkpoint": checkpoint_id,
            "final": checkpoint_id == FINAL,
            "operator": obj._snapshot_for(checkpoint_id),  # type: ignore[union-attr]
            "keyed": keyed.snapshot(not store_elsewhere) if keyed is not None else {},
            "timers": task.event_time.timers.entries(),
        }

    def take(self, checkpoint_id: int, where: str, align_seconds: float) -> None:
        """Snapshot now (pickled here; a local RocksDB checkpoint for the rocksdb backend),
        written to ``where`` in a thread (with the new RocksDB files uploaded)."""
        task = self.task
        started = time.perf_counter()
        keyed = task.user.keyed_state()
        # savepoints and the final checkpoint: the full form that either backend restores
        portable = checkpoint_id == FINAL or is_savepoint(where)
        try:
            if keyed is not None:
                keyed.settle()  # what the Streams operators' tables hold, into the store
        except Exception as exc:
            self._failed(checkpoint_id, exc)
            return
        if keyed is not None and keyed.empty:
            if not portable:  # this checkpoint references nothing the next could build on
                keyed.store.restart_increments()
            keyed = None
        rocks = keyed is not None and keyed.incremental
        chained = keyed is not None and not rocks and not portable  # memory: base or delta
        local = part = chain = None
        try:
            state = self._task_state(checkpoint_id, keyed, rocks or chained)
            if chained:
                part, _, chain = next_part(
                    keyed.store,  # type: ignore[union-attr, arg-type]
                    keyed.expiry_time(),  # type: ignore[union-attr]
                    f"{task.key[0]}-{task.key[1]}",
                    checkpoint_id,
                )
                state["chain"] = chain
            data = pickle.dumps(state, pickle.HIGHEST_PROTOCOL)
            if rocks:  # the rest of it from a RocksDB checkpoint, in the writing thread
                local = take_local(keyed.store, checkpoint_id, keep=not portable)  # type: ignore[union-attr, arg-type]
        except Exception as exc:
            if part is not None:  # its part is never written: the next one is a base
                keyed.store.force_full = True  # type: ignore[union-attr]
                keyed.store.writes.finished(chain[-1]["path"], False)  # type: ignore[union-attr, index]
            self._failed(checkpoint_id, exc)
            return
        sync_seconds = time.perf_counter() - started
        assert task.loop is not None
        now = keyed.expiry_time() if keyed is not None else None
        write = task.loop.run_in_executor(
            None, self._write, where, data, keyed, local, portable, now, part, chain
        )

        def written(fut: asyncio.Future) -> None:
            if fut.exception() is not None:
                error = f"{task.name}: writing the snapshot to {where} failed: {fut.exception()}"
                log.error("%s", error)
                if chained:  # the chain misses that part: the next checkpoint starts anew
                    keyed.store.force_full = True  # type: ignore[union-attr]
                self.record(checkpoint_id, {"error": error})
                return
            info = fut.result()
            info.update(
                sync_ms=round(sync_seconds * 1000, 3),
                align_ms=round(align_seconds * 1000, 3),
                async_ms=round((time.perf_counter() - started - sync_seconds) * 1000, 3),
            )
            self.record(checkpoint_id, info)

        write.add_done_callback(written)

    def _failed(self, checkpoint_id: int, exc: Exception) -> None:
        self.task.report.user_error("snapshot", exc, count=0)
        self.record(checkpoint_id, {"error": f"{self.task.name}: snapshot failed: {exc}"})

    def _write(
        self,
        where: str,
        data: bytes,
        keyed: KeyedState | None,
        local: Any,
        portable: bool,
        now: int | None,
        part: bytes | None,
        chain: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        """Write a snapshot (in a thread). The memory backend's ``part`` of its ``chain`` goes
        to the shared files first. With a RocksDB checkpoint ``local``: a portable snapshot
        gets the database's entries in the full form; an incremental one uploads the new files
        and gets their manifest."""
        key = self.task.key
        if part is not None and chain is not None:
            writes = keyed.store.writes  # type: ignore[union-attr]
            try:
                writes.wait(chain, self.task.settings.checkpoint_timeout)
                self.storage.write_shared(where, chain[-1], part)
            except BaseException:
                writes.finished(chain[-1]["path"], False)
                raise
            writes.finished(chain[-1]["path"], True)
            info = self.storage.write_task(where, key, data)
            info.update(shared=[entry["path"] for entry in chain], uploaded=len(part))
            return info
        if local is None:
            return self.storage.write_task(where, key, data)
        state = pickle.loads(data)
        if portable:
            state["keyed"] = full_form(local, state["keyed"], now)
            return self.storage.write_task(where, key, pickle.dumps(state, pickle.HIGHEST_PROTOCOL))
        manifest = upload(keyed.store, local, self.storage, where, f"{key[0]}-{key[1]}")  # type: ignore[union-attr, arg-type]
        state["rocksdb"] = manifest
        info = self.storage.write_task(where, key, pickle.dumps(state, pickle.HIGHEST_PROTOCOL))
        info.update(shared=shared_paths(manifest), uploaded=manifest["uploaded"])
        return info

    def record(self, checkpoint_id: int, result: dict[str, Any] | None) -> None:
        """What this task answers for checkpoint N (None: it gave N up)."""
        self.results[checkpoint_id] = result
        for fut in self.waiters.pop(checkpoint_id, []):
            if not fut.done():
                fut.set_result(result)
        kept = [n for n in self.results if n != FINAL]  # the final one is asked for last
        for n in sorted(kept)[: max(0, len(kept) - _RESULTS_KEPT)]:
            del self.results[n]

    def give_up(self, checkpoint_id: int) -> None:
        """Checkpoint N was aborted: a task that has no record of it will never have one (a
        late barrier of N is ignored), so whoever waits for it gets None now."""
        if checkpoint_id not in self.results:
            self.record(checkpoint_id, None)

    async def result(self, checkpoint_id: int) -> dict[str, Any] | None:
        """What this task recorded for checkpoint N (file, size, timings), once it has; None
        when it gave N up (aborted, or the task was reset)."""
        if checkpoint_id in self.results:
            return self.results[checkpoint_id]
        loop = self.task.loop
        assert loop is not None
        fut = loop.create_future()
        self.waiters.setdefault(checkpoint_id, []).append(fut)
        return await fut

    def complete(self, checkpoint_id: int) -> None:
        """Every task has checkpoint N: sinks commit, sources commit their positions."""
        if checkpoint_id == FINAL:
            self.final_committed = True
        task = self.task
        task.report.call_user(
            task.user.obj.notify_checkpoint_complete,  # type: ignore[union-attr]
            "notify_checkpoint_complete",
            checkpoint_id,
        )

    def expect_final(self, where: Any) -> None:
        """The coordinator names the final snapshot's folder (None: keep no file)."""
        self.final_where = where

    def take_final(self) -> None:
        """The end of a bounded stream under exactly-once: this task's part of the final
        checkpoint (sinks pre-commit); then it waits for the others."""
        if self.final_where is None:  # hosted in one process: nothing to restore it into
            try:
                self.task.user.obj._snapshot_for(FINAL)  # type: ignore[union-attr]
            except Exception as exc:
                self.task.report.user_error("snapshot", exc, count=0)
            self.record(FINAL, {"final": True})
            return
        self.take(FINAL, self.final_where, 0.0)

    # ---------------------------------------------------------------- restore
    def read_plan(self, plan: dict[str, Any]) -> list[dict[str, Any]]:
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
            if states[-1].get("rocksdb"):  # an incremental checkpoint: its database, rebuilt
                try:
                    states[-1]["rocksdb_folder"] = self._fetch_database(where, states[-1])
                except BaseException:  # the folders fetched before this one go too
                    for state in states[:-1]:
                        shutil.rmtree(state.get("rocksdb_folder") or "", ignore_errors=True)
                    raise
            chain = states[-1].get("chain") or []  # the memory backend's base and deltas
            states[-1]["chain_parts"] = [self.storage.read_shared(where, e) for e in chain]
        return states

    def _fetch_database(self, where: str, state: dict[str, Any]) -> Path:
        task = self.task
        topology = task.spec.name
        into = restore_folder(
            StoreSettings.from_config(task.config), f"{topology}/{task.key[0]}.{task.key[1]}"
        )
        try:
            return fetch(
                state["rocksdb"],
                f"{topology}/{state['component']}.{state['task']}",
                state["checkpoint"],
                self.storage,
                where,
                into,
            )
        except BaseException:
            shutil.rmtree(into, ignore_errors=True)
            raise

    def restore(self, plan: dict[str, Any], states: list[dict[str, Any]] | None = None) -> None:
        """Take back this task's state from a checkpoint (``plan`` from the coordinator): keyed
        state of the key groups this task owns now, timers, and the user object's own state."""
        if states is None:
            states = self.read_plan(plan)
        task = self.task
        max_parallelism = task.settings.max_parallelism
        mine = key_groups_of_task(task.key[1], max_parallelism, task.component.parallelism)
        keyed: dict[int, bytes] = {}
        databases: list[tuple[Path, range, Any]] = []
        timers: list[tuple[int, bool, Any]] = []
        # One old task's file restores as it is only at the same parallelism: from 1 to N each
        # new task reads the one file and keeps its share, as from M to N.
        rescaled = len(states) > 1 or any(
            state.get("parallelism", task.component.parallelism) != task.component.parallelism
            for state in states
        )
        for state in states:
            keyed.update({g: v for g, v in state["keyed"].items() if g in mine})
            if state.get("rocksdb_folder") is not None:
                theirs = key_groups_of_task(state["task"], max_parallelism, state["parallelism"])
                home = (state["rocksdb"]["files"], parent_of(plan["path"]))
                databases.append((state["rocksdb_folder"], theirs, home))
            if not rescaled or state["task"] == 0:
                timers.extend(state["timers"])  # after a rescale, old task 0's timers
        obj = task.user.obj
        if keyed:
            obj.__dict__["_rayflow_state"].restore(keyed)  # type: ignore[union-attr]
        if databases:
            obj.__dict__["_rayflow_state"].restore_databases(databases, mine)  # type: ignore[union-attr]
        for state in states:
            if state.get("chain_parts"):
                apply_chain(obj.__dict__["_rayflow_state"].store, state["chain_parts"], mine)  # type: ignore[union-attr]
        for timestamp, event_time, payload in timers:
            task.event_time.timers.register(timestamp, event_time, payload)
        self.finished_on_restore = any(state.get("final") for state in states)
        operators = [state["operator"] for state in states]
        if states and not rescaled:
            self._call_restore(obj._restore_for, operators[0])  # type: ignore[union-attr]
        elif states:
            self._call_restore(obj._restore_rescaled_for, operators)  # type: ignore[union-attr]

    def _call_restore(self, fn: Any, snapshot: Any) -> None:
        try:
            fn(snapshot)
        except Exception as exc:
            task = self.task
            raise TaskError(
                task.key[0],
                task.key[1],
                f"{task.component.class_ref.path}.{_user_name(fn)}() raised "
                f"{type(exc).__name__}: {exc}",
            ) from exc

    def reset(self) -> None:
        """Forget every checkpoint in flight (their waiters get None) and the final one."""
        for checkpoint_id in list(self.waiters):
            self.record(checkpoint_id, None)
        self.results.clear()  # a final snapshot from before counts no more
        self.final_committed = False
        self.final_where = UNTOLD
        self.finished_on_restore = False


def _user_name(fn: Any) -> str:
    """``_restore_for`` -> ``restore``: the user's method that the runtime hook calls."""
    return fn.__name__.strip("_").removesuffix("_for")
