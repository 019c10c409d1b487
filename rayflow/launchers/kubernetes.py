"""The ``kubernetes`` launcher: look after a Helm release of the ``helm/rayflow`` chart.

It reads and changes what the chart made, found by the release's
``app.kubernetes.io/instance`` label, through the official ``kubernetes`` client, with the
kubeconfig (or, inside a pod, the pod's ServiceAccount)::

    release = K8sRelease("wc", namespace="streams")
    release.status()["deployments"][0]["name"]     # 'wc-rayflow-head'
    release.scale("workers", 3)                    # {'name': ..., 'from': 1, 'to': 3}

The RBAC the chart grants its ServiceAccount covers ``status``, ``scale`` and ``logs``;
``delete`` is an operator's action and needs more (it is refused in-cluster, with a message).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rayflow.errors import ClusterError
from rayflow.extras import require

INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
GROUP = "rayflow.io/worker-group"


def _client() -> Any:
    return require("kubernetes", "kubernetes", "the kubernetes launcher", ClusterError)


@dataclass
class K8sRelease:
    """One release of the rayflow chart in one namespace.

    ``kubeconfig``/``context`` pick the cluster as kubectl would; with neither and no
    ``~/.kube/config``, the in-cluster ServiceAccount is used.
    """

    release: str
    namespace: str = "default"
    kubeconfig: str | None = None
    context: str | None = None

    def __post_init__(self) -> None:
        k8s = _client()
        self._api = _load_config(k8s, self.kubeconfig, self.context)
        self.core = k8s.client.CoreV1Api(self._api)
        self.apps = k8s.client.AppsV1Api(self._api)
        self.autoscaling = k8s.client.AutoscalingV2Api(self._api)
        self.rbac = k8s.client.RbacAuthorizationV1Api(self._api)
        self.custom = k8s.client.CustomObjectsApi(self._api)
        self._exc = k8s.client.ApiException

    @property
    def selector(self) -> str:
        return f"{INSTANCE}={self.release}"

    def status(self) -> dict[str, Any]:
        """The release's Deployments, pods, Services and autoscalers, as plain dicts."""
        deployments = self._deployments()
        pods = self._call("list", "pods", self.core.list_namespaced_pod)
        services = self._call("list", "services", self.core.list_namespaced_service)
        hpas = self._call(
            "list",
            "horizontalpodautoscalers",
            self.autoscaling.list_namespaced_horizontal_pod_autoscaler,
        )
        return {
            "release": self.release,
            "namespace": self.namespace,
            "deployments": [_deployment_row(d) for d in deployments],
            "pods": [_pod_row(p) for p in pods.items],
            "services": [
                {
                    "name": s.metadata.name,
                    "type": s.spec.type,
                    "cluster_ip": s.spec.cluster_ip,
                    "ports": [f"{p.name}:{p.port}" for p in s.spec.ports or ()],
                }
                for s in services.items
            ],
            "autoscalers": [
                {
                    "name": h.metadata.name,
                    "target": h.spec.scale_target_ref.name,
                    "min": h.spec.min_replicas,
                    "max": h.spec.max_replicas,
                    "current": (h.status.current_replicas if h.status else None),
                }
                for h in hpas.items
            ],
        }

    def scale(self, group: str, replicas: int) -> dict[str, Any]:
        """Set the replicas of worker group ``group``; returns ``{"name", "from", "to"}``."""
        if replicas < 0:
            raise ClusterError(f"replicas must be 0 or more, not {replicas}")
        deployment = self._worker_deployment(group)
        name = deployment.metadata.name
        hpas = self._call(
            "list",
            "horizontalpodautoscalers",
            self.autoscaling.list_namespaced_horizontal_pod_autoscaler,
        )
        if any(h.spec.scale_target_ref.name == name for h in hpas.items):
            raise ClusterError(
                f"worker group '{group}' is autoscaled (HorizontalPodAutoscaler {name}): "
                f"change workerGroups.{group}.autoscaling.minReplicas/maxReplicas with "
                "helm upgrade instead"
            )
        before = deployment.spec.replicas
        self._call(
            "patch",
            "deployments/scale",
            self.apps.patch_namespaced_deployment_scale,
            name=name,
            body={"spec": {"replicas": replicas}},
            selector=False,
        )
        return {"name": name, "from": before, "to": replicas}

    def logs(
        self,
        group: str | None = None,
        pod: str | None = None,
        tail: int | None = None,
        follow: bool = False,
    ) -> Iterator[tuple[str, str]]:
        """``(pod, line)`` of the head's log (default), a worker group's pods, or one pod."""
        if pod:
            names = [pod]
        else:
            component = f"{COMPONENT}=worker,{GROUP}={group}" if group else f"{COMPONENT}=head"
            listed = self._call(
                "list",
                "pods",
                self.core.list_namespaced_pod,
                label_selector=f"{self.selector},{component}",
            )
            names = sorted(p.metadata.name for p in listed.items)
            if not names:
                what = f"worker group '{group}'" if group else "the head"
                raise ClusterError(f"no pods of {what} in release '{self.release}' yet")
        for name in names:
            kwargs: dict[str, Any] = {"name": name, "selector": False}
            if tail is not None:
                kwargs["tail_lines"] = tail
            if follow and len(names) == 1:
                kwargs.update(follow=True, _preload_content=False)
                response = self._call(
                    "get", "pods/log", self.core.read_namespaced_pod_log, **kwargs
                )
                for raw in response.stream():
                    for line in raw.decode(errors="replace").splitlines():
                        yield name, line
                return
            text = self._call("get", "pods/log", self.core.read_namespaced_pod_log, **kwargs)
            for line in text.splitlines():
                yield name, line

    def delete(self, keep_checkpoints: bool = True) -> list[str]:
        """Delete everything the release made (and Helm's record of it); returns ``Kind/name``.

        The checkpoint claim stays unless ``keep_checkpoints`` is false (the chart marks it
        ``helm.sh/resource-policy: keep`` for the same reason).
        """
        self._deployments()  # a clear error when there is no such release
        kinds: list[tuple[str, str, Any, Any, str]] = [
            ("HorizontalPodAutoscaler", "horizontalpodautoscalers",
             self.autoscaling.list_namespaced_horizontal_pod_autoscaler,
             self.autoscaling.delete_namespaced_horizontal_pod_autoscaler, self.selector),
            ("Deployment", "deployments", self.apps.list_namespaced_deployment,
             self.apps.delete_namespaced_deployment, self.selector),
            ("Service", "services", self.core.list_namespaced_service,
             self.core.delete_namespaced_service, self.selector),
            ("ConfigMap", "configmaps", self.core.list_namespaced_config_map,
             self.core.delete_namespaced_config_map, self.selector),
            ("Secret", "secrets", self.core.list_namespaced_secret,
             self.core.delete_namespaced_secret, self.selector),
            ("RoleBinding", "rolebindings", self.rbac.list_namespaced_role_binding,
             self.rbac.delete_namespaced_role_binding, self.selector),
            ("Role", "roles", self.rbac.list_namespaced_role,
             self.rbac.delete_namespaced_role, self.selector),
            ("ServiceAccount", "serviceaccounts", self.core.list_namespaced_service_account,
             self.core.delete_namespaced_service_account, self.selector),
            # Helm's own record of the release, so `helm list` forgets it too.
            ("Secret", "secrets", self.core.list_namespaced_secret,
             self.core.delete_namespaced_secret, f"owner=helm,name={self.release}"),
        ]  # fmt: skip
        if not keep_checkpoints:
            kinds.append(
                ("PersistentVolumeClaim", "persistentvolumeclaims",
                 self.core.list_namespaced_persistent_volume_claim,
                 self.core.delete_namespaced_persistent_volume_claim, self.selector)
            )  # fmt: skip
        deleted = []
        for kind, resource, lister, deleter, selector in kinds:
            for item in self._call("list", resource, lister, label_selector=selector).items:
                self._call("delete", resource, deleter, name=item.metadata.name, selector=False)
                deleted.append(f"{kind}/{item.metadata.name}")
        return deleted + self._delete_service_monitors()

    def _delete_service_monitors(self) -> list[str]:
        """The chart's optional ServiceMonitor (``metrics.serviceMonitor``): a Prometheus
        Operator kind, absent (404) where the operator's CRDs are not installed."""
        group = ("monitoring.coreos.com", "v1")
        try:
            found = self.custom.list_namespaced_custom_object(
                *group, self.namespace, "servicemonitors", label_selector=self.selector
            )
        except self._exc as exc:
            if getattr(exc, "status", None) == 404:
                return []
            raise _api_error(exc, "list", "servicemonitors", self.namespace) from None
        deleted = []
        for item in found.get("items", []):
            name = item["metadata"]["name"]
            try:
                self.custom.delete_namespaced_custom_object(
                    *group, self.namespace, "servicemonitors", name
                )
            except self._exc as exc:
                raise _api_error(exc, "delete", "servicemonitors", self.namespace) from None
            deleted.append(f"ServiceMonitor/{name}")
        return deleted

    def _deployments(self) -> list[Any]:
        items = self._call("list", "deployments", self.apps.list_namespaced_deployment).items
        if not items:
            raise ClusterError(
                f"no rayflow release '{self.release}' in namespace '{self.namespace}' "
                f"(no Deployment labelled {self.selector}); `helm list -n {self.namespace}` "
                "shows the releases"
            )
        return items

    def _worker_deployment(self, group: str) -> Any:
        workers = {
            (d.metadata.labels or {}).get(GROUP): d
            for d in self._deployments()
            if (d.metadata.labels or {}).get(COMPONENT) == "worker"
        }
        if group not in workers:
            known = ", ".join(sorted(g for g in workers if g)) or "none"
            raise ClusterError(
                f"release '{self.release}' has no worker group '{group}' (groups: {known})"
            )
        return workers[group]

    def _call(self, verb: str, resource: str, method: Any, selector: bool = True, **kw: Any) -> Any:
        """Call the API, turning its errors into messages that say what to do."""
        if selector:
            kw.setdefault("label_selector", self.selector)
        try:
            return method(namespace=self.namespace, **kw)
        except self._exc as exc:
            raise _api_error(exc, verb, resource, self.namespace) from None
        except OSError as exc:  # urllib3's connection errors are OSErrors
            host = self._api.configuration.host
            raise ClusterError(f"cannot reach the Kubernetes API server at {host}: {exc}") from exc


def _load_config(k8s: Any, kubeconfig: str | None, context: str | None) -> Any:
    """An ``ApiClient`` from the kubeconfig (``KUBECONFIG``, ``~/.kube/config``) or in-cluster."""
    try:
        return k8s.config.new_client_from_config(config_file=kubeconfig, context=context)
    except (k8s.config.ConfigException, FileNotFoundError, TypeError) as from_file:
        if kubeconfig or context:
            raise ClusterError(f"cannot use kubeconfig {kubeconfig or ''}: {from_file}") from None
        try:
            configuration = k8s.client.Configuration()
            k8s.config.load_incluster_config(client_configuration=configuration)
        except k8s.config.ConfigException:
            raise ClusterError(
                "no Kubernetes credentials: no kubeconfig (--kubeconfig, KUBECONFIG or "
                "~/.kube/config) and not inside a pod"
            ) from None
        return k8s.client.ApiClient(configuration)


def _api_error(exc: Any, verb: str, resource: str, namespace: str) -> ClusterError:
    import json

    try:
        message = json.loads(exc.body).get("message", exc.reason)
    except (TypeError, ValueError, AttributeError):
        message = exc.reason
    if exc.status == 403:
        return ClusterError(
            f"forbidden: these credentials may not {verb} {resource} in namespace "
            f"'{namespace}' ({message}). The chart's ServiceAccount may read pods, logs and "
            "Deployments and scale worker groups; run other verbs with an operator's kubeconfig"
        )
    if exc.status == 401:
        return ClusterError(f"the API server refused the credentials: {message}")
    if exc.status == 404:
        return ClusterError(f"not found: {message}")
    return ClusterError(f"Kubernetes API error {exc.status} on {verb} {resource}: {message}")


def _deployment_row(d: Any) -> dict[str, Any]:
    labels = d.metadata.labels or {}
    status = d.status
    return {
        "name": d.metadata.name,
        "component": labels.get(COMPONENT, ""),
        "group": labels.get(GROUP, ""),
        "replicas": d.spec.replicas,
        "ready": (status.ready_replicas or 0) if status else 0,
        "available": (status.available_replicas or 0) if status else 0,
    }


def _pod_row(p: Any) -> dict[str, Any]:
    labels = p.metadata.labels or {}
    statuses = (p.status.container_statuses or []) if p.status else []
    waiting = [s.state.waiting.reason for s in statuses if s.state and s.state.waiting]
    conditions = (p.status.conditions or []) if p.status else []
    unscheduled = [
        c.message for c in conditions if c.type == "PodScheduled" and c.status == "False"
    ]
    return {
        "name": p.metadata.name,
        "component": labels.get(COMPONENT, ""),
        "group": labels.get(GROUP, ""),
        "phase": p.status.phase if p.status else "Unknown",
        "ready": sum(1 for s in statuses if s.ready),
        "containers": len(p.spec.containers) if p.spec else 0,
        "restarts": sum(s.restart_count for s in statuses),
        "node": (p.spec.node_name or "") if p.spec else "",
        "reason": ", ".join(waiting + unscheduled),
    }
