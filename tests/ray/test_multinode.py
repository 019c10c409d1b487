"""Two Ray nodes on loopback addresses (127.0.0.2 and 127.0.0.3), started with ``ray start``:
a topology spans both, its socket channels cross nodes, and local-or-shuffle stays local.

The nodes are stopped by the process ids of the ``ray start --block`` processes this test
started, never with ``ray stop`` (which would end every Ray on the machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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
