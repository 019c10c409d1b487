"""One topology under the job master: its deployment, its status, its supervision and stats.

Statuses (Storm's words): ``ACTIVE`` (spouts called), ``INACTIVE`` (spouts paused),
``REBALANCING`` (tasks being replaced with another parallelism),
``KILLING`` (spouts finished, the rest draining until the kill's wait ends), ``FINISHED`` (every
spout ended and the stream drained), ``FAILED`` (its restart strategy gave up: ``restart.*``,
``task.restarts``).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Any

import ray

from rayflow.errors import RayflowError, TaskError
from rayflow.master.history import History
from rayflow.master.registry import NAMESPACE, JobRecord, MemoryRegistry, Registry
from rayflow.master.samples import sample
from rayflow.master.summary import graph_of, recent_errors, summarize
from rayflow.runtime.driver.deploy import Lifetime, RayDeployment
from rayflow.state.storage import CheckpointStorage

log = logging.getLogger("rayflow.master")

STATS_EVERY = 1.0
_EVENTS_KEPT = 200


class Job:
    """A submitted topology (see module docstring); every method is safe from any thread."""

    def __init__(
        self,
        record: JobRecord,
        registry: Registry | MemoryRegistry,
        deployment: RayDeployment | None = None,
    ) -> None:
        self.record = record
        self.registry = registry
        self.lock = threading.RLock()
        # Given: ``rayflow run`` drives its own deployment and shows it through this job.
        self.local = deployment is not None
        self.deployment = deployment or self._deployment()
        self.kill_by: float | None = None
        self.ended = False  # killed or failed: the master forgets it after this
        self.error: str = ""
        self.stats: list[dict[str, Any]] = []
        self.components: dict[str, dict[str, Any]] = {}
        self._stats_at = 0.0
        self._previous: list[dict[str, Any]] = []
        self.history = History()
        # what happened to the topology, for the UI's timeline: (epoch s, kind, what)
        self.events: deque[dict[str, Any]] = deque(maxlen=_EVENTS_KEPT)
        if self.local:
            self.event("submit", "started by rayflow run")

    def _deployment(self) -> RayDeployment:
        record = self.record
        deployment = RayDeployment(
            record.spec,
            first_generation=record.generation,
            lifetime=Lifetime(NAMESPACE, record.runtime_env),
            secret=record.secret,
            restart_on_error=True,
            restore_from=record.restore_from,
        )
        deployment.restarts = dict(record.restarts)
        return deployment

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def status(self) -> str:
        return self.record.status

    def start(self) -> None:
        """Create, place, wire and start the tasks (raises ``ClusterError`` if Ray cannot)."""
        with self.lock:
            self.deployment.start(on_wait=log.warning)
            self._save()
            restored = self.record.restore_from
            self.event("submit", f"from savepoint {restored['path']}" if restored else "submitted")

    def attach(self) -> None:
        """Find the running tasks again after a master restart; replace those that are gone."""
        with self.lock:
            self.event("takeover", "a restarted job master took the topology over")
            if self.status in ("FINISHED", "FAILED"):
                return
            for key in self.deployment.attach():
                log.warning("task %s[%s] of %s is gone; replacing it", *key, self.name)
                self.deployment.restart(key)
            self._save()
            if self.status == "KILLING":
                self.kill_by = time.monotonic()  # the kill was under way: end it now
            if self.status == "REBALANCING":  # the old master died mid-way: the old tasks run
                self.record.status = "ACTIVE"
                self.deployment.command("activate", kind="spout")
                self._save()

    def supervise(self) -> None:
        """One round: replace dead tasks, notice the end, finish a kill, refresh stats."""
        with self.lock:
            if self.ended or self.status in ("FINISHED", "FAILED"):
                return
            restarts = sum(self.deployment.restarts.values())
            try:
                done = self.deployment.wait(timeout=0.0)
            except TaskError as exc:
                self._fail(str(exc))
                return
            if sum(self.deployment.restarts.values()) != restarts:
                self._save()
            killing = self.status == "KILLING"
            if done or (killing and self.kill_by is not None and time.monotonic() >= self.kill_by):
                if killing:
                    self._end()
                    return
                self.record.status = "FINISHED"
                self._save()
        if time.monotonic() - self._stats_at >= STATS_EVERY:
            self.refresh_stats()

    def refresh_stats(self) -> None:
        now = time.monotonic()
        stats = self.deployment.stats(timeout=1.0)
        seconds = now - self._stats_at if self._previous else 0.0
        wall = time.time()
        figures = sample(stats, self._previous, seconds, wall)
        self.components = summarize(stats, self._previous, seconds, figures)
        self.history.record(wall, figures)
        self.stats, self._previous, self._stats_at = stats, stats, now

    def event(self, kind: str, what: str) -> None:
        """Note what happened on the topology's timeline (``detail()["timeline"]``)."""
        self.events.append({"time": time.time(), "kind": kind, "what": what})

    # ---------------------------------------------------------------- commands

    def activate(self) -> None:
        self._spouts("activate", "ACTIVE")

    def deactivate(self) -> None:
        self._spouts("deactivate", "INACTIVE")

    def _spouts(self, command: str, status: str) -> None:
        with self.lock:
            if self.status not in ("ACTIVE", "INACTIVE"):
                raise RayflowError(f"topology '{self.name}' is {self.status}; cannot {command} it")
            self.deployment.command(command, kind="spout")
            self.record.status = status
            self._save()
            self.event(command, f"spouts {command}d")

    def rebalance(self, parallelism: dict[str, int], wait: float) -> None:
        """Storm's rebalance: the spouts pause, the stream drains (``wait`` seconds at most), and
        the tasks are replaced by a deployment with the new ``parallelism`` (component id ->
        tasks); the spouts then resume where their source is (Kafka's committed offsets, a
        Redis group), and in-memory state of bolts starts afresh. Under exactly-once the paused
        topology takes a savepoint instead of draining and the new tasks start from it: keyed
        state moves with its key groups, spouts resume at their positions."""
        with self.lock:
            if self.status not in ("ACTIVE", "INACTIVE"):
                raise RayflowError(f"topology '{self.name}' is {self.status}; cannot rebalance it")
            if self.local:
                raise RayflowError(
                    "`rayflow run` cannot rebalance its topology; submit it to a cluster "
                    "(rayflow submit) to change its parallelism while it runs"
                )
            spec = self.record.spec
            known = [c.id for c in spec.components]
            unknown = sorted(set(parallelism) - set(known))
            if unknown:
                raise RayflowError(
                    f"topology '{self.name}' has no component {', '.join(unknown)} "
                    f"(components: {', '.join(known)})"
                )
            new_spec = replace(
                spec,
                components=tuple(
                    replace(c, parallelism=parallelism.get(c.id, c.parallelism))
                    for c in spec.components
                ),
            )  # validated again: a parallelism out of range raises here
            was = self.status
            self.record.status = "REBALANCING"
            self._save()
            old = self.deployment
            old.command("deactivate", kind="spout")
            restore_from = self.record.restore_from
            if old.checkpoints is not None:  # keyed state moves with its key groups
                url = old.checkpoints.savepoint(max(wait, 60.0))
                restore_from = CheckpointStorage.open_savepoint(url)
            else:
                self._drain(wait)
            generation = max(old.generation(key) for key in old.tasks) + 1  # new actor names
            old.kill()
            self.record.restore_from = restore_from
            self.record.spec, self.record.generation, self.record.restarts = (
                new_spec,
                generation,
                {},
            )
            self.record.secret = secrets.token_bytes(16)
            self.deployment = self._deployment()
            self.deployment.start(on_wait=log.warning)
            if was == "INACTIVE":
                self.deployment.command("deactivate", kind="spout")
            self.record.status = was
            self._previous, self.stats = [], []
            self.history.forget_tasks(self.deployment.tasks)
            self._save()
            changes = ", ".join(f"{c}={n}" for c, n in sorted(parallelism.items()))
            self.event("rebalance", f"parallelism {changes}")
            log.warning("topology %s rebalanced: %s", self.name, parallelism)

    def _drain(self, wait: float) -> None:
        """Wait until no task's counters move (the stream has drained), ``wait`` s at most."""
        deadline = time.monotonic() + wait
        last = None
        while time.monotonic() < deadline:
            stats = self.deployment.stats(timeout=1.0)
            moved = [(s.get("component"), s.get("task"), s.get("counters")) for s in stats]
            if moved == last:
                return
            last = moved
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def savepoint(self, timeout: float = 120.0) -> str:
        """Write a savepoint now (exactly-once topologies); returns its URL."""
        coordinator = self.deployment.checkpoints
        if coordinator is None:
            raise RayflowError(
                f"topology '{self.name}' runs with reliability "
                f"{self.deployment.spec.settings.reliability}: savepoints need exactly_once"
            )
        if self.status not in ("ACTIVE", "INACTIVE"):
            raise RayflowError(f"topology '{self.name}' is {self.status}; cannot take a savepoint")
        url = coordinator.savepoint(timeout)
        self.event("savepoint", url)
        log.warning("topology %s: savepoint %s", self.name, url)
        return url

    def stop_with_savepoint(self, timeout: float = 120.0) -> str:
        """Flink's stop-with-savepoint: spouts pause, a savepoint holds everything they sent,
        then every task ends (no final commit after it: a resume goes on from there)."""
        with self.lock:
            if self.status in ("ACTIVE", "INACTIVE"):
                self.deployment.command("deactivate", kind="spout")
        url = self.savepoint(timeout)
        with self.lock:
            self._end()
        return url

    def kill(self, wait: float) -> None:
        """Spouts finish now; after ``wait`` seconds (or once drained) every task ends."""
        with self.lock:
            if self.status in ("FINISHED", "FAILED"):
                self._end()
                return
            self.record.status = "KILLING"
            self.kill_by = time.monotonic() + wait
            self._save()
            self.event("kill", f"spouts finish; every task ends within {wait:g}s")
            self.deployment.command("finish", kind="spout")

    def _end(self) -> None:
        self.deployment.kill()
        self.registry.delete(self.name)
        self.ended = True
        log.warning("topology %s killed", self.name)

    def _fail(self, error: str) -> None:
        log.error("topology %s failed: %s", self.name, error)
        self.event("failed", error)
        self.error = error
        self.record.status = "FAILED"
        self.deployment.kill()
        self._save()

    def _save(self) -> None:
        self.record.restarts = dict(self.deployment.restarts)
        self.registry.put(self.record)

    # ---------------------------------------------------------------- views

    def summary(self) -> dict[str, Any]:
        """A row of ``rayflow list``."""
        spec = self.deployment.spec
        return {
            "name": self.name,
            "status": self.status,
            "uptime": time.time() - self.record.submitted_at,
            "submitted": self.record.submitted_at,
            "tasks": len(self.deployment.tasks),
            "workers": len(set(self.deployment.nodes.values())),
            "reliability": spec.settings.reliability,
            "restarts": sum(self.deployment.restarts.values()),
            "emitted": sum(c["emitted"] for c in self.components.values()),
        }

    def detail(self) -> dict[str, Any]:
        """``rayflow status NAME`` and ``GET /api/v1/topologies/NAME``."""
        spec = self.deployment.spec
        checkpoints = self.deployment.checkpoints
        components, streams = graph_of(spec, self.deployment.chains)
        for component in components:
            figures = self.components.get(component["id"], {})
            component.update({k: v for k, v in figures.items() if k not in ("kind", "tasks")})
        return {
            **self.summary(),
            "source": self.record.source,
            "config": dict(spec.config),
            "components": components,
            "streams": streams,
            "errors": recent_errors(self.stats),
            "failures": list(reversed(self.deployment.failures)),
            "restart": self.deployment.strategy.describe(time.time()),
            "error": self.error,
            "checkpoints": checkpoints.stats() if checkpoints is not None else None,
            "timeline": self.timeline(),
        }

    def timeline(self, limit: int = 100) -> list[dict[str, Any]]:
        """Restarts (with the error behind each), recoveries from checkpoints, rebalances and
        commands, newest first."""
        restarts = [
            {
                "time": f["time"],
                "kind": "restart",
                "what": f"{f['component']}[{f['task']}] failed: {f['error']}",
            }
            for f in self.deployment.failures
        ]
        merged = [*self.events, *restarts, *self.deployment.recoveries_done]
        return sorted(merged, key=lambda e: e["time"], reverse=True)[:limit]

    def component(self, component_id: str) -> dict[str, Any] | None:
        """One component's figures and its tasks (``GET .../components/ID``)."""
        for comp in self.detail()["components"]:
            if comp["id"] == component_id:
                tasks = [s for s in self.stats if s.get("component") == component_id]
                return {**comp, "task_stats": sorted(tasks, key=lambda s: s["task"])}
        return None

    def read_log(
        self, component: str, task: int, offsets: dict[str, int] | None, tail: int = 0
    ) -> Any:
        actor = self.deployment.actors.get((component, task))
        if actor is None:
            raise KeyError(f"{component}[{task}]")
        return ray.get(actor.read_log.remote(offsets, tail), timeout=30)
