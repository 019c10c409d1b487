"""Run a topology on Ray from this process until it ends, a duration passes, or Ctrl-C.

Used by ``rayflow run`` and ``Topology.run()``. Ctrl-C (or the end of ``duration``) finishes the
spouts gracefully, so the bolts' ``cleanup`` still runs and final results come out; a second
Ctrl-C stops at once.

With ``ui_port`` the run is shown by the job master's own code, in this process: the web UI, the
REST API (status, activate/deactivate, kill, savepoint) and ``/metrics``, on 127.0.0.1 unless
``ui_access`` (an :class:`~rayflow.master.access.AccessPolicy`: host, token, allowed hosts) says
otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from rayflow.api.result import RunResult, merge_task_stats
from rayflow.launchers.progress import ProgressLine
from rayflow.launchers.ray_init import ensure_ray
from rayflow.launchers.watchdog import StallWatch
from rayflow.master.access import AccessPolicy
from rayflow.spec.durations import parse_duration
from rayflow.spec.model import TopologySpec

log = logging.getLogger("rayflow.run")

FINISH_GRACE_SECONDS = 60.0


def run_topology(
    spec: TopologySpec,
    duration: float | str | None = None,
    address: str | None = None,
    progress: bool = False,
    code_paths: Iterable[str] = (),
    ui_port: int | None = None,
    on_ui: Callable[[str], None] | None = None,
    ui_access: AccessPolicy | None = None,
) -> RunResult:
    """Deploy ``spec`` on Ray and wait for it; see the module docstring."""
    ensure_ray(address, code_paths)
    from rayflow.runtime.driver.deploy import RayDeployment

    started = time.monotonic()
    line = ProgressLine(spec.name) if progress else None
    deployment = RayDeployment(spec)
    job = None
    if ui_port is not None:
        access = ui_access or AccessPolicy("127.0.0.1")
        job = _local_master(spec, deployment, ui_port, on_ui, access)
    ended = "finished"
    deadline = None if duration is None else started + parse_duration(duration)
    finish_by: float | None = None
    watch = StallWatch(spec.settings.stall_timeout)
    next_check = started
    try:
        deployment.start(on_wait=_printer(line))
        while True:
            try:
                if deployment.wait(timeout=0.5):
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline and finish_by is None:
                    ended = "duration"
                    finish_by = now + FINISH_GRACE_SECONDS
                    deployment.command("finish", kind="spout")
                if finish_by is not None and now > finish_by:
                    log.warning(
                        "the topology did not drain within %.0fs; stopping it", FINISH_GRACE_SECONDS
                    )
                    deployment.command("stop")
                    finish_by = now + FINISH_GRACE_SECONDS
                if now >= next_check:
                    next_check = now + 1.0
                    if job is not None:  # the UI's figures, and ours
                        job.refresh_stats()
                        stats = job.stats
                    else:
                        stats = deployment.stats(timeout=1.0)
                    stalled = watch.check(stats, now)
                    if stalled:
                        _printer(line)(f"warning: {stalled}")
                    if line is not None and line.due():
                        line.update(stats)
            except KeyboardInterrupt:
                if finish_by is not None:
                    raise
                ended = "interrupted"
                finish_by = time.monotonic() + FINISH_GRACE_SECONDS
                if line is not None:
                    line.close()
                log.warning("stopping: spouts finish, bolts drain (Ctrl-C again to stop now)")
                deployment.command("finish", kind="spout")
    except BaseException:
        deployment.kill()
        raise
    finally:
        if line is not None:
            line.close()
    result = merge_task_stats(
        spec.name, list(deployment.results.values()), ended, time.monotonic() - started
    )
    deployment.kill()
    return result


def _local_master(
    spec: TopologySpec,
    deployment: Any,
    port: int,
    on_ui: Callable[[str], None] | None,
    access: AccessPolicy,
) -> Any:
    """A job master in this process that shows ``deployment`` (the UI and REST API)."""
    from rayflow.master.http import serve_in_thread
    from rayflow.master.job import Job
    from rayflow.master.master import JobMaster
    from rayflow.master.registry import JobRecord, MemoryRegistry

    registry = MemoryRegistry()
    master = JobMaster(registry)
    record = JobRecord(spec.name, spec, {}, deployment.secret, source="rayflow run")
    job = master.jobs[spec.name] = Job(record, registry, deployment)
    registry.put(record)
    try:
        served = serve_in_thread(master, access.bind_host, port, access.token, access.allowed_hosts)
    except OSError as exc:
        log.warning("no web UI for this run: port %d: %s (--ui-port picks another)", port, exc)
        return job
    master.url = served.url
    (on_ui or log.warning)(f"web UI and REST API: {master.url}/#/topology/{spec.name}")
    return job


def _printer(line: ProgressLine | None):  # type: ignore[no-untyped-def]
    def show(message: str) -> None:
        if line is not None and line.stream is not None:
            line.stream.write(message + "\n")
        else:
            log.warning(message)

    return show
