"""The Helm chart and ``rayflow k8s`` against a real Kubernetes API server (kube-apiserver built
from the Kubernetes modules, on etcd; scripts/kube_apiserver.py). No kubelet, scheduler or
controllers run: these tests check what the API server decides (admission, validation, RBAC)."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayflow.errors import ClusterError
from rayflow.launchers.kubernetes import K8sRelease
from scripts.kube_apiserver import KubeApiServer
from tests.helm.chart import CHART, FULL_VALUES, ROOT, helm
from tests.services import running

NS = "streams"


@pytest.fixture(scope="module")
def apiserver() -> Iterator[KubeApiServer]:
    yield from running(KubeApiServer(), "Kubernetes API server")


def kube(api: KubeApiServer) -> tuple[object, object, object]:
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=str(api.kubeconfig))
    return (
        kubernetes.client.CoreV1Api(client),
        kubernetes.client.AppsV1Api(client),
        kubernetes.client.AuthorizationV1Api(client),
    )


def helm_on(api: KubeApiServer, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return helm(*args, "--kubeconfig", str(api.kubeconfig), "--namespace", NS, check=check)


def install(api: KubeApiServer, release: str = "wc", *values: str) -> None:
    helm_on(api, "install", release, str(CHART), "--create-namespace",
            "--set-file", f"topology={ROOT / 'examples' / 'wordcount.yaml'}", *values)  # fmt: skip


def pending_pod(core: object, name: str, component: str, group: str | None = None) -> None:
    """A pod as the Deployment's ReplicaSet would create it (no controller runs here)."""
    labels = {"app.kubernetes.io/name": "rayflow", "app.kubernetes.io/instance": "wc",
              "app.kubernetes.io/component": component}  # fmt: skip
    if group:
        labels["rayflow.io/worker-group"] = group
    core.create_namespaced_pod(NS, {  # type: ignore[attr-defined]
        "metadata": {"name": name, "labels": labels},
        "spec": {"serviceAccountName": "wc-rayflow",
                 "containers": [{"name": component, "image": "rayflow/rayflow:0.1.0"}]},
    })  # fmt: skip


def service_monitor_crd(api: KubeApiServer) -> None:
    """The Prometheus Operator's ServiceMonitor kind, as its CRD declares it (no schema here:
    the operator validates the spec; the API server checks the kind, names and metadata)."""
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=str(api.kubeconfig))
    crds = kubernetes.client.ApiextensionsV1Api(client)
    if any(c.metadata.name == "servicemonitors.monitoring.coreos.com"
           for c in crds.list_custom_resource_definition().items):  # fmt: skip
        return
    crds.create_custom_resource_definition({
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": "servicemonitors", "singular": "servicemonitor",
                      "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                "openAPIV3Schema": {"type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    })  # fmt: skip
    wait_for_kind(client, "monitoring.coreos.com/v1", "ServiceMonitor")


def wait_for_kind(client: object, group_version: str, kind: str) -> None:
    """A new CRD's kind is served a moment after its creation."""
    import kubernetes

    deadline = time.monotonic() + 30
    while True:
        try:
            group, version = group_version.split("/")
            found = kubernetes.client.CustomObjectsApi(client).get_api_resources(group, version)
            if any(r.kind == kind for r in found.resources):
                return
        except kubernetes.client.ApiException:
            pass
        assert time.monotonic() < deadline, f"the API server never served {kind}"
        time.sleep(0.2)


def test_helm_install_upgrade_and_uninstall_are_accepted(apiserver: KubeApiServer) -> None:
    core, apps, _ = kube(apiserver)
    service_monitor_crd(apiserver)  # full values ask for one
    install(apiserver, "full", "-f", str(FULL_VALUES), "--set", "fullnameOverride=full")
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(
        kubernetes.config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    )
    monitor = custom.get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", NS, "servicemonitors", "full"
    )
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    names = {d.metadata.name for d in apps.list_namespaced_deployment(NS).items}  # type: ignore[attr-defined]
    assert {"full-head", "full-worker-workers", "full-worker-gpu"} <= names
    more = ("--set", "fullnameOverride=full", "--set", "workerGroups.workers.replicas=5")
    helm_on(apiserver, "upgrade", "full", str(CHART), "-f", str(FULL_VALUES), *more)
    workers = apps.read_namespaced_deployment("full-worker-workers", NS)  # type: ignore[attr-defined]
    assert workers.spec.replicas == 5
    secret = core.read_namespaced_secret("full-auth", NS)  # type: ignore[attr-defined]
    assert base64.b64decode(secret.data["ui-token"]) == b"ui-secret-token"
    helm_on(apiserver, "uninstall", "full")
    left = {d.metadata.name for d in apps.list_namespaced_deployment(NS).items}  # type: ignore[attr-defined]
    assert not left & names
    claims = [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(NS).items]  # type: ignore[attr-defined]
    assert claims == ["full-checkpoints"]  # kept by its resource policy


def test_the_launcher_scales_reports_and_deletes(apiserver: KubeApiServer) -> None:
    core, apps, _ = kube(apiserver)
    service_monitor_crd(apiserver)
    install(apiserver, "wc", "--set", "metrics.serviceMonitor.enabled=true")
    pending_pod(core, "wc-rayflow-worker-workers-abc12", "worker", "workers")
    release = K8sRelease("wc", NS, str(apiserver.kubeconfig))
    status = release.status()
    assert {d["name"] for d in status["deployments"]} == {
        "wc-rayflow-head", "wc-rayflow-worker-workers"
    }  # fmt: skip
    assert [(p["name"], p["phase"]) for p in status["pods"]] == [
        ("wc-rayflow-worker-workers-abc12", "Pending")
    ]
    assert release.scale("workers", 3) == {"name": "wc-rayflow-worker-workers", "from": 1, "to": 3}
    assert apps.read_namespaced_deployment("wc-rayflow-worker-workers", NS).spec.replicas == 3  # type: ignore[attr-defined]
    with pytest.raises(ClusterError, match="no rayflow release 'nope'"):
        K8sRelease("nope", NS, str(apiserver.kubeconfig)).status()
    deleted = release.delete()
    assert "Deployment/wc-rayflow-head" in deleted and "Secret/wc-rayflow-auth" in deleted
    assert "ServiceMonitor/wc-rayflow" in deleted, "the Prometheus Operator's kind too"
    assert not apps.list_namespaced_deployment(
        NS, label_selector="app.kubernetes.io/instance=wc"
    ).items  # type: ignore[attr-defined]
    assert "wc" not in helm_on(apiserver, "list").stdout  # helm's own record went too


def test_the_charts_rbac_allows_the_launcher_and_no_more(
    apiserver: KubeApiServer, tmp_path: Path
) -> None:
    import json

    core, _, auth = kube(apiserver)
    install(apiserver, "wc")
    sa = "system:serviceaccount:streams:wc-rayflow"

    def allowed(verb: str, resource: str, subresource: str = "", group: str = "apps") -> bool:
        review = {"spec": {"user": sa, "resourceAttributes": {
            "namespace": NS, "verb": verb, "group": group, "resource": resource,
            "subresource": subresource}}}  # fmt: skip
        return auth.create_subject_access_review(review).status.allowed  # type: ignore[attr-defined]

    assert allowed("patch", "deployments", "scale")
    assert allowed("get", "pods", "log", group="")
    assert not allowed("delete", "deployments")
    assert not allowed("get", "secrets", group="")
    # the launcher with the ServiceAccount's own token
    token = core.create_namespaced_service_account_token(  # type: ignore[attr-defined]
        "wc-rayflow", NS, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    config = json.loads(apiserver.kubeconfig.read_text())
    config["users"][0]["user"] = {"token": token}
    as_sa = tmp_path / "kubeconfig-sa"
    as_sa.write_text(json.dumps(config))
    release = K8sRelease("wc", NS, str(as_sa))
    assert release.status()["deployments"]
    assert release.scale("workers", 2)["to"] == 2
    with pytest.raises(
        ClusterError, match="forbidden: these credentials may not delete deployments"
    ):
        release.delete()
    helm_on(apiserver, "uninstall", "wc")
