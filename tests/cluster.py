"""A real two-node Ray cluster on loopback addresses (127.0.0.2 head, 127.0.0.3 worker), started
with ``ray start --block`` and stopped by the process groups this module started, never with
``ray stop`` (which would end every Ray on the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def alive_nodes(address: str) -> int:
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV
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
