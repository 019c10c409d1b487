"""The chart's readiness probe and a Prometheus scrape by pod IP pass the web UI's Host checks:
the rendered head container's probe (path, port) is sent as the kubelet sends it (``Host:
<pod IP>:<port>``) to the real HTTP server started with the rendered environment's host, port,
token and allowed hosts. The server applies the rules of the pod's bind address but listens on
loopback, so the test never listens on the network."""

from __future__ import annotations

import http.client
from typing import Any

import pytest

from rayflow.master.http import serve_in_thread
from rayflow.master.master import JobMaster
from rayflow.master.registry import MemoryRegistry
from tests.helm.chart import env_of, one, render

POD_IP = "10.244.3.17"


def head_container(*options: str) -> dict[str, Any]:
    head = one(render(*options), "Deployment", "wc-rayflow-head")
    return head["spec"]["template"]["spec"]["containers"][0]


def probe_answers(container: dict[str, Any]) -> dict[str, int]:
    """The status of the readiness probe's GET and of ``/metrics``, both by pod IP, from a server
    configured by the container's environment (the Secret's token filled in)."""
    env = env_of(container)
    assert env["RAYFLOW_UI_TOKEN"]["secretKeyRef"]["key"] == "ui-token"
    probe = container["readinessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = ports[probe["port"]] if isinstance(probe["port"], str) else probe["port"]
    served = serve_in_thread(
        JobMaster(MemoryRegistry()),
        env["RAYFLOW_UI_HOST"],
        0,
        token="from-the-secret",
        allowed_hosts=env.get("RAYFLOW_UI_ALLOWED_HOSTS", ""),
        listen="127.0.0.1",
    )
    answers = {}
    try:
        for path in (probe["path"], "/metrics"):
            connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
            headers = {"Host": f"{POD_IP}:{port}", "User-Agent": "kube-probe/1.31"}
            connection.request("GET", path, headers=headers)
            answers[path] = connection.getresponse().status
            connection.close()
    finally:
        served.close()
    return answers


def test_the_readiness_probe_and_a_scrape_by_pod_ip_are_answered() -> None:
    container = head_container()
    assert env_of(container)["RAYFLOW_UI_HOST"] == "0.0.0.0"
    assert probe_answers(container) == {"/health": 200, "/metrics": 200}


@pytest.mark.parametrize("allowed", ["rayflow.example", ".corp.example,ui.example"])
def test_they_are_answered_with_allowed_hosts_too(allowed: str) -> None:
    container = head_container(
        "--set", "head.extraEnv[0].name=RAYFLOW_UI_ALLOWED_HOSTS",
        "--set-string", f"head.extraEnv[0].value={allowed.replace(',', chr(92) + ',')}",
    )  # fmt: skip
    assert env_of(container)["RAYFLOW_UI_ALLOWED_HOSTS"] == allowed
    assert probe_answers(container) == {"/health": 200, "/metrics": 200}
