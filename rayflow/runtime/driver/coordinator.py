"""The checkpoint coordinator of one deployment (Flink's CheckpointCoordinator).

Every ``checkpoint.interval`` it asks each spout task to take checkpoint N and asks every task for
its record of N; when every task has one, it writes the checkpoint's ``_metadata`` (which makes it
complete), tells every task (sinks commit, sources commit their positions), and deletes all but
the newest ``checkpoint.retained``. A checkpoint not complete within ``checkpoint.timeout``, or
declined by a task, is aborted and counted. Savepoints are checkpoints written to their own folder
on request and never deleted. The coordinator is driven by :meth:`RayDeployment.wait` (the job
master's supervisor, or the embedded launcher), one non-blocking :meth:`tick` at a time.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray

from rayflow.errors import RayflowError
from rayflow.runtime.io.messages import TaskKey
from rayflow.runtime.plan import restore_plan_for
from rayflow.runtime.task.snapshots import FINAL
from rayflow.spec.model import TopologySpec
from rayflow.state.storage import CheckpointError, CheckpointStorage

log = logging.getLogger("rayflow.checkpoints")


class Deployed(Protocol):
    """What the coordinator needs of a deployment (:class:`RayDeployment` is one)."""

    spec: TopologySpec
    secret: bytes  # names this run's checkpoint folder
    actors: dict[TaskKey, Any]  # the task actors, to call checkpoint_result and control on
    due: dict[TaskKey, float]  # tasks waiting to be replaced: no checkpoint meanwhile

    @property
    def tasks(self) -> list[TaskKey]: ...


_HISTORY = 30


@dataclass
class PendingCheckpoint:
    id: int
    where: str
    started: float  # wall clock
    started_mono: float
    refs: dict[Any, TaskKey]
    savepoint: bool = False
    acks: dict[TaskKey, dict[str, Any]] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""


_COMMANDS_IN_FLIGHT = 100  # checkpoint commands a dead master may have left queued in a task


class CheckpointCoordinator:
    """Triggers, collects, completes and aborts checkpoints (see module docstring)."""

    def __init__(self, deployment: Deployed, restored: dict[str, Any] | None = None) -> None:
        self.deployment = deployment
        spec = deployment.spec
        settings = spec.settings
        self.storage = CheckpointStorage(settings.checkpoint_storage)
        # Checkpoints of this run only: a new submission of the same name starts afresh.
        self.folder = f"{spec.name}/run-{hashlib.sha256(deployment.secret).hexdigest()[:12]}"
        self.interval = settings.checkpoint_interval
        self.timeout = settings.checkpoint_timeout
        self.keep = settings.checkpoint_retained
        self.restored = restored  # the savepoint this run started from, if any
        earlier = self.storage.complete_checkpoints(self.folder)  # a restarted job master
        self.latest: dict[str, Any] | None = earlier[-1] if earlier else restored
        # Ids keep growing across runs that resume each other (sinks' markers rely on it).
        self.next_id = max(
            earlier[-1]["id"] + 1 if earlier else 1, (restored or {}).get("id", 0) + 1
        )
        self.pending: PendingCheckpoint | None = None
        self.next_at = time.monotonic() + self.interval
        self.history: deque[dict[str, Any]] = deque(maxlen=_HISTORY)
        self.completed = 0
        self.failed = 0
        self.ending = False  # a spout has finished: no more periodic checkpoints
        self.final_refs: dict[Any, TaskKey] = {}
        self.final_from: dict[TaskKey, dict[str, Any]] = {}
        self.final_sent = False
        self.final: PendingCheckpoint | None = None
        # Tasks whose final snapshot failed -> why: the deployment recovers them (a bounded run
        # would otherwise wait for their part of the final checkpoint for ever).
        self.final_failed: dict[TaskKey, str] = {}
        self.lock = threading.Lock()

    def skip_taken(self) -> None:
        """After the job master restarted: the tasks may have taken checkpoints the dead master
        never completed, or hold its commands for them still; new ids start well past every id
        a task reports (a task ignores a barrier it has seen: a reused id would never
        complete)."""
        actors = self.deployment.actors
        refs = [actors[key].stats.remote(key) for key in actors]
        seen = 0
        for ref in refs:
            try:
                seen = max(seen, ray.get(ref, timeout=30).get("last_checkpoint", 0))
            except ray.exceptions.RayError:
                continue  # died meanwhile: it restores from a completed checkpoint anyway
        self.next_id = max(self.next_id, seen + _COMMANDS_IN_FLIGHT + 1)

    # -------------------------------------------------------------- driving
    def tick(self) -> None:
        """Poll the checkpoint under way; start the next one when it is time."""
        with self.lock:
            if self.pending is not None:
                self._poll(self.pending)
            if (
                self.pending is None
                and not self.ending
                and not self.deployment.due
                and time.monotonic() >= self.next_at
            ):
                self._begin(None)
            self._poll_final()

    def savepoint(self, timeout: float) -> str:
        """Take a savepoint now (after the checkpoint under way); returns its URL."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                # Poll the checkpoint under way here too: the caller (a rebalance) may hold up
                # the supervisor whose ticks would complete it.
                if self.pending is not None:
                    self._poll(self.pending)
                if self.pending is None:
                    pending = self._begin(self.storage.savepoint_path(self.deployment.spec.name))
                    break
            if time.monotonic() > deadline:
                raise RayflowError("a checkpoint is still under way; try the savepoint again")
            time.sleep(0.05)
        # The supervisor's ticks complete it; with no supervisor (tests), poll here.
        while not pending.done.wait(0.1):
            if time.monotonic() > deadline:
                with self.lock:
                    if self.pending is pending:
                        self._abort(pending, f"no savepoint within {timeout:g}s")
                break
            self.tick()
        if pending.error:
            raise RayflowError(f"savepoint {pending.id} failed: {pending.error}")
        return self.storage.url_of(pending.where)

    def _begin(self, savepoint_path: str | None) -> PendingCheckpoint:
        d = self.deployment
        checkpoint_id = self.next_id
        self.next_id += 1
        where = savepoint_path or self.storage.checkpoint_path(self.folder, checkpoint_id)
        running = [key for key in d.tasks if key not in d.results]
        refs = {d.actors[key].checkpoint_result.remote(key, checkpoint_id): key for key in running}
        for key in running:
            if d.spec.component(key[0]).kind == "spout":
                d.actors[key].control.remote(key, "checkpoint", (checkpoint_id, where))
        self.pending = PendingCheckpoint(
            checkpoint_id,
            where,
            time.time(),
            time.monotonic(),
            refs,
            savepoint=savepoint_path is not None,
        )
        return self.pending

    def _poll(self, pending: PendingCheckpoint) -> None:
        ready, _ = ray.wait(list(pending.refs), num_returns=len(pending.refs), timeout=0)
        for ref in ready:
            key = pending.refs.pop(ref)
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError as exc:
                self._abort(pending, f"{key[0]}[{key[1]}] is gone ({type(exc).__name__})")
                return
            if info is None:
                self._abort(pending, f"{key[0]}[{key[1]}] gave it up")
                return
            if info.get("finished"):
                self.ending = True
                self._abort(pending, "a spout has finished", count=False)
                return
            if "error" in info:
                self._abort(pending, info["error"])
                return
            pending.acks[key] = info
        if not pending.refs:
            self._complete(pending)
        elif time.monotonic() - pending.started_mono > self.timeout:
            self._abort(pending, f"not complete within checkpoint.timeout ({self.timeout:g}s)")

    def _complete(self, pending: PendingCheckpoint) -> None:
        spec = self.deployment.spec
        duration = time.monotonic() - pending.started_mono
        # what this checkpoint wrote: task files and, for RocksDB, the files new since the last
        size = sum(info["bytes"] + info.get("uploaded", 0) for info in pending.acks.values())
        metadata = {
            "id": pending.id,
            "topology": spec.name,
            "savepoint": pending.savepoint,
            "time": pending.started,
            "duration_ms": round(duration * 1000, 1),
            "bytes": size,
            "max_parallelism": spec.settings.max_parallelism,
            "lineage": spec.config.get("checkpoint.lineage"),
            "parallelism": {c.id: c.parallelism for c in spec.components},
            "tasks": {f"{k[0]}/{k[1]}": info for k, info in sorted(pending.acks.items())},
        }
        try:
            self.storage.write_metadata(pending.where, metadata)
        except Exception as exc:
            self._abort(pending, f"writing its metadata failed: {exc}")
            return
        metadata["path"] = pending.where
        self.latest = metadata
        self.completed += 1
        if pending is not self.final:  # the final one tells FINAL instead
            self._notify("checkpoint_complete", pending.id)
        self._remember(pending, "COMPLETED", duration, size)
        if self.pending is pending:
            self.pending = None
        self.next_at = time.monotonic() + self.interval
        pending.done.set()
        try:
            # never the one just completed: the final checkpoint's id is older than the rest
            self.storage.prune(self.folder, self.keep, protect=(pending.id,))
        except Exception as exc:  # a full disk must not stop the topology
            log.warning("could not delete old checkpoints of %s: %s", spec.name, exc)

    def _abort(self, pending: PendingCheckpoint, reason: str, count: bool = True) -> None:
        if count:
            self.failed += 1
            log.warning(
                "checkpoint %d of %s aborted: %s", pending.id, self.deployment.spec.name, reason
            )
        self._notify("abort_checkpoint", pending.id)
        pending.error = reason
        self._remember(pending, "FAILED" if count else "DECLINED", 0.0, 0, reason)
        if self.pending is pending:
            self.pending = None
        self.next_at = time.monotonic() + self.interval
        pending.done.set()

    def _remember(
        self, pending: PendingCheckpoint, status: str, duration: float, size: int, reason: str = ""
    ) -> None:
        acks = pending.acks.values()
        self.history.append(
            {
                "id": pending.id,
                "status": status,
                "savepoint": pending.savepoint,
                "time": pending.started,
                "duration_ms": round(duration * 1000, 1),
                "bytes": size,
                "tasks": len(pending.acks),
                "sync_ms": max((a.get("sync_ms", 0.0) for a in acks), default=0.0),
                "align_ms": max((a.get("align_ms", 0.0) for a in acks), default=0.0),
                "path": self.storage.url_of(pending.where),
                "reason": reason,
            }
        )

    def _notify(self, command: str, checkpoint_id: int) -> None:
        d = self.deployment
        for key, actor in d.actors.items():
            if key not in d.results:
                actor.control.remote(key, command, checkpoint_id)  # fire and forget

    # ------------------------------------------------ the end of a bounded run
    def watch_final(self, keys: list[TaskKey]) -> None:
        """Tell these tasks (new, or all after a recovery) where their final snapshot goes at
        the end of the input, and ask for it."""
        d = self.deployment
        if self.final is None or set(keys) == set(d.tasks):  # a fresh final checkpoint
            checkpoint_id = self.next_id
            self.next_id += 1
            where = self.storage.checkpoint_path(self.folder, checkpoint_id)
            self.final = PendingCheckpoint(checkpoint_id, where, 0.0, 0.0, {})
            self.final_from = {}
            self.final_failed = {}  # failures of the one before: recovered already
            self.final_sent = False
        for key in keys:
            self.final_from.pop(key, None)
            self.final_failed.pop(key, None)
            self.final_refs = {r: k for r, k in self.final_refs.items() if k != key}
            d.actors[key].control.remote(key, "final_where", self.final.where)
            self.final_refs[d.actors[key].checkpoint_result.remote(key, FINAL)] = key

    def _poll_final(self) -> None:
        if self.final_sent or not self.final_refs:
            return
        ready, _ = ray.wait(list(self.final_refs), num_returns=len(self.final_refs), timeout=0)
        for ref in ready:
            key = self.final_refs.pop(ref)
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError:
                continue  # died: recovery asks its replacement
            if info is None:  # reset before its end: ask again
                actor = self.deployment.actors[key]
                self.final_refs[actor.checkpoint_result.remote(key, FINAL)] = key
            elif "error" in info:
                log.error("%s: the final snapshot failed: %s", key, info["error"])
                self.final_failed[key] = info["error"]
            else:
                self.final_from[key] = info
        if self.final is not None and len(self.final_from) == len(self.deployment.tasks):
            final = self.final
            final.started_mono = time.monotonic()
            final.started = time.time()
            final.acks = dict(self.final_from)
            with_final = len(self.history)
            self._complete(final)  # the final checkpoint: a failure from now on restores it
            if len(self.history) > with_final:
                self.history[-1]["final"] = True
            self.final_sent = True
            self._notify("checkpoint_complete", FINAL)
            log.warning("%s: every task reached the end; final commit", self.deployment.spec.name)

    def take_final_failures(self) -> dict[TaskKey, str]:
        """The tasks whose final snapshot failed since the last call, and why."""
        with self.lock:
            failed, self.final_failed = self.final_failed, {}
        return failed

    # ------------------------------------------------------------- recovery
    def restore_plan(self, key: TaskKey) -> dict[str, Any] | None:
        """What task ``key`` restores from: the latest complete checkpoint (or the savepoint
        this run started from), None for the very start."""
        latest = self.latest
        if latest is None:
            return None
        parallelism = self.deployment.spec.component(key[0]).parallelism
        return {
            "path": latest["path"],
            "checkpoint": latest["id"],
            "files": restore_plan_for(latest, key[0], key[1], parallelism),
        }

    def before_recovery(self) -> None:
        with self.lock:
            if self.pending is not None:
                self._abort(self.pending, "a task failed; recovering", count=False)

    def fall_back(self, error: Exception) -> None:
        """The latest checkpoint could not be restored: use the one before it."""
        bad = self.latest
        log.error("cannot restore from %s: %s", bad and bad.get("path"), error)
        if bad is None or bad is self.restored:
            raise CheckpointError(f"cannot restore: {error}") from None
        earlier = [m for m in self.storage.complete_checkpoints(self.folder) if m["id"] < bad["id"]]
        self.latest = earlier[-1] if earlier else self.restored
        self.history.append(
            {
                "id": bad["id"],
                "status": "UNREADABLE",
                "savepoint": False,
                "time": time.time(),
                "path": self.storage.url_of(bad["path"]),
                "reason": str(error),
            }
        )

    def after_recovery(self) -> None:
        self.next_at = time.monotonic() + self.interval
        self.ending = False
        self.watch_final(self.deployment.tasks)

    # ---------------------------------------------------------------- views
    def stats(self) -> dict[str, Any]:
        """For ``rayflow status``, the REST API and the UI."""
        with self.lock:
            pending = self.pending
            latest = self.latest
            return {
                "interval_s": self.interval,
                "timeout_s": self.timeout,
                "storage": self.storage.url_of(self.storage.topology_path(self.folder)),
                "completed": self.completed,
                "failed": self.failed,
                "in_progress": None
                if pending is None
                else {
                    "id": pending.id,
                    "acknowledged": len(pending.acks),
                    "tasks": len(pending.acks) + len(pending.refs),
                },
                "latest": None
                if latest is None
                else {
                    "id": latest["id"],
                    "path": self.storage.url_of(latest["path"]),
                    "bytes": latest.get("bytes", 0),
                    "duration_ms": latest.get("duration_ms"),
                },
                "restored_from": None
                if self.restored is None
                else self.storage.url_of(self.restored["path"]),
                "history": list(reversed(self.history)),
            }


def validate_restore(
    metadata: dict[str, Any], component_ids: list[str], allow_non_restored: bool
) -> None:
    """A savepoint may only be restored into a topology that has every component it holds state
    for (matched by id), unless ``allow_non_restored``.

    >>> validate_restore({"parallelism": {"a": 1, "gone": 2}, "path": "/sp"}, ["a"], False)
    Traceback (most recent call last):
    ...
    rayflow.state.storage.CheckpointError: /sp has state for component 'gone', which this \
topology does not have; start with --allow-non-restored-state to drop it
    """
    missing = sorted(set(metadata.get("parallelism", {})) - set(component_ids))
    if missing and not allow_non_restored:
        names = ", ".join(f"'{m}'" for m in missing)
        raise CheckpointError(
            f"{metadata['path']} has state for component {names}, which this topology does not "
            "have; start with --allow-non-restored-state to drop it"
        )
