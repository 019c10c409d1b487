"""The chart's head and worker scripts, run for real: the rendered ``head.sh`` starts a Ray head,
the job master and the topology from the rendered ConfigMap; the rendered ``worker.sh`` waits for
the head and joins it; the topology's bolts run on the worker node. The environment is the one
the rendered Deployments give their containers, with what Kubernetes would fill in (pod IP,
limits from the downward API, the Secret) supplied here, and every address on loopback."""

from __future__ import annotations

import os
import signal
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
from tests.helm.chart import env_of, one, render

pytestmark = pytest.mark.ray
RAY_TOKEN = "chart-test-ray-token-0123456789ab"


def container_env(deployment: dict, **filled: str) -> dict[str, str]:
    """The container's plain ``value`` variables, plus what Kubernetes would fill in."""
    env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    needed = {k for k, v in env.items() if not isinstance(v, str)}
    assert needed <= set(filled), f"the test must fill in {needed - set(filled)}"
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        **plain,
        **filled,
    }


def start(script: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["bash", str(script)], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group this test started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# The same job as a Streams API flow file: a source on node_a, a Bolt class sink on node_b.
FLOW = """
from rayflow import Flow
from ticking import Ticks, Sink

flow = Flow("ticking")
flow.source(Ticks, name="ticks", resources={"resources": {"node_a": 1}}).map(abs).sink(
    Sink, name="shout", parallelism=2, resources={"resources": {"node_b": 1}}
)
"""


@pytest.mark.parametrize("kind", ["topology", "flow"])
def test_head_and_worker_scripts_run_the_topology(tmp_path: Path, kind: str) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "ticking.py").write_text(textwrap.dedent(MODULE))
    (user / "ticking.yaml").write_text(TOPOLOGY)
    (user / "flow.py").write_text(FLOW)
    job = f"topology={user / 'ticking.yaml'}" if kind == "topology" else f"flow={user / 'flow.py'}"
    gcs, ui = free_port(), free_port("127.0.0.1")
    objects = render(
        "--set", f"ports.gcs={gcs}",
        "--set", f"ports.dashboard={free_port()}",
        "--set", f"ports.client={free_port()}",
        "--set", f"ports.ui={ui}",
        "--set-file", job,
        "--set-file", f"modules.ticking\\.py={user / 'ticking.py'}",
        "--set", "head.rayResources.node_a=10",
        "--set", "workerGroups.workers.rayResources.node_b=10",
        "--set", "head.objectStoreFraction=0.05",
        "--set", "workerGroups.workers.objectStoreFraction=0.05",
    )  # fmt: skip
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name, text in one(objects, "ConfigMap", "wc-rayflow-scripts")["data"].items():
        (scripts / name).write_text(text)
    topology = tmp_path / "topology"  # what the ConfigMap volume holds
    topology.mkdir()
    for name, text in one(objects, "ConfigMap", "wc-rayflow-topology")["data"].items():
        (topology / name).write_text(text)

    limits = {"RAYFLOW_NUM_CPUS": "1", "RAYFLOW_MEMORY_BYTES": str(2 << 30)}
    head_env = container_env(
        one(objects, "Deployment", "wc-rayflow-head"),
        POD_IP="127.0.0.2", RAY_AUTH_TOKEN=RAY_TOKEN, RAYFLOW_UI_TOKEN=TOKEN, **limits,
    )  # fmt: skip
    # The pod listens on all interfaces; here only on loopback.
    head_env.update(RAYFLOW_UI_HOST="127.0.0.1", RAYFLOW_DASHBOARD_HOST="127.0.0.2",
                    RAYFLOW_TOPOLOGY_DIR=str(topology))  # fmt: skip
    worker_env = container_env(
        one(objects, "Deployment", "wc-rayflow-worker-workers"),
        POD_IP="127.0.0.3", RAY_AUTH_TOKEN=RAY_TOKEN, **limits,
    )  # fmt: skip
    worker_env["RAYFLOW_HEAD_ADDRESS"] = f"127.0.0.2:{gcs}"  # the head Service's name, here

    head = start(scripts / "head.sh", head_env, tmp_path / "head.log")
    worker = start(scripts / "worker.sh", worker_env, tmp_path / "worker.log")
    cluster = Cluster(f"127.0.0.2:{gcs}", ui, tmp_path)
    try:

        def submitted() -> bool:
            assert head.poll() is None, (tmp_path / "head.log").read_text()
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            if not _answers(cluster):
                return False
            code, body = cluster.http("GET", "/api/v1/topologies")
            return code == 200 and [t["name"] for t in body["topologies"]] == ["ticking"]

        wait_for(submitted, "head.sh to submit", timeout=180)
        # shout asks for node_b, which only the worker node has: it runs once the worker joined
        counter = "emitted" if kind == "topology" else "executed"  # the flow's is a sink
        wait_for(growing(cluster, "shout", counter), "the bolts on the worker node", timeout=120)
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": RAY_TOKEN}
        assert alive_nodes(cluster.address, env) == 2
        code, _ = cluster.http("POST", "/api/v1/topologies/ticking/deactivate", token=None)
        assert code == 401  # the UI token reached the master
    finally:
        stop(worker)
        stop(head)


def _answers(cluster: Cluster) -> bool:
    try:
        return cluster.http("GET", "/health")[0] == 200
    except OSError:
        return False
