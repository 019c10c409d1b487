"""The job master as a Ray actor: detached, named, self-restarting, one per cluster on the head
node, serving the REST API and the UI from a thread (:mod:`rayflow.master.http`).

>>> MASTER_NAME, NAMESPACE
('rayflow-master', 'rayflow')
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import ray

from rayflow.errors import RayflowError
from rayflow.master.http import serve_in_thread
from rayflow.master.master import JobMaster
from rayflow.master.registry import NAMESPACE, Registry

MASTER_NAME = "rayflow-master"
DEFAULT_PORT = 8744


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=16)
class JobMasterActor:
    """The job master as a detached actor; Ray restarts it, and it takes over from its registry."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str = "",
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        self.master = JobMaster(Registry())
        self.master.recover()
        threading.Thread(
            target=self.master.supervise_forever, name="rayflow-supervisor", daemon=True
        ).start()
        self.master.url = serve_in_thread(self.master, host, port, token, allowed_hosts).url

    def __repr__(self) -> str:
        return "rayflow-master"

    def info(self) -> dict[str, Any]:
        return self.master.info()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one :class:`JobMaster` method (the CLI's way in)."""
        if method.startswith("_") or not callable(getattr(JobMaster, method, None)):
            raise AttributeError(f"the job master has no command {method!r}")
        return getattr(self.master, method)(*args, **kwargs)


def head_node_id() -> str | None:
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return node["NodeID"]
    return None


def get_master(create: bool = False, **options: Any) -> Any:
    """The cluster's job master (``ray.init`` first); with ``create``, start it if missing.

    ``options`` (host, port, token, allowed_hosts) only apply when this call creates it; a host
    beyond loopback without a token, or a malformed allowed host, is refused before the actor
    starts (:class:`~rayflow.master.access.AccessPolicy`).
    """
    try:
        return ray.get_actor(MASTER_NAME, namespace=NAMESPACE)
    except ValueError:
        if not create:
            raise RayflowError(
                "no rayflow job master runs on this Ray cluster; `rayflow submit` or "
                "`rayflow master start` starts one"
            ) from None
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    head = head_node_id()
    strategy = NodeAffinitySchedulingStrategy(head, soft=False) if head else "DEFAULT"
    from rayflow.master.access import AccessPolicy

    policy = AccessPolicy(
        options.get("host") or "127.0.0.1",
        options.get("token") or "",
        tuple(options.get("allowed_hosts") or ()),
    )
    master = JobMasterActor.options(
        name=MASTER_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        scheduling_strategy=strategy,
    ).remote(
        policy.bind_host,
        int(options.get("port") or DEFAULT_PORT),
        policy.token,
        policy.allowed_hosts,
    )
    ray.get(master.info.remote(), timeout=120)  # started and serving
    return master
