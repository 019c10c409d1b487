"""Where Ray comes from: an embedded Ray on this machine, or an existing cluster.

Ray rewrites 127.0.0.1 to the machine's network address, so the embedded Ray binds its node to
another loopback address (``RAYFLOW_NODE_IP``, default 127.0.0.2). Token authentication stays on:
``RAY_AUTH_MODE=token`` is set explicitly unless the caller already chose a mode.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

from rayflow.errors import ClusterError

DEFAULT_NODE_IP = "127.0.0.2"


def code_path_env(paths: Iterable[str]) -> dict[str, str]:
    """A runtime_env that puts ``paths`` (the topology's folder, the working directory) on every
    worker's ``PYTHONPATH``, so ``className: examples.wordcount.Split`` imports there too."""
    seen: list[str] = []
    for path in [*paths, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]:
        if path and os.path.abspath(path) not in seen:
            seen.append(os.path.abspath(path))
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(seen)}} if seen else {}


def ensure_ray(address: str | None = None, code_paths: Iterable[str] = ()) -> None:
    """Start an embedded Ray (``address`` None) or connect to a cluster, once per process."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # before Ray is imported: it reads it then
    import ray

    if ray.is_initialized():
        return
    paths = [*code_paths, os.getcwd()]
    for path in paths:
        if os.path.abspath(path) not in map(os.path.abspath, sys.path):
            sys.path.insert(0, os.path.abspath(path))
    runtime_env = code_path_env(paths)
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING)
        else:
            ray.init(
                address="local",  # a new Ray of our own, never one found on the machine
                _node_ip_address=os.environ.get("RAYFLOW_NODE_IP", DEFAULT_NODE_IP),
                include_dashboard=False,
                runtime_env=runtime_env,
                logging_level=logging.WARNING,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "an embedded Ray"
        raise ClusterError(
            f"could not start or reach {where}: {exc}. Check the address (for example "
            "'auto' or '127.0.0.2:6379') and that the cluster's auth token is in ~/.ray"
        ) from exc
