"""Shared fixtures: one real local Ray per test session, started only if a test asks for it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("RAY_AUTH_MODE", "token")  # before Ray is imported anywhere
# Tasks that tests kill are replaced at once (the default waits 1 s, doubling per failure); the
# delays themselves are tested in tests/runtime/test_restart.py and
# tests/ray/test_restart_on_ray.py, which set restart.delay in their topologies.
os.environ.setdefault("RAYFLOW_RESTART_DELAY", "0")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """A local Ray on a loopback address (not 127.0.0.1, which Ray rewrites); yields its address.

    Task actors import test modules by name, so the repository root goes on their PYTHONPATH.
    """
    import ray

    from rayflow.launchers.ray_init import code_path_env

    ray.init(
        address="local",  # our own Ray, never one a `ray start` elsewhere left registered
        _node_ip_address="127.0.0.2",
        include_dashboard=False,
        num_cpus=2,
        runtime_env=code_path_env([str(ROOT)]),
        logging_level="WARNING",
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def two_nodes() -> Iterator[str]:
    """A two-node Ray started with ``ray start`` (see tests/cluster.py); yields its address."""
    from tests.cluster import two_node_cluster

    with two_node_cluster() as address:
        yield address
