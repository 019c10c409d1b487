"""Place a topology's tasks on Ray as actors, wire them, run them, watch them.

:class:`RayDeployment` is what the embedded launcher (and later the job master) drives: it creates
one :class:`TaskActor` per task (``num_cpus=0`` unless the component asks), reports tasks Ray
cannot place instead of waiting forever, connects every task to its downstream tasks, and starts
the bolts before the spouts.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from rayflow.errors import ClusterError, TaskError, TopologyError
from rayflow.runtime.acking import ACKER, prepare_spec, spout_tasks
from rayflow.runtime.actor import TaskActor
from rayflow.runtime.task import TaskKey
from rayflow.spec.model import ComponentSpec, TopologySpec

log = logging.getLogger("rayflow.deploy")

_RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources")
MAX_RESTART_DELAY = 300.0
_GENERATIONS_AHEAD = 4


def actor_options(component: ComponentSpec) -> dict[str, Any]:
    """Ray actor options from a component's ``resources`` (no CPU unless asked for).

    >>> from rayflow.spec.model import ClassRef
    >>> actor_options(ComponentSpec("c", "bolt", ClassRef.of(object), resources={"num_gpus": 1}))
    {'num_cpus': 0, 'num_gpus': 1}
    """
    resources = dict(component.resources)
    unknown = sorted(set(resources) - set(_RESOURCE_KEYS))
    if unknown:
        raise TopologyError(
            f"{component.origin.prefix()}component '{component.id}': unknown resources "
            f"{unknown}; expected {', '.join(_RESOURCE_KEYS)} (custom ones under 'resources')"
        )
    options: dict[str, Any] = {"num_cpus": resources.pop("num_cpus", 0)}
    options.update(resources)
    return options


@dataclass(frozen=True)
class Lifetime:
    """How task actors are made: owned by this driver (the default), or detached and named in
    ``namespace`` so they outlive the process that made them (the job master's topologies), with
    the ``runtime_env`` that brings the topology's code.

    >>> Lifetime("rayflow").name("wc", ("count", 1), 3)
    'wc/count/1/3'
    """

    namespace: str | None = None
    runtime_env: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def name(topology: str, key: TaskKey, generation: int) -> str:
        return f"{topology}/{key[0]}/{key[1]}/{generation}"

    def options(self, topology: str, key: TaskKey, generation: int) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.namespace is not None:
            options.update(
                name=self.name(topology, key, generation),
                namespace=self.namespace,
                lifetime="detached",
            )
        if self.runtime_env:
            options["runtime_env"] = self.runtime_env
        return options


class RayDeployment:
    """The actors of one run of one topology.

    ``restarts`` counts the replacements of each task; a task's actor generation is ``epoch``
    plus its restarts (channels tell generations apart, and detached actors are named by it).
    """

    def __init__(
        self,
        spec: TopologySpec,
        epoch: int = 0,
        lifetime: Lifetime | None = None,
        secret: bytes | None = None,
        restart_on_error: bool = False,
    ) -> None:
        self.spec = spec = prepare_spec(spec)
        self.epoch = epoch
        self.lifetime = lifetime or Lifetime()
        self.actors: dict[TaskKey, Any] = {}
        self.nodes: dict[TaskKey, str] = {}
        self.addresses: dict[TaskKey, tuple[str, int] | None] = {}
        # Only this deployment's tasks may send data to its tasks.
        self.secret = secret or secrets.token_bytes(16)
        self.runs: dict[Any, TaskKey] = {}
        self.results: dict[TaskKey, dict[str, Any]] = {}
        self.restarts: dict[TaskKey, int] = {}
        self.failures: list[dict[str, Any]] = []  # why tasks were restarted, newest last
        self.due: dict[TaskKey, float] = {}  # tasks to replace, and when
        self.restart_on_error = restart_on_error

    def generation(self, key: TaskKey) -> int:
        return self.epoch + self.restarts.get(key, 0)

    def _new_actor(self, key: TaskKey) -> Any:
        generation = self.generation(key)
        options = {
            **actor_options(self.spec.component(key[0])),
            **self.lifetime.options(self.spec.name, key, generation),
        }
        return TaskActor.options(**options).remote(
            self.spec, key[0], key[1], generation, self.secret
        )

    def attach(self) -> list[TaskKey]:
        """Find the detached actors of a running deployment again (after the job master that
        made them restarted); returns the tasks whose actor is gone, for :meth:`restart`."""
        assert self.lifetime.namespace is not None, "only detached actors can be found again"
        missing = []
        for key in self.tasks:
            actor = self._find(key)
            if actor is None:
                missing.append(key)
                continue
            self.actors[key] = actor
            self.runs[actor.outcome.remote()] = key
        wheres = {key: self.actors[key].where.remote() for key in self.actors}
        for key, ref in wheres.items():
            try:
                info = ray.get(ref, timeout=30)
            except ray.exceptions.RayError:
                continue  # died meanwhile: its outcome says so and the supervisor replaces it
            self.nodes[key], self.addresses[key] = info["node"], info["address"]
        return missing

    def _find(self, key: TaskKey) -> Any:
        """The task's detached actor: of its recorded generation or, when the master died in
        the middle of a restart it had not recorded yet, of a newer one."""
        for ahead in range(_GENERATIONS_AHEAD):
            name = self.lifetime.name(self.spec.name, key, self.generation(key) + ahead)
            try:
                actor = ray.get_actor(name, namespace=self.lifetime.namespace)
            except ValueError:
                continue
            if ahead:
                self.restarts[key] = self.restarts.get(key, 0) + ahead
            return actor
        return None

    @property
    def tasks(self) -> list[TaskKey]:
        return [(c.id, i) for c in self.spec.components for i in range(c.parallelism)]

    def start(self, on_wait: Callable[[str], None] | None = None) -> None:
        """Create, place, connect and start every task."""
        spec = self.spec
        for key in self.tasks:
            self.actors[key] = self._new_actor(key)
        self._connect(on_wait)
        order = [c for c in reversed(spec.topological_order())]
        for component_id in order:  # bolts first, so no spout emits into an unstarted task
            for i in range(spec.component(component_id).parallelism):
                self.runs[self.actors[(component_id, i)].run.remote()] = (component_id, i)

    def _connect(self, on_wait: Callable[[str], None] | None) -> None:
        spec = self.spec
        # Ask each actor for its node first: routing to local tasks needs every placement.
        node_refs = {self.actors[key].prepare.remote(): key for key in self.tasks}
        deadline = time.monotonic() + spec.settings.startup_timeout
        waiting = list(node_refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=5.0)
            for ref in ready:
                info = ray.get(ref)
                self.nodes[node_refs[ref]] = info["node"]
                self.addresses[node_refs[ref]] = info["address"]
            if waiting:
                names = ", ".join(f"{c}[{i}]" for c, i in (node_refs[r] for r in waiting[:5]))
                message = (
                    f"waiting for Ray to place {len(waiting)} task(s) ({names}); they ask for "
                    f"{self._asks(node_refs[waiting[0]][0])}, the cluster has "
                    f"{_rounded(ray.available_resources())} free"
                )
                if time.monotonic() > deadline:
                    self.kill()
                    raise ClusterError(
                        f"{message}. Ray could not place them within "
                        f"{spec.settings.startup_timeout:g}s (startup.timeout): lower the "
                        "component's resources or add nodes"
                    )
                (on_wait or log.warning)(message)
        ray.get([self._connect_task(key) for key in self.actors])

    def _connect_task(self, key: TaskKey) -> Any:
        """Wire one task to its downstream tasks (and, for an acker, its spouts)."""
        spec = self.spec
        targets = {
            (t, i): (self.actors[(t, i)], self.addresses[(t, i)])
            for t in sorted({s.target for s in spec.downstream(key[0])})
            for i in range(spec.component(t).parallelism)
        }
        local = [k for k, node in self.nodes.items() if node == self.nodes[key]]
        spouts = {k: self.actors[k] for k in spout_tasks(spec)} if key[0] == ACKER else None
        return self.actors[key].connect.remote(targets, local, spouts)

    def restart(self, key: TaskKey) -> None:
        """Replace a dead task with a new actor (a new generation) and rewire its neighbours.

        What was in flight to or inside the dead task is lost; under at-least-once its tuple
        trees time out and their spouts replay them.
        """
        spec = self.spec
        old = self.actors.get(key)
        if old is not None:  # its loop may have ended in error while the actor lives on
            with contextlib.suppress(Exception):
                ray.kill(old)
        self.restarts[key] = self.restarts.get(key, 0) + 1
        actor = self._new_actor(key)
        info = ray.get(actor.prepare.remote(), timeout=spec.settings.startup_timeout)
        self.actors[key] = actor
        self.nodes[key], self.addresses[key] = info["node"], info["address"]
        ray.get(self._connect_task(key))
        upstream = [
            (c, i)
            for c in sorted({s.source for s in spec.upstream(key[0])})
            for i in range(spec.component(c).parallelism)
        ]
        # Finished upstream tasks too: their actors live on and send the new task end-of-stream.
        refs = [self.actors[u].reconnect.remote(key, actor, info["address"]) for u in upstream]
        for ref in refs:
            try:
                ray.get(ref, timeout=30)
            except ray.exceptions.RayError as exc:  # that one died too: its own restart follows
                log.warning("could not rewire to the restarted %s[%s]: %s", *key, exc)
        self.runs[actor.run.remote()] = key
        log.warning("restarted task %s[%s] (restart %d)", key[0], key[1], self.restarts[key])

    def _asks(self, component_id: str) -> dict[str, Any]:
        return actor_options(self.spec.component(component_id))

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for tasks to end; True when all have.

        A dead actor is replaced (up to ``task.restarts`` times, after ``task.restart.delay``
        growing by ``task.restart.backoff``). A task whose loop ended in a user error raises
        ``TaskError``, unless ``restart_on_error`` (the job master) replaces it too.
        """
        self._restart_due()
        pending = [ref for ref, key in self.runs.items() if key not in self.results]
        if not pending:
            return not self.due
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=timeout)
        for ref in ready:
            key = self.runs[ref]
            try:
                self.results[key] = ray.get(ref)
            except (TaskError, ray.exceptions.RayTaskError) as exc:
                error = _task_error(key, exc)
                if not self.restart_on_error:
                    raise error from None
                del self.runs[ref]
                self._schedule_restart(key, error)
            except ray.exceptions.RayActorError as exc:
                del self.runs[ref]
                self._schedule_restart(key, TaskError(key[0], key[1], f"the actor died: {exc}"))
        self._restart_due()
        return not self.due and all(key in self.results for key in self.runs.values())

    def _schedule_restart(self, key: TaskKey, error: TaskError) -> None:
        settings = self.spec.settings
        restarts = self.restarts.get(key, 0)
        self.failures.append(
            {
                "time": time.time(),
                "component": key[0],
                "task": key[1],
                "error": error.message,
                "traceback": error.traceback_text,
                "restart": restarts + 1,
            }
        )
        del self.failures[:-50]
        if restarts >= settings.task_restarts:
            raise TaskError(
                key[0],
                key[1],
                f"the task failed {restarts + 1} times (task.restarts: "
                f"{settings.task_restarts}); last: {error.message}",
                error.traceback_text,
            )
        delay = settings.task_restart_delay * settings.task_restart_backoff**restarts
        self.due[key] = time.monotonic() + min(delay, MAX_RESTART_DELAY)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for key, when in list(self.due.items()):
            if when <= now:
                del self.due[key]
                self.restart(key)

    def stats(self, timeout: float = 2.0) -> list[dict[str, Any]]:
        """The latest stats of every task still running (and the results of finished ones)."""
        live = {
            key: actor.stats.remote()
            for key, actor in self.actors.items()
            if key not in self.results
        }
        out = list(self.results.values())
        ready, _ = ray.wait(list(live.values()), num_returns=len(live), timeout=timeout)
        ready_set = set(ready)
        for ref in live.values():
            if ref in ready_set:
                try:
                    out.append(ray.get(ref))
                except ray.exceptions.RayError:
                    continue
        return out

    def command(self, name: str, kind: str | None = None) -> None:
        """Send a command (``finish``, ``stop``, ...) to the spouts (kind="spout") or to all."""
        refs = [
            actor.control.remote(name)
            for key, actor in self.actors.items()
            if key not in self.results
            and (kind is None or self.spec.component(key[0]).kind == kind)
        ]
        try:
            ray.get(refs, timeout=10)
        except ray.exceptions.RayError as exc:
            log.warning("command %s did not reach every task: %s", name, exc)

    def kill(self) -> None:
        """End every actor now (no draining)."""
        for actor in self.actors.values():
            with contextlib.suppress(Exception):  # already gone
                ray.kill(actor)


def _task_error(key: TaskKey, exc: BaseException) -> TaskError:
    """The user's ``TaskError`` out of what ``ray.get`` raised for a task's run."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        exc = exc.as_instanceof_cause()
    if isinstance(exc, TaskError):
        return TaskError(exc.component, exc.task, exc.message, exc.traceback_text)
    return TaskError(key[0], key[1], str(exc))


def _rounded(resources: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in sorted(resources.items()) if not k.startswith("node:")}
