"""Two Ray nodes on loopback addresses (127.0.0.2 and 127.0.0.3), started with ``ray start``:
a topology spans both, its socket channels cross nodes, and local-or-shuffle stays local.

The nodes are stopped by the process ids of the ``ray start --block`` processes this test
started, never with ``ray stop`` (which would end every Ray on the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = pytest.mark.ray

TOPOLOGY = """\
name: two-nodes
spouts:
  - {id: a, className: tests.multinode.NodeNumbers, resources: {resources: {node_a: 1}}}
  - {id: b, className: tests.multinode.NodeNumbers, resources: {resources: {node_b: 1}}}
bolts:
  - {id: tag, className: tests.multinode.NodeTag, parallelism: 2,
     resources: {resources: {slot: 1}}}
  - {id: sink, className: rayflow.testing.ListSink}
streams:
  - {from: a, to: tag, grouping: {type: LOCAL_OR_SHUFFLE}}
  - {from: b, to: tag, grouping: {type: LOCAL_OR_SHUFFLE}}
  - {from: tag, to: sink, grouping: {type: GLOBAL}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
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
        env=env,
        start_new_session=True,
    )


def _alive_nodes(address: str) -> int:
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    return int(done.stdout.strip() or 0) if done.returncode == 0 else 0


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    port = _free_port()
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
        while _alive_nodes(address) < 1:
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
        while _alive_nodes(address) < 2:
            assert worker.poll() is None, f"the worker node did not start: {worker.stderr.read()}"
            assert time.monotonic() < deadline, "the worker node did not join in 90 s"
            time.sleep(1)
        yield address
    finally:
        for proc in (worker, head):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # the process group this test started
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


def test_a_topology_across_two_nodes_keeps_local_or_shuffle_local(
    two_nodes: str, tmp_path: Path
) -> None:
    topology = tmp_path / "two_nodes.yaml"
    topology.write_text(TOPOLOGY)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rayflow.cli",
            "run",
            str(topology),
            "--address",
            two_nodes,
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    rows = []
    for line in out[out.index("sink:") + 1 :]:
        if not line.startswith("  "):
            break
        rows.append(line.split())
    assert len(rows) == 40, "20 numbers from each spout"
    nodes = {node for _n, _from, node in rows}
    assert len(nodes) == 2, "the two tag tasks run on the two nodes"
    assert all(sender == receiver for _n, sender, receiver in rows), "local-or-shuffle stays local"
