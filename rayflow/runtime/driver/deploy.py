"""Place a topology's tasks on Ray as actors, wire them, run them, watch them.

:class:`RayDeployment` is what the embedded launcher (and later the job master) drives: it creates
one :class:`TaskActor` per task, or per chain of tasks (:mod:`rayflow.runtime.chaining`), with
``num_cpus=0`` unless the component asks; reports tasks Ray cannot place instead of waiting
forever, connects every task to its downstream tasks, and starts the bolts before the spouts.
``actors[key]`` is the actor hosting task ``key`` (the same one for every task of a chain); every
call to it names the task. The tasks of a chain die, restart and recover together.
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
from rayflow.runtime.acking.acker import ACKER
from rayflow.runtime.acking.tracker import spout_tasks
from rayflow.runtime.chaining import Chains
from rayflow.runtime.driver.carried import CarriedCounters
from rayflow.runtime.driver.coordinator import CheckpointCoordinator
from rayflow.runtime.driver.restart import RestartsExhausted, RestartStrategy
from rayflow.runtime.hosts.actor import TaskActor
from rayflow.runtime.plan import prepare_spec
from rayflow.runtime.task.core import TaskKey
from rayflow.spec.model import ComponentSpec, TopologySpec
from rayflow.spec.settings import Reliability
from rayflow.state.storage import CheckpointError

log = logging.getLogger("rayflow.deploy")

_RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources")
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

    ``restarts`` counts the replacements of each task; a task's restart generation is
    ``first_generation`` plus its restarts (channels tell generations apart, and detached actors
    are named by it).
    """

    def __init__(
        self,
        spec: TopologySpec,
        first_generation: int = 0,
        lifetime: Lifetime | None = None,
        secret: bytes | None = None,
        restart_on_error: bool = False,
        restore_from: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec = prepare_spec(spec)
        self.first_generation = first_generation
        self.lifetime = lifetime or Lifetime()
        self.actors: dict[TaskKey, Any] = {}
        self.nodes: dict[TaskKey, str] = {}
        self.addresses: dict[TaskKey, tuple[str, int] | None] = {}
        # Only this deployment's tasks may send data to its tasks.
        self.secret = secret or secrets.token_bytes(16)
        self.runs: dict[Any, TaskKey] = {}
        self.results: dict[TaskKey, dict[str, Any]] = {}
        self.restarts: dict[TaskKey, int] = {}
        self.recoveries = 0  # exactly-once: global recoveries
        self.failures: list[dict[str, Any]] = []  # why tasks were restarted, newest last
        self.recoveries_done: list[dict[str, Any]] = []  # exactly-once restores, newest last
        self.due: dict[TaskKey, float] = {}  # tasks to replace, and when
        self.strategy = RestartStrategy.from_settings(spec.settings)  # counts every failure
        self.counters = CarriedCounters()  # replaced actors' counts, added to their successors'
        self.restart_on_error = restart_on_error
        self.checkpoints: CheckpointCoordinator | None = None
        if spec.settings.reliability == Reliability.EXACTLY_ONCE:
            self.spec = with_lineage(spec, self.secret, restore_from)
            self.checkpoints = CheckpointCoordinator(self, restore_from)
        self.chains = Chains(self.spec)

    def generation(self, key: TaskKey) -> int:
        return self.first_generation + self.restarts.get(key, 0)

    def _new_actor(self, unit: list[TaskKey]) -> Any:
        """A new actor for the tasks of ``unit`` (a chain, head first, or one task)."""
        head = unit[0]
        generation = self.generation(head)
        options = {
            **actor_options(self.spec.component(head[0])),  # a chain's members ask alike
            **self.lifetime.options(self.spec.name, head, generation),
        }
        actor = TaskActor.options(**options).remote(self.spec, unit, generation, self.secret)
        for key in unit:
            self.actors[key] = actor
        return actor

    def attach(self) -> list[TaskKey]:
        """Find the detached actors of a running deployment again (after the job master that
        made them restarted); returns the tasks whose actor is gone, for :meth:`restart` (one
        per chain: a restart replaces every task of its chain)."""
        assert self.lifetime.namespace is not None, "only detached actors can be found again"
        missing = []
        for unit in self.chains.units(self.tasks):
            actor = self._find(unit[0])
            if actor is None:
                missing.append(unit[0])
                continue
            for key in unit:
                self.actors[key] = actor
                self.runs[actor.outcome.remote(key)] = key
        wheres = {key: self.actors[key].where.remote(key) for key in self.actors}
        for key, ref in wheres.items():
            try:
                info = ray.get(ref, timeout=30)
            except ray.exceptions.RayError:
                continue  # died meanwhile: its outcome says so and the supervisor replaces it
            self.nodes[key], self.addresses[key] = info["node"], info["address"]
        if self.checkpoints is not None:
            self.checkpoints.skip_taken()
        return missing

    def _find(self, key: TaskKey) -> Any:
        """The task's detached actor: of its recorded generation or, when the master died in
        the middle of a restart it had not recorded yet, of a newer one; under exactly-once, a
        task reset in place keeps the name of an older generation."""
        recorded = self.generation(key)
        for generation in range(recorded + _GENERATIONS_AHEAD - 1, self.first_generation - 1, -1):
            name = self.lifetime.name(self.spec.name, key, generation)
            try:
                actor = ray.get_actor(name, namespace=self.lifetime.namespace)
            except ValueError:
                continue
            if generation > recorded:
                self.restarts[key] = self.restarts.get(key, 0) + generation - recorded
            return actor
        return None

    @property
    def tasks(self) -> list[TaskKey]:
        return [(c.id, i) for c in self.spec.components for i in range(c.parallelism)]

    def start(self, on_wait: Callable[[str], None] | None = None) -> None:
        """Create, place, connect and start every task."""
        spec = self.spec
        for unit in self.chains.units(self.tasks):
            self._new_actor(unit)
        self._connect(on_wait)
        if self.checkpoints is not None and self.checkpoints.latest is not None:
            self._gather(
                [
                    self.actors[k].restore.remote(k, self.checkpoints.restore_plan(k))
                    for k in self.tasks
                ]
            )
        order = [c for c in reversed(spec.topological_order())]
        for component_id in order:  # bolts first, so no spout emits into an unstarted task
            for i in range(spec.component(component_id).parallelism):
                key = (component_id, i)
                self.runs[self.actors[key].run.remote(key)] = key
        if self.checkpoints is not None:
            self.checkpoints.watch_final(self.tasks)

    def _connect(self, on_wait: Callable[[str], None] | None) -> None:
        spec = self.spec
        # Ask each actor for its node first: routing to local tasks needs every placement.
        node_refs = {self.actors[key].prepare.remote(key): key for key in self.tasks}
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
        spouts = (
            {k: (self.actors[k], self.addresses[k]) for k in spout_tasks(spec)}
            if key[0] == ACKER
            else None
        )
        return self.actors[key].connect.remote(key, targets, local, spouts)

    def _ackers(self) -> list[TaskKey]:
        return [k for k in self.actors if k[0] == ACKER]

    def restart(self, key: TaskKey) -> None:
        """Replace a dead task with a new actor (a new generation) and rewire its neighbours;
        the other tasks of its chain are replaced with it.

        What was in flight to or inside the dead tasks is lost; under at-least-once its tuple
        trees time out and their spouts replay them.
        """
        spec = self.spec
        unit = self.chains.unit(key)
        old = self.actors.get(key)
        if old is not None:  # its loop may have ended in error while the actor lives on
            with contextlib.suppress(Exception):
                ray.kill(old)
        for member in unit:
            self.counters.retire(member)
            self.restarts[member] = self.restarts.get(member, 0) + 1
            self.due.pop(member, None)  # restarted now, with the rest of its chain
            self.results.pop(member, None)
        self.runs = {ref: k for ref, k in self.runs.items() if k not in unit}
        actor = self._new_actor(unit)
        for member in unit:
            info = ray.get(actor.prepare.remote(member), timeout=spec.settings.startup_timeout)
            self.nodes[member], self.addresses[member] = info["node"], info["address"]
        ray.get([self._connect_task(member) for member in unit])
        refs = []
        for member in unit:
            upstream = [
                (c, i)
                for c in sorted({s.source for s in spec.upstream(member[0])})
                for i in range(spec.component(c).parallelism)
                if (c, i) not in unit
            ]
            # Finished upstream tasks too: their actors live on and send end-of-stream.
            refs += [
                self.actors[u].reconnect.remote(u, member, actor, self.addresses[member])
                for u in upstream
            ]
            if spec.component(member[0]).kind == "spout":  # its ackers answer the new actor
                refs += [
                    self.actors[k].rewire_spout.remote(k, member, actor, self.addresses[member])
                    for k in self._ackers()
                ]
        for ref in refs:
            try:
                ray.get(ref, timeout=30)
            except ray.exceptions.RayError as exc:  # that one died too: its own restart follows
                log.warning("could not rewire to the restarted %s[%s]: %s", *key, exc)
        for member in reversed(unit):  # consumers first, as at the start
            self.runs[actor.run.remote(member)] = member
        names = ", ".join(f"{c}[{i}]" for c, i in unit)
        log.warning("restarted task %s (restart %d)", names, self.restarts[key])

    # ---------------------------------------------------------- exactly-once
    def recover(self, dead: set[TaskKey]) -> None:
        """Exactly-once recovery: every task back to the latest complete checkpoint. Dead tasks
        (and those whose loop has ended) are recreated; the others reset in place, paused,
        before any task runs again, so nothing from before the failure mixes with the replay.
        A checkpoint that cannot be read gives way to the one before it."""
        coordinator = self.checkpoints
        assert coordinator is not None
        coordinator.before_recovery()
        self.recoveries += 1
        started = time.monotonic()
        spec_name = self.spec.name
        dead = set(dead) | set(self.results)
        dead = {member for key in dead for member in self.chains.unit(key)}
        while True:
            for key in self.tasks:
                self.restarts[key] = self.restarts.get(key, 0) + 1
            try:
                self._recover_once(dead)
                break
            except CheckpointError as exc:
                coordinator.fall_back(exc)
            except _Gone as gone:
                names = ", ".join(f"{c}[{i}]" for c, i in sorted(gone.keys))
                log.warning("%s: %s gone during recovery (%s); again", spec_name, names, gone.why)
                dead |= {member for key in gone.keys for member in self.chains.unit(key)}
            if time.monotonic() - started > self.spec.settings.startup_timeout:
                raise TaskError(
                    *sorted(dead)[0],
                    f"could not recover within startup.timeout "
                    f"({self.spec.settings.startup_timeout:g}s): tasks kept failing",
                )
        coordinator.after_recovery()
        source = f"checkpoint {coordinator.latest['id']}" if coordinator.latest else "the start"
        what = f"recovered from {source} in {time.monotonic() - started:.2f}s"
        what += f" ({len(dead)} task(s) recreated)"
        self.recoveries_done.append({"time": time.time(), "kind": "recovery", "what": what})
        del self.recoveries_done[:-50]
        log.warning("%s: %s", self.spec.name, what)

    def _recover_once(self, dead: set[TaskKey]) -> None:
        coordinator = self.checkpoints
        assert coordinator is not None
        spec = self.spec
        for key in dead:
            old = self.actors.get(key)
            if old is not None:
                with contextlib.suppress(Exception):
                    ray.kill(old)
            self.counters.retire(key)
            self.results.pop(key, None)
        self.runs = {ref: k for ref, k in self.runs.items() if k not in dead}
        for unit in self.chains.units(sorted(dead)):  # dead holds whole chains
            self._new_actor(unit)
        prepared = self._gather({key: self.actors[key].prepare.remote(key) for key in dead})
        for key, info in prepared.items():
            self.nodes[key], self.addresses[key] = info["node"], info["address"]
        moved = {key: (self.actors[key], self.addresses[key]) for key in dead}
        survivors = [key for key in self.tasks if key not in dead]
        answers = self._gather(
            {
                key: self.actors[key].reset.remote(
                    key,
                    self.generation(key),
                    coordinator.restore_plan(key),
                    {
                        t: moved[t]
                        for t in moved
                        if t[0] in {s.target for s in spec.downstream(key[0])}
                    },
                )
                for key in survivors
            }
        )
        ended = {key for key, answer in answers.items() if answer != "reset"}
        if ended:  # their loops ended meanwhile: recreate them too
            raise _Gone(ended, "their loops had ended")
        self._gather({key: self._connect_task(key) for key in dead})
        plans = {key: coordinator.restore_plan(key) for key in dead}
        self._gather(
            {key: self.actors[key].restore.remote(key, plans[key]) for key in dead if plans[key]}
        )
        order = {c: n for n, c in enumerate(reversed(spec.topological_order()))}
        for key in sorted(dead, key=lambda k: order[k[0]]):
            self.runs[self.actors[key].run.remote(key)] = key
        for key in survivors:
            self.actors[key].control.remote(key, "resume")

    def _gather(self, refs: Any) -> Any:
        """``ray.get`` for a list or a dict of refs; a task lost meanwhile raises ``_Gone``, a
        checkpoint that cannot be read ``CheckpointError``."""
        keyed = refs if isinstance(refs, dict) else dict(enumerate(refs))
        out = {}
        gone = set()
        for key, ref in keyed.items():
            try:
                out[key] = ray.get(ref, timeout=self.spec.settings.startup_timeout)
            except ray.exceptions.RayTaskError as exc:
                cause = exc.as_instanceof_cause()
                if isinstance(cause, CheckpointError):
                    raise CheckpointError(str(cause.args[0] if cause.args else cause)) from None
                raise
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                gone.add(key)
                why = type(exc).__name__
        if gone:
            raise _Gone(gone, why)
        return out if isinstance(refs, dict) else list(out.values())

    def _asks(self, component_id: str) -> dict[str, Any]:
        return actor_options(self.spec.component(component_id))

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for tasks to end; True when all have.

        A dead actor is replaced after the delay the job's restart strategy gives (``restart.*``,
        ``task.restarts``). A task whose loop ended in a user error raises
        ``TaskError``, unless ``restart_on_error`` (the job master) replaces it too, or the
        topology is exactly-once (a user error there recovers from the last checkpoint).
        """
        if self.checkpoints is not None:
            self.checkpoints.tick()
            for key, why in self.checkpoints.take_final_failures().items():  # recover, again
                self._schedule_restart(key, TaskError(*key, f"its final snapshot failed: {why}"))
        self._restart_due()
        pending = [ref for ref, key in self.runs.items() if key not in self.results]
        if not pending:
            return not self.due
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=timeout)
        for ref in ready:
            key = self.runs[ref]
            try:
                self.results[key] = self.counters.add_to(ray.get(ref))
            except (TaskError, ray.exceptions.RayTaskError) as exc:
                error = _task_error(key, exc)
                # Under exactly-once a user error is a failure like a crash: recover.
                if not (self.restart_on_error or self.checkpoints is not None):
                    raise error from None
                del self.runs[ref]
                self._schedule_restart(key, error)
            except ray.exceptions.RayActorError as exc:
                del self.runs[ref]
                self._schedule_restart(key, TaskError(key[0], key[1], f"the actor died: {exc}"))
        self._restart_due()
        return not self.due and all(key in self.results for key in self.runs.values())

    def _schedule_restart(self, key: TaskKey, error: TaskError) -> None:
        """Count the failure with the job's restart strategy and schedule the restart (under
        exactly-once, the recovery); the strategy giving up fails the job with ``TaskError``.
        Tasks failing while a recovery is already due join it without counting again: one
        incident, one failure."""
        now = time.time()
        # One incident, one failure: a chain's tasks die together; under exactly-once every
        # failure while a recovery is due joins it.
        joins = any(k in self.due for k in self.chains.unit(key)) or (
            self.checkpoints is not None and bool(self.due)
        )
        try:
            delay = 0.0 if joins else self.strategy.on_failure(now)
        except RestartsExhausted as exc:
            self._record_failure(key, error, None)
            raise TaskError(
                key[0],
                key[1],
                f"the job fails: {exc}; last failure: {error.message}",
                error.traceback_text,
            ) from None
        if joins:
            self.due[key] = min(self.due.values())
            return
        self._record_failure(key, error, delay)
        self.due[key] = time.monotonic() + delay

    def _record_failure(self, key: TaskKey, error: TaskError, delay: float | None) -> None:
        self.failures.append(
            {
                "time": time.time(),
                "component": key[0],
                "task": key[1],
                "error": error.message,
                "traceback": error.traceback_text,
                "restart": self.strategy.describe(time.time())["failures"],
                "delay": delay,
            }
        )
        del self.failures[:-50]

    def _restart_due(self) -> None:
        now = time.monotonic()
        if self.checkpoints is not None:
            ready = {key for key, when in self.due.items() if when <= now}
            if ready:
                for key in ready:
                    del self.due[key]
                self.recover(ready)
            return
        for key, when in list(self.due.items()):
            if when <= now and key in self.due:  # not restarted with its chain meanwhile
                del self.due[key]
                try:
                    self.restart(key)
                except ray.exceptions.RayActorError as exc:  # the new actor died meanwhile
                    error = TaskError(key[0], key[1], f"the actor died while restarting: {exc}")
                    self._schedule_restart(key, error)

    def stats(self, timeout: float = 2.0) -> list[dict[str, Any]]:
        """The latest stats of every task still running (and the results of finished ones),
        counters summed over each task's actors (see :mod:`rayflow.runtime.driver.carried`)."""
        live = {
            key: actor.stats.remote(key)
            for key, actor in self.actors.items()
            if key not in self.results
        }
        ready, _ = ray.wait(list(live.values()), num_returns=len(live), timeout=timeout)
        ready_set = set(ready)
        seen, silent = [], []
        for key, ref in live.items():
            try:
                if ref in ready_set:
                    seen.append(ray.get(ref))
                    continue
            except ray.exceptions.RayError:
                pass
            silent.append(key)
        self.counters.observe(seen)
        stand_ins = [self.counters.stand_in(key) for key in silent]
        return (
            list(self.results.values())
            + [self.counters.add_to(s) for s in seen]
            + [s for s in stand_ins if s is not None]
        )

    def command(self, name: str, kind: str | None = None) -> None:
        """Send a command (``finish``, ``stop``, ...) to the spouts (kind="spout") or to all."""
        refs = [
            actor.control.remote(key, name)
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
        for actor in {id(actor): actor for actor in self.actors.values()}.values():
            with contextlib.suppress(Exception):  # already gone
                ray.kill(actor)


def with_lineage(
    spec: TopologySpec, secret: bytes, restore_from: dict[str, Any] | None
) -> TopologySpec:
    """``spec`` with its checkpoint lineage in the config (``checkpoint.lineage``): one id for a
    topology's runs that resume each other from savepoints, new for a fresh submission. Sinks
    that mark what they wrote (Kafka) name their markers by it."""
    import dataclasses
    import hashlib

    lineage = (restore_from or {}).get("lineage") or (
        f"{spec.name}-{hashlib.sha256(secret).hexdigest()[:12]}"
    )
    return dataclasses.replace(spec, config={**spec.config, "checkpoint.lineage": lineage})


class _Gone(Exception):
    """Tasks lost during a recovery: the next attempt recreates them."""

    def __init__(self, keys: set[Any], why: str = "") -> None:
        super().__init__(keys)
        self.keys, self.why = keys, why


def _task_error(key: TaskKey, exc: BaseException) -> TaskError:
    """The user's ``TaskError`` out of what ``ray.get`` raised for a task's run."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        exc = exc.as_instanceof_cause()
    if isinstance(exc, TaskError):
        return TaskError(exc.component, exc.task, exc.message, exc.traceback_text)
    return TaskError(key[0], key[1], str(exc))


def _rounded(resources: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in sorted(resources.items()) if not k.startswith("node:")}
