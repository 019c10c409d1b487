"""The job master: the topologies on this Ray cluster and their supervision.

:class:`JobMaster` holds the jobs and answers the CLI and the REST API; the Ray actor that hosts
it with its HTTP port is :class:`rayflow.master.actor.JobMasterActor`.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from typing import Any

from rayflow.errors import RayflowError, TopologyError
from rayflow.master.job import Job
from rayflow.master.registry import JobRecord, Registry
from rayflow.spec.settings import Reliability

log = logging.getLogger("rayflow.master")

SUPERVISE_EVERY = 0.5


class UnknownTopology(RayflowError, KeyError):
    """No topology of that name runs here."""

    def __str__(self) -> str:
        return str(self.args[0])


class JobMaster:
    """The topologies of one Ray cluster (see module docstring)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.started_at = time.time()
        self.url = ""
        self._stop = threading.Event()
        self._supervisors: dict[Job, threading.Thread] = {}  # by job: a new one of a name too

    def recover(self) -> None:
        """Take over the topologies a previous master ran (their task actors still run)."""
        for name in self.registry.names():
            record = self.registry.get(name)
            if record is None:
                continue
            job = Job(record, self.registry)
            try:
                job.attach()
            except Exception as exc:  # keep the master up for the others
                log.exception("could not take over topology %s", name)
                job.error = f"could not take over after a master restart: {exc}"
            self.jobs[name] = job
            log.warning("took over topology %s (%s)", name, record.status)

    def supervise_forever(self) -> None:
        """Give every topology a supervisor thread of its own: restarting one topology's tasks
        (which waits on Ray to place and wire them) never delays noticing another's failures."""
        while not self._stop.is_set():
            for job in list(self.jobs.values()):
                thread = self._supervisors.get(job)
                if thread is None or not thread.is_alive():
                    thread = threading.Thread(
                        target=self._supervise, args=(job,), name=f"supervise-{job.name}",
                        daemon=True,
                    )  # fmt: skip
                    self._supervisors[job] = thread
                    thread.start()
            self._stop.wait(SUPERVISE_EVERY)

    def _supervise(self, job: Job) -> None:
        while not self._stop.is_set() and not job.ended:
            try:
                job.supervise()
            except Exception:
                log.exception("supervising %s failed", job.name)
            if job.ended:
                break
            self._stop.wait(SUPERVISE_EVERY)
        with self.lock:
            if self.jobs.get(job.name) is job:
                del self.jobs[job.name]
            if self._supervisors.get(job) is threading.current_thread():
                del self._supervisors[job]

    def stop(self) -> None:
        self._stop.set()

    def info(self) -> dict[str, Any]:
        """Where the UI is, and this master's process (``rayflow ui``, tests)."""
        return {"url": self.url, "pid": os.getpid(), "started": self.started_at}

    # ---------------------------------------------------------------- commands

    def submit(
        self,
        spec: Any,
        runtime_env: dict[str, Any],
        source: str = "",
        from_savepoint: str = "",
        allow_non_restored_state: bool = False,
    ) -> dict[str, Any]:
        """Start ``spec`` (classes by path, code in ``runtime_env``), from a savepoint if given;
        returns its summary."""
        restore_from = None
        if from_savepoint:
            restore_from = savepoint_for(spec, from_savepoint, allow_non_restored_state)
        with self.lock:
            if spec.name in self.jobs:
                raise TopologyError(
                    f"a topology named '{spec.name}' is already running; kill it first "
                    f"(rayflow kill {spec.name}) or give this one another name"
                )
            record = JobRecord(
                spec.name,
                spec,
                runtime_env,
                secrets.token_bytes(16),
                source=source,
                restore_from=restore_from,
            )
            job = Job(record, self.registry)
            self.jobs[spec.name] = job
        try:
            job.start()
        except BaseException:
            with self.lock:
                self.jobs.pop(spec.name, None)
            job.deployment.kill()
            self.registry.delete(spec.name)
            raise
        log.warning("topology %s submitted (%d tasks)", spec.name, len(job.deployment.tasks))
        return job.summary()

    def job(self, name: str) -> Job:
        job = self.jobs.get(name)
        if job is None or job.ended:
            running = ", ".join(sorted(self.jobs)) or "none"
            raise UnknownTopology(f"no topology named '{name}' (running: {running})")
        return job

    def list(self) -> list[dict[str, Any]]:
        return [job.summary() for job in sorted(self.jobs.values(), key=lambda j: j.name)]

    def status(self, name: str) -> dict[str, Any]:
        return self.job(name).detail()

    def component(self, name: str, component_id: str) -> dict[str, Any]:
        found = self.job(name).component(component_id)
        if found is None:
            raise UnknownTopology(f"topology '{name}' has no component '{component_id}'")
        return found

    def history(
        self,
        name: str,
        component: str | None,
        task: int | str | None,
        metrics: list[str],
        since: float,
        step: float | None = None,
    ) -> dict[str, Any]:
        """``GET .../history``: the figures of every component (no ``component``), of one, of
        one of its tasks (``task`` N) or of each of its tasks (``task`` ``"*"``) since
        ``since`` (epoch seconds), from the window of ``step`` seconds where there is one;
        see :mod:`rayflow.master.history`."""
        job = self.job(name)
        ids = [c.id for c in job.deployment.spec.components]
        if component is None:
            owners: list[tuple[str, int | None]] = [(c, None) for c in ids]
        elif component not in ids:
            raise UnknownTopology(f"topology '{name}' has no component '{component}'")
        elif task is None:
            owners = [(component, None)]
        else:
            tasks = sorted(i for c, i in job.deployment.tasks if c == component)
            if task != "*" and task not in tasks:
                raise UnknownTopology(f"component '{component}' has no task {task} (tasks {tasks})")
            owners = [(component, i) for i in tasks] if task == "*" else [(component, task)]
        now = time.time()
        answer = job.history.query(owners, metrics, since, now, step)
        return {"topology": name, "now": now, **answer}

    def activate(self, name: str) -> dict[str, Any]:
        self.job(name).activate()
        return self.job(name).summary()

    def deactivate(self, name: str) -> dict[str, Any]:
        self.job(name).deactivate()
        return self.job(name).summary()

    def rebalance(
        self, name: str, parallelism: dict[str, int], wait: float = 30.0
    ) -> dict[str, Any]:
        job = self.job(name)
        job.rebalance(parallelism, wait)
        return job.summary()

    def kill(self, name: str, wait: float = 30.0, savepoint: bool = False) -> dict[str, Any]:
        """End a topology; with ``savepoint``, stop it with one (its URL is in the answer)."""
        job = self.job(name)
        if savepoint:
            url = job.stop_with_savepoint()
            return {**job.summary(), "status": "KILLED", "savepoint": url}
        job.kill(wait)
        return job.summary()

    def savepoint(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        """``rayflow savepoint NAME``: write one, answer its URL."""
        return {"name": name, "savepoint": self.job(name).savepoint(timeout)}

    def read_log(
        self,
        name: str,
        component: str,
        task: int,
        offsets: dict[str, int] | None = None,
        tail: int = 0,
    ) -> dict[str, Any]:
        """A task's log lines from ``offsets`` on (``rayflow logs``; the UI's log tail, which
        starts ``tail`` bytes before the end)."""
        job = self.job(name)
        try:
            return job.read_log(component, task, offsets, tail)
        except KeyError:
            raise UnknownTopology(f"topology '{name}' has no task {component}[{task}]") from None

    def tasks(self, name: str) -> list[tuple[str, int]]:
        return list(self.job(name).deployment.tasks)


def savepoint_for(spec: Any, url: str, allow_non_restored_state: bool) -> dict[str, Any]:
    """The savepoint at ``url``, checked against the topology that will start from it."""
    from rayflow.runtime.driver.coordinator import validate_restore
    from rayflow.state.storage import CheckpointStorage

    if spec.settings.reliability != Reliability.EXACTLY_ONCE:
        raise TopologyError(
            "starting from a savepoint needs reliability exactly_once (the topology has "
            f"{spec.settings.reliability})"
        )
    metadata = CheckpointStorage.open_savepoint(url)
    if metadata.get("max_parallelism") != spec.settings.max_parallelism:
        raise TopologyError(
            f"{url} was written with max_parallelism {metadata.get('max_parallelism')}; it is "
            f"fixed for a topology's life, and this one has {spec.settings.max_parallelism}"
        )
    validate_restore(metadata, [c.id for c in spec.components], allow_non_restored_state)
    return metadata
