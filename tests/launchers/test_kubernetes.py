"""``rayflow k8s``: the launcher's requests against a recording API server seeded with the
objects the chart renders (the real API server arrives with its own issue)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rayflow.cli import main
from rayflow.errors import ClusterError
from rayflow.launchers.kubernetes import K8sRelease
from tests.helm.chart import FULL_VALUES, render
from tests.launchers.fake_apiserver import FakeApiServer, kubeconfig, serve

NS = "streams"


def pod(name: str, component: str, group: str | None = None) -> dict:
    labels = {"app.kubernetes.io/instance": "wc", "app.kubernetes.io/component": component}
    if group:
        labels["rayflow.io/worker-group"] = group
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": component, "image": "rayflow/rayflow:0.1.0"}]},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False",
                            "message": "0/0 nodes are available"}],
        },
    }  # fmt: skip


def seeded(*options: str) -> FakeApiServer:
    fake = FakeApiServer(NS)
    for obj in render(*options):
        fake.add(obj)
    fake.add(pod("wc-rayflow-head-abc", "head"))
    fake.add(pod("wc-rayflow-worker-workers-xyz", "worker", "workers"))
    fake.add({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
              "metadata": {"name": "sh.helm.release.v1.wc.v1",
                           "labels": {"owner": "helm", "name": "wc"}}})  # fmt: skip
    fake.logs["wc-rayflow-head-abc"] = "ray started\nsubmitted topology 'wordcount'\n"
    return fake


@pytest.fixture
def fake() -> FakeApiServer:
    return seeded("--set", "checkpoints.persistence.enabled=true")


@pytest.fixture
def server(fake: FakeApiServer) -> Iterator[str]:
    with serve(fake) as url:
        yield url


@pytest.fixture
def admin(server: str, tmp_path: Path) -> K8sRelease:
    return K8sRelease("wc", NS, str(kubeconfig(tmp_path, server, "admin")))


def test_status_lists_the_release_by_its_instance_label(
    admin: K8sRelease, fake: FakeApiServer
) -> None:
    status = admin.status()
    assert [d["name"] for d in status["deployments"]] == [
        "wc-rayflow-head", "wc-rayflow-worker-workers"
    ]  # fmt: skip
    assert {p["name"]: p["phase"] for p in status["pods"]} == {
        "wc-rayflow-head-abc": "Pending", "wc-rayflow-worker-workers-xyz": "Pending"
    }  # fmt: skip
    assert status["pods"][0]["reason"] == "0/0 nodes are available"
    assert {s["name"] for s in status["services"]} == {"wc-rayflow-head", "wc-rayflow-ui"}
    lists = [r for r in fake.requests if r.method == "GET"]
    assert {r.path for r in lists} == {
        f"/apis/apps/v1/namespaces/{NS}/deployments",
        f"/api/v1/namespaces/{NS}/pods",
        f"/api/v1/namespaces/{NS}/services",
        f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers",
    }
    assert all(r.query["labelSelector"] == "app.kubernetes.io/instance=wc" for r in lists)


def test_scale_patches_the_worker_deployments_scale(admin: K8sRelease, fake: FakeApiServer) -> None:
    assert admin.scale("workers", 3) == {"name": "wc-rayflow-worker-workers", "from": 1, "to": 3}
    patch = [r for r in fake.requests if r.method == "PATCH"]
    assert len(patch) == 1
    assert (
        patch[0].path
        == f"/apis/apps/v1/namespaces/{NS}/deployments/wc-rayflow-worker-workers/scale"
    )
    assert patch[0].body == {"spec": {"replicas": 3}}
    assert fake.objects[("deployments", "wc-rayflow-worker-workers")]["spec"]["replicas"] == 3
    with pytest.raises(ClusterError, match=r"no worker group 'gpu' \(groups: workers\)"):
        admin.scale("gpu", 1)


def test_scale_refuses_an_autoscaled_group(tmp_path: Path) -> None:
    fake = seeded("-f", str(FULL_VALUES), "--set", "fullnameOverride=")
    with serve(fake) as url:
        release = K8sRelease("wc", NS, str(kubeconfig(tmp_path, url, "admin")))
        with pytest.raises(ClusterError, match=r"autoscaled.*helm upgrade"):
            release.scale("gpu", 2)
        assert release.scale("workers", 5)["to"] == 5
    assert not [r for r in fake.requests if r.method == "PATCH" and "gpu" in r.path]


def test_logs_of_the_head_with_tail(admin: K8sRelease, fake: FakeApiServer) -> None:
    assert list(admin.logs(tail=1)) == [("wc-rayflow-head-abc", "submitted topology 'wordcount'")]
    read = [r for r in fake.requests if r.path.endswith("/log")]
    assert read[0].path == f"/api/v1/namespaces/{NS}/pods/wc-rayflow-head-abc/log"
    assert read[0].query["tailLines"] == "1"
    with pytest.raises(ClusterError, match="no pods of worker group 'gpu'"):
        list(admin.logs(group="gpu"))


def test_delete_removes_what_the_release_made_and_keeps_checkpoints(
    admin: K8sRelease, fake: FakeApiServer
) -> None:
    deleted = admin.delete()
    assert "Deployment/wc-rayflow-head" in deleted
    assert "Secret/sh.helm.release.v1.wc.v1" in deleted  # helm forgets the release too
    left = {plural for plural, _ in fake.objects}
    assert left == {"persistentvolumeclaims", "pods"}  # pods go with their Deployments
    with pytest.raises(ClusterError, match="no rayflow release 'wc' in namespace 'streams'"):
        admin.delete()


def test_forbidden_and_missing_release_errors_say_what_to_do(
    server: str, tmp_path: Path, fake: FakeApiServer
) -> None:
    reader = K8sRelease("wc", NS, str(kubeconfig(tmp_path, server, "reader")))
    assert reader.status()["deployments"]  # reading is allowed
    with pytest.raises(ClusterError, match=r"forbidden: .* may not patch deployments/scale"):
        reader.scale("workers", 2)
    with pytest.raises(ClusterError, match=r"no rayflow release 'nope'.*helm list -n streams"):
        K8sRelease("nope", NS, str(kubeconfig(tmp_path, server, "admin"))).status()


def test_cli_status_and_scale(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(kubeconfig(tmp_path, server, "admin"))
    common = ["-n", NS, "--kubeconfig", config]
    assert main(["k8s", "status", "wc", *common]) == 0
    out = capsys.readouterr().out
    assert "wc-rayflow-worker-workers  worker workers  0/1" in out
    assert "wc-rayflow-head-abc" in out and "Pending" in out
    assert main(["k8s", "scale", "wc", "--replicas", "2", *common]) == 0
    assert "from 1 to 2 pods" in capsys.readouterr().out
    assert main(["k8s", "scale", "wc", "--group", "nope", "--replicas", "2", *common]) == 1
    assert "no worker group 'nope'" in capsys.readouterr().err
