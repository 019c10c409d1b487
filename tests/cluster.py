"""A real two-node Ray cluster on loopback addresses (127.0.0.2 head, 127.0.0.3 worker), started
with ``ray start --block`` and stopped by the process groups this module started, never with
``ray stop`` (which would end every Ray on the machine); and a job master on it, driven through
the ``rayflow`` CLI and its HTTP port as users do.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {**os.environ, "RAY_AUTH_MODE": "token"}


def free_port(host: str = "127.0.0.2") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            RAY,
            "start",
            "--block",
            "--disable-usage-stats",
            "--num-cpus=1",
            "--object-store-memory=80000000",
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
        start_new_session=True,
    )


def alive_nodes(address: str, env: dict[str, str] | None = None) -> int:
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env or ENV
    )
    return int(done.stdout.strip() or 0) if done.returncode == 0 else 0


@contextmanager
def two_node_cluster() -> Iterator[str]:
    """Yields the head's address; resources ``node_a`` (head) and ``node_b`` (worker), and one
    ``slot`` on each."""
    port = free_port()
    address = f"127.0.0.2:{port}"
    head = _start(
        [
            "--head",
            "--node-ip-address=127.0.0.2",
            f"--port={port}",
            "--include-dashboard=false",
            '--resources={"node_a": 10, "slot": 1}',
        ]
    )
    worker = None
    try:
        deadline = time.monotonic() + 90
        while alive_nodes(address) < 1:
            assert head.poll() is None, f"the head node did not start: {head.stderr.read()}"
            assert time.monotonic() < deadline, "the head node did not come up in 90 s"
            time.sleep(1)
        worker = _start(
            [
                f"--address={address}",
                "--node-ip-address=127.0.0.3",
                '--resources={"node_b": 10, "slot": 1}',
            ]
        )
        while alive_nodes(address) < 2:
            assert worker.poll() is None, f"the worker node did not start: {worker.stderr.read()}"
            assert time.monotonic() < deadline, "the worker node did not join in 90 s"
            time.sleep(1)
        yield address
    finally:
        for proc in (worker, head):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # the process group this module started
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


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
        self.metrics.counter("shouted").inc()
        self.emit([tup["n"]])


class Sink(Bolt):
    def process(self, tup):
        pass


class RewindableTicks(Ticks):
    """Ticks that exactly-once can rewind."""

    def snapshot(self):
        return self.n

    def restore(self, snapshot):
        self.n = snapshot
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


EXACTLY_ONCE_TOPOLOGY = """\
name: ticking-eo
config: {reliability: exactly_once, checkpoint.interval: 1s}
spouts:
  - {id: ticks, className: ticking.RewindableTicks}
bolts:
  - {id: sink, className: ticking.Sink}
streams:
  - {from: ticks, to: sink, grouping: {type: FORWARD}}  # they chain: one actor
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
        """What ``rayflow status NAME --json`` prints, read over REST (a CLI call per poll
        would start a Python and a Ray connection each time)."""
        code, body = self.http("GET", f"/api/v1/topologies/{name}")
        assert code == 200, body
        return body

    def counter(self, component: str, name: str = "emitted") -> float:
        comps = {c["id"]: c for c in self.status()["components"]}
        return comps[component].get(name, 0)

    def http(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request as the CLI's users send it (a POST as ``application/json``, with the
        token); ``headers`` add to or replace those."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, method=method
        )
        if method == "POST":
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
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


@contextmanager
def master_cluster(two_nodes: str, folder: Path) -> Iterator[Cluster]:
    """A master with a token on a free port, and the topology submitted from a folder of its own
    (not the repository): its module reaches the nodes through Ray's package upload."""
    (folder / "ticking.py").write_text(textwrap.dedent(MODULE))
    (folder / "ticking.yaml").write_text(TOPOLOGY)
    (folder / "ticking-eo.yaml").write_text(
        EXACTLY_ONCE_TOPOLOGY.replace("config: {", f"config: {{checkpoint.storage: {folder}/ckpt, ")
    )
    c = Cluster(two_nodes, free_port("127.0.0.1"), folder)
    master = ("--ui-port", str(c.port), "--ui-token", TOKEN)
    c.cli("master", *master)
    try:
        yield c
    finally:
        for row in json.loads(c.cli("list", "--json").stdout):
            c.cli("kill", row["name"], "--wait", "0", check=False)
        c.cli("master", "--stop", check=False)
