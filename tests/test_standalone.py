"""deploy/standalone: the head and worker scripts run for real on two loopback addresses, and a
topology submitted with submit.sh runs across them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.cluster import (
    MODULE,
    TOKEN,
    TOPOLOGY,
    Cluster,
    alive_nodes,
    free_port,
    growing,
    wait_for,
)
from tests.helm.test_scripts_on_ray import start, stop

pytestmark = pytest.mark.ray
SCRIPTS = Path(__file__).resolve().parents[1] / "deploy" / "standalone"


def test_head_worker_and_submit_scripts(tmp_path: Path) -> None:
    token = tmp_path / "ray-token"
    token.write_text("standalone-test-token-0123456789")
    port, ui = free_port(), free_port("127.0.0.1")
    base = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "NUM_CPUS": "1",
        "OBJECT_STORE_BYTES": str(80 << 20),
        "MEMORY_BYTES": str(1 << 30),
    }
    head_env = {**base, "NODE_IP": "127.0.0.2", "RAY_PORT": str(port),
                "RAYFLOW_UI_HOST": "127.0.0.1", "RAYFLOW_UI_PORT": str(ui),
                "RAYFLOW_UI_TOKEN": TOKEN, "RESOURCES": '{"node_a": 10}'}  # fmt: skip
    worker_env = {**base, "NODE_IP": "127.0.0.3", "HEAD_ADDRESS": f"127.0.0.2:{port}",
                  "RESOURCES": '{"node_b": 10}'}  # fmt: skip
    head = start(SCRIPTS / "start-head.sh", head_env, tmp_path / "head.log")
    worker = start(SCRIPTS / "start-worker.sh", worker_env, tmp_path / "worker.log")
    try:
        address = f"127.0.0.2:{port}"
        check_env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}

        def both_up() -> bool:
            assert head.poll() is None, (tmp_path / "head.log").read_text()
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            return b"rayflow: Ray head" in (tmp_path / "head.log").read_bytes() and (
                alive_nodes(address, check_env) == 2
            )

        wait_for(both_up, "the head and the worker", timeout=180)
        project = tmp_path / "project"
        project.mkdir()
        (project / "ticking.py").write_text(textwrap.dedent(MODULE))
        (project / "ticking.yaml").write_text(TOPOLOGY)
        done = subprocess.run(
            [str(SCRIPTS / "submit.sh"), "ticking.yaml"],
            cwd=project, capture_output=True, text=True, timeout=180,
            env={**base, "HEAD_ADDRESS": address},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
        cluster = Cluster(address, ui, project)
        # shout needs node_b, which only the worker has: it runs there
        wait_for(growing(cluster, "shout"), "the topology across both machines", timeout=120)
    finally:
        stop(worker)
        stop(head)
