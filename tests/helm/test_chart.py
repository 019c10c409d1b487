"""The Helm chart, rendered and linted by the real helm, validated against Kubernetes' schemas."""

from __future__ import annotations

import base64
import copy
import subprocess
import sys

import kubernetes_validate
import pytest

from tests.helm.chart import (
    CHART,
    FULL_VALUES,
    KUBE_VERSION,
    ROOT,
    env_of,
    find,
    helm,
    one,
    render,
)

WORDCOUNT = str(ROOT / "examples" / "wordcount.yaml")


def validate_all(objects: list[dict]) -> None:
    """Every object of Kubernetes' own kinds against its schema (a ServiceMonitor is the
    Prometheus Operator's: tests/k8s installs it on an API server that has its CRD)."""
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']}: {exc}") from exc


@pytest.mark.parametrize("values", [[], ["-f", str(FULL_VALUES)]], ids=["defaults", "full"])
def test_lint_and_kubernetes_schemas(values: list[str]) -> None:
    lint = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *values)
    assert "0 chart(s) failed" in lint.stdout
    objects = render("--set-file", f"topology={WORDCOUNT}", *values)
    validate_all(objects)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "Role"} <= kinds


def test_strict_validation_catches_an_unknown_field() -> None:
    """The validation above can fail: a misplaced field in a rendered object is caught."""
    head = one(render(), "Deployment", "wc-rayflow-head")
    broken = copy.deepcopy(head)
    broken["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("workerGroups.workers.replicas=-1", "/workerGroups/workers/replicas"),
        ("head.resourcez.cpu=1", "'resourcez' not allowed"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("workerGroups.Big_Group.replicas=1", "Big_Group"),
        ("head.objectStoreFraction=1.5", "/head/objectStoreFraction"),
        ("ports.ui=70000", "/ports/ui"),
    ],
)
def test_schema_rejects_wrong_values_with_their_path(option: str, message: str) -> None:
    done = helm("template", "wc", str(CHART), "--set", option, check=False)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr


def test_defaults() -> None:
    objects = render()
    head = one(objects, "Deployment", "wc-rayflow-head")
    workers = one(objects, "Deployment", "wc-rayflow-worker-workers")
    assert workers["spec"]["replicas"] == 1
    assert head["spec"]["strategy"]["type"] == "Recreate"
    assert not find(objects, "HorizontalPodAutoscaler")
    assert not find(objects, "PersistentVolumeClaim")
    assert not find(objects, "ConfigMap", "wc-rayflow-topology")  # no topology: master only
    pod = head["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "ui"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    secret = one(objects, "Secret", "wc-rayflow-auth")
    tokens = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert len(tokens["ray-token"]) == 32 and len(tokens["ui-token"]) == 32
    assert tokens["ray-token"] != tokens["ui-token"]


@pytest.mark.parametrize("size", ["", "20Gi"])
def test_every_node_has_a_local_volume_for_rocksdb_state(size: str) -> None:
    objects = render("--set", f"state.volume.sizeLimit={size}")
    for name in ("wc-rayflow-head", "wc-rayflow-worker-workers"):
        pod = one(objects, "Deployment", name)["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "state"]
        assert volume["emptyDir"] == ({"sizeLimit": size} if size else {})
        container = pod["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["state"] == env_of(container)["RAYFLOW_STATE_ROCKSDB_DIR"]
    off = one(render("--set", "state.volume.enabled=false"), "Deployment", "wc-rayflow-head")
    container = off["spec"]["template"]["spec"]["containers"][0]
    assert "RAYFLOW_STATE_ROCKSDB_DIR" not in env_of(container)


def test_worker_replicas_resources_and_ray_sizes() -> None:
    objects = render(
        "--set", "workerGroups.workers.replicas=4",
        "--set", "workerGroups.workers.resources.limits.cpu=3",
        "--set", "workerGroups.workers.resources.limits.memory=6Gi",
        "--set", "workerGroups.workers.objectStoreFraction=0.5",
        "--set", "workerGroups.workers.rayResources.big=1",
    )  # fmt: skip
    workers = one(objects, "Deployment", "wc-rayflow-worker-workers")
    assert workers["spec"]["replicas"] == 4
    container = workers["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": 3, "memory": "6Gi"}
    env = env_of(container)
    # ray start's sizes follow the container's own limits, through the downward API
    assert env["RAYFLOW_NUM_CPUS"]["resourceFieldRef"] == {
        "containerName": "worker", "resource": "limits.cpu", "divisor": "1"
    }  # fmt: skip
    assert env["RAYFLOW_MEMORY_BYTES"]["resourceFieldRef"]["resource"] == "limits.memory"
    assert env["RAYFLOW_OBJECT_STORE_PERCENT"] == "50"
    assert env["RAYFLOW_RAY_RESOURCES"] == '{"big":1}'
    assert env["RAYFLOW_HEAD_ADDRESS"] == "wc-rayflow-head:6379"
    assert env["RAY_AUTH_MODE"] == "token"


def test_topology_and_modules_in_a_configmap_mounted_on_the_head() -> None:
    objects = render(
        "--set-file", f"topology={WORDCOUNT}",
        "--set-file", f"modules.wordcount\\.py={ROOT / 'examples' / 'wordcount.py'}",
    )  # fmt: skip
    data = one(objects, "ConfigMap", "wc-rayflow-topology")["data"]
    with open(WORDCOUNT) as f:
        assert data["topology.yaml"] == f.read().rstrip("\n")
    assert "class SplitSentence" in data["wordcount.py"]
    head = one(objects, "Deployment", "wc-rayflow-head")["spec"]["template"]
    mounts = {m["name"]: m["mountPath"] for m in head["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["topology"] == "/etc/rayflow/topology"
    # a new topology rolls the head (and so resubmits)
    other = one(render("--set", "topology=name: x"), "Deployment", "wc-rayflow-head")
    key = "checksum/topology"
    assert (
        other["spec"]["template"]["metadata"]["annotations"][key]
        != (head["metadata"]["annotations"][key])
    )


def test_a_flow_file_in_the_configmap_is_what_the_head_submits() -> None:
    flow = ROOT / "examples" / "streams_wordcount.py"
    objects = render("--set-file", f"flow={flow}", "--set", "flowName=flow")
    data = one(objects, "ConfigMap", "wc-rayflow-topology")["data"]
    assert data["flow.py"] == flow.read_text().rstrip("\n") and "topology.yaml" not in data
    script = one(objects, "ConfigMap", "wc-rayflow-scripts")["data"]["head.sh"]
    assert 'target="flow.py:flow"' in script
    assert 'rayflow submit "$copy/$target"' in script and " -D " not in script
    head = one(objects, "Deployment", "wc-rayflow-head")["spec"]["template"]
    assert "topology" in {m["name"] for m in head["spec"]["containers"][0]["volumeMounts"]}


def test_tokens_given_or_from_an_existing_secret() -> None:
    given = render("--set", "auth.rayToken=r-token", "--set", "auth.uiToken=u-token")
    data = one(given, "Secret", "wc-rayflow-auth")["data"]
    assert base64.b64decode(data["ray-token"]) == b"r-token"
    assert base64.b64decode(data["ui-token"]) == b"u-token"
    existing = render("--set", "auth.existingSecret=corp-tokens")
    assert not find(existing, "Secret")
    for deployment in find(existing, "Deployment"):
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        assert env["RAY_AUTH_TOKEN"]["secretKeyRef"] == {"name": "corp-tokens", "key": "ray-token"}


def test_full_values_autoscaler_groups_checkpoints_and_submit_arguments() -> None:
    objects = render("-f", str(FULL_VALUES))
    gpu = one(objects, "Deployment", "streams-worker-gpu")
    assert "replicas" not in gpu["spec"]  # the autoscaler owns it
    assert one(objects, "Deployment", "streams-worker-workers")["spec"]["replicas"] == 3
    hpa = one(objects, "HorizontalPodAutoscaler", "streams-worker-gpu")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "streams-worker-gpu"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 5)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    claim = one(objects, "PersistentVolumeClaim", "streams-checkpoints")
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    env = env_of(gpu["spec"]["template"]["spec"]["containers"][0])
    assert env["RAYFLOW_CHECKPOINT_STORAGE"] == "/var/lib/rayflow/checkpoints"
    script = one(objects, "ConfigMap", "streams-scripts")["data"]["head.sh"]
    assert "-D 'PARALLELISM=3'" in script
    assert "-c 'batch.size=500'" in script
    assert """--runtime-env '{"env_vars":{"TZ":"UTC"},"pip":["requests"]}'""" in script
    head_env = env_of(one(objects, "Deployment", "streams-head")["spec"]["template"]["spec"]
                      ["containers"][0])  # fmt: skip
    assert head_env["RAYFLOW_UI_PORT"] == "9000"
    ui = one(objects, "Service", "streams-ui")
    assert ui["spec"]["type"] == "LoadBalancer"
    assert ui["spec"]["ports"][0]["port"] == 9000


def test_rbac_grants_only_what_the_launcher_reads_and_scales() -> None:
    objects = render()
    rules = one(objects, "Role", "wc-rayflow")["rules"]
    granted = {(r, v) for rule in rules for r in rule["resources"] for v in rule["verbs"]}
    assert ("deployments/scale", "patch") in granted
    assert ("pods/log", "get") in granted
    assert not any(v in ("delete", "create", "*") for _, v in granted)
    assert not any(r in ("secrets", "*") for r, _ in granted)
    binding = one(objects, "RoleBinding", "wc-rayflow")
    assert binding["subjects"][0]["name"] == "wc-rayflow"
    assert not find(render("--set", "rbac.create=false"), "Role")


def test_prometheus_finds_metrics_by_annotations_or_a_service_monitor() -> None:
    plain = render()
    ui = one(plain, "Service", "wc-rayflow-ui")
    assert "prometheus.io/scrape" not in (ui["metadata"].get("annotations") or {})
    assert not find(plain, "ServiceMonitor"), "off by default: it needs the operator's CRDs"
    objects = render(
        "--set", "metrics.scrapeAnnotations=true", "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.serviceMonitor.labels.release=prom", "--set", "service.annotations.a=b",
    )  # fmt: skip
    ui = one(objects, "Service", "wc-rayflow-ui")
    assert ui["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8744",
        "prometheus.io/path": "/metrics",
        "a": "b",
    }
    monitor = one(objects, "ServiceMonitor", "wc-rayflow")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "ui", "path": "/metrics", "interval": "15s"}]
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [o for o in objects if o["kind"] == "Service"
                and selector.items() <= o["metadata"]["labels"].items()]  # fmt: skip
    assert [o["metadata"]["name"] for o in services] == ["wc-rayflow-ui"], "only the UI's port"
    assert [p["name"] for p in services[0]["spec"]["ports"]] == ["ui"]


def test_readme_lists_every_value() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chart_readme.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
