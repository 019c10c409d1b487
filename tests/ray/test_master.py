"""The job master on a real two-node Ray (``ray start`` on 127.0.0.2 and 127.0.0.3): submit from
another folder, list, status, deactivate/activate, logs, task and master crashes, the REST API
with its errors and token, and kill. Driven through the ``rayflow`` CLI and HTTP, as users do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import ENV, free_port

pytestmark = pytest.mark.ray

TOKEN = "s3cret-token"
MODULE = '''
import time
from rayflow import Bolt, Spout


class Ticks(Spout):
    """Numbers forever, about 200 a second (kept slow: the machine has two cores)."""

    outputs = ["n"]

    def open(self, context):
        self.n = 0

    def next_tuple(self):
        self.emit([self.n])
        self.n += 1
        time.sleep(0.005)


class Shout(Bolt):
    outputs = ["n"]

    def prepare(self, context):
        print(f"shout task {context.task_index} ready", flush=True)

    def process(self, tup):
        self.emit([tup["n"]])


class Sink(Bolt):
    def process(self, tup):
        pass
'''
TOPOLOGY = """\
name: ticking
spouts:
  - {id: ticks, className: ticking.Ticks, resources: {resources: {node_a: 1}}}
bolts:
  - {id: shout, className: ticking.Shout, parallelism: 2, resources: {resources: {node_b: 1}}}
  - {id: sink, className: ticking.Sink}
streams:
  - {from: ticks, to: shout, grouping: {type: SHUFFLE}}
  - {from: shout, to: sink, grouping: {type: SHUFFLE}}
"""


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(0.5)


class Cluster:
    """The CLI and the REST API of one cluster's master."""

    def __init__(self, address: str, port: int, cwd: Path) -> None:
        self.address, self.port, self.cwd = address, port, cwd

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "rayflow.cli", *args, "--address", self.address],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=self.cwd,
            env=ENV,
        )
        if check:
            assert done.returncode == 0, f"rayflow {' '.join(args)}: {done.stderr}{done.stdout}"
        return done

    def status(self, name: str = "ticking") -> dict[str, Any]:
        return json.loads(self.cli("status", name, "--json").stdout)

    def counter(self, component: str, name: str = "emitted") -> float:
        comps = {c["id"]: c for c in self.status()["components"]}
        return comps[component].get(name, 0)

    def http(
        self, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, method=method
        )
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        is_json = text.startswith(("{", "["))
        return status, json.loads(text) if is_json else text

    def ray(self, code: str) -> str:
        """Run ``code`` in a driver connected to the cluster (``ray`` imported)."""
        script = f"import ray\nray.init(address={self.address!r}, logging_level='ERROR')\n{code}"
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=ENV
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def growing(cluster: Cluster, component: str, name: str = "emitted") -> Callable[[], bool]:
    """A condition: the counter grew since the last time the condition was checked."""
    last = [cluster.counter(component, name)]

    def check() -> bool:
        now = cluster.counter(component, name)
        grew, last[0] = now > last[0], now
        return grew

    return check


@pytest.fixture(scope="module")
def cluster(two_nodes: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A master with a token on a free port, and the topology submitted from a folder of its own
    (not the repository): its module reaches the nodes through Ray's package upload."""
    folder = tmp_path_factory.mktemp("user_project")
    (folder / "ticking.py").write_text(textwrap.dedent(MODULE))
    (folder / "ticking.yaml").write_text(TOPOLOGY)
    c = Cluster(two_nodes, free_port("127.0.0.1"), folder)
    master = ("--ui-port", str(c.port), "--ui-token", TOKEN)
    c.cli("master", *master)
    try:
        yield c
    finally:
        for row in json.loads(c.cli("list", "--json").stdout):
            c.cli("kill", row["name"], "--wait", "0", check=False)
        c.cli("master", "--stop", check=False)


def test_submit_returns_at_once_and_the_topology_runs_on_both_nodes(cluster: Cluster) -> None:
    started = time.monotonic()
    done = cluster.cli("submit", "ticking.yaml", "--ui-port", str(cluster.port))
    assert "submitted topology 'ticking'" in done.stdout
    assert time.monotonic() - started < 120
    wait_for(lambda: cluster.counter("shout", "executed") > 100, "tuples through shout")
    listing = json.loads(cluster.cli("list", "--json").stdout)
    assert [(r["name"], r["status"], r["tasks"], r["workers"]) for r in listing] == [
        ("ticking", "ACTIVE", 4, 2)
    ]
    table = cluster.cli("list").stdout
    assert "ticking" in table and "ACTIVE" in table
    text = cluster.cli("status", "ticking").stdout
    assert "shout" in text and "EXECUTED" in text
    again = cluster.cli("submit", "ticking.yaml", check=False)
    assert again.returncode != 0 and "already running" in again.stderr


def test_deactivate_stops_the_spouts_and_activate_resumes_them(cluster: Cluster) -> None:
    assert "INACTIVE" in cluster.cli("deactivate", "ticking").stdout
    time.sleep(1.5)  # let the last in-flight tuples land and the stats refresh
    before = wait_for(lambda: _steady(cluster, "ticks"), "the spout's emitted count to stop moving")
    time.sleep(2.0)
    assert cluster.counter("ticks") == before, "a deactivated spout emitted"
    assert "ACTIVE" in cluster.cli("activate", "ticking").stdout
    wait_for(growing(cluster, "ticks"), "emitted to grow after activate")


def _steady(cluster: Cluster, component: str) -> float | None:
    first = cluster.counter(component)
    time.sleep(1.2)
    return first if cluster.counter(component) == first else None


def test_logs_show_the_tasks_own_lines(cluster: Cluster) -> None:
    out = cluster.cli("logs", "ticking", "shout").stdout
    assert "shout[0] | shout task 0 ready" in out
    assert "shout[1] | shout task 1 ready" in out
    only = cluster.cli("logs", "ticking", "shout", "--task", "1").stdout
    assert "shout[0]" not in only and "shout task 1 ready" in only


def test_a_killed_task_actor_is_restarted_and_the_topology_goes_on(cluster: Cluster) -> None:
    cluster.ray(
        "ray.kill(ray.get_actor('ticking/shout/0/0', namespace='rayflow'), no_restart=True)"
    )
    wait_for(lambda: cluster.status()["restarts"] >= 1, "the master to replace shout[0]")
    task_pid = next(
        t["pid"]
        for t in _component(cluster, "shout")["task_stats"]
        if t["task"] == 1 and "pid" in t
    )
    os.kill(task_pid, signal.SIGKILL)  # an OS signal to the task's process
    wait_for(lambda: cluster.status()["restarts"] >= 2, "the master to replace shout[1]")
    failures = cluster.status()["failures"]
    assert {(f["component"], f["task"]) for f in failures} == {("shout", 0), ("shout", 1)}
    wait_for(growing(cluster, "shout", "executed"), "shout to execute after the restarts")
    wait_for(growing(cluster, "sink", "executed"), "the sink to receive after the restarts")


def _component(cluster: Cluster, component: str) -> dict[str, Any]:
    status, body = cluster.http("GET", f"/api/v1/topologies/ticking/components/{component}")
    assert status == 200, body
    return body


def test_the_topology_survives_its_master_and_the_new_master_controls_it(
    cluster: Cluster,
) -> None:
    _, _info = cluster.http("GET", "/health")
    old_pid = int(
        cluster.ray(
            "print(ray.get(ray.get_actor('rayflow-master', "
            "namespace='rayflow').info.remote())['pid'])"
        ).strip()
    )
    os.kill(old_pid, signal.SIGKILL)
    new_pid = wait_for(lambda: _master_pid(cluster, old_pid), "Ray to restart the master", 90)
    assert new_pid != old_pid
    assert [r["name"] for r in json.loads(cluster.cli("list", "--json").stdout)] == ["ticking"]
    wait_for(growing(cluster, "shout", "executed"), "the topology to keep running")
    cluster.cli("deactivate", "ticking")
    assert cluster.status()["status"] == "INACTIVE"
    cluster.cli("activate", "ticking")


def _master_pid(cluster: Cluster, old: int) -> int | None:
    try:
        status, _body = cluster.http("GET", "/health")
    except OSError:
        return None
    if status != 200:
        return None
    out = cluster.ray(
        "print(ray.get(ray.get_actor('rayflow-master', namespace='rayflow').info.remote())['pid'])"
    )
    pid = int(out.strip())
    return pid if pid != old else None


def test_rest_api(cluster: Cluster) -> None:
    status, body = cluster.http("GET", "/api/v1/topologies")
    assert status == 200 and [t["name"] for t in body["topologies"]] == ["ticking"]
    status, body = cluster.http("GET", "/api/v1/topologies/ticking")
    assert status == 200
    assert [c["id"] for c in body["components"]] == ["ticks", "shout", "sink"]
    assert {(s["from"], s["to"], s["grouping"]) for s in body["streams"]} == {
        ("ticks", "shout", "SHUFFLE"),
        ("shout", "sink", "SHUFFLE"),
    }
    status, body = cluster.http("GET", "/api/v1/topologies/nope")
    assert status == 404 and "no topology named 'nope'" in body["error"]
    status, body = cluster.http("GET", "/api/v1/topologies/ticking/components/nope")
    assert status == 404 and "no component 'nope'" in body["error"]
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/kill", b"{not json")
    assert status == 400 and "not JSON" in body["error"]
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/kill", b'{"wait": "soon"}')
    assert status == 400 and "'wait'" in body["error"]
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/deactivate", token=None)
    assert status == 401 and "Bearer" in body["error"]
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/deactivate", token="wrong")
    assert status == 401
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/deactivate")
    assert status == 200 and body["status"] == "INACTIVE"
    status, body = cluster.http("POST", "/api/v1/topologies/ticking/activate")
    assert status == 200 and body["status"] == "ACTIVE"
    status, text = cluster.http("GET", "/metrics")
    assert status == 200
    assert 'rayflow_executed_total{component="shout",task="0",topology="ticking"}' in text
    assert 'rayflow_topology_up{status="ACTIVE",topology="ticking"} 1.0' in text


def test_kill_drains_and_removes_the_topology(cluster: Cluster) -> None:
    done = cluster.cli("kill", "ticking", "--wait", "5")
    assert "topology 'ticking' killed" in done.stdout
    assert json.loads(cluster.cli("list", "--json").stdout) == []
    gone = cluster.ray(
        "try:\n    ray.get_actor('ticking/ticks/0/0', namespace='rayflow'); print('alive')\n"
        "except ValueError:\n    print('gone')"
    )
    assert gone.strip() == "gone"
    status, _body = cluster.http("POST", "/api/v1/topologies/ticking/kill")
    assert status == 404
