"""A recording stand-in for the Kubernetes API server, for unit tests of the launcher's calls.

It keeps objects in memory (seeded from the chart as ``helm template`` renders it), answers the
list/get/patch/delete calls the launcher makes with the shapes the real server uses, records every
request, and refuses writes to the token ``reader`` with a 403 Status as RBAC would. The real API
server's tests (the API-server issue) replace it; until then it pins the requests' shapes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

PLURALS = {
    "Deployment": "deployments", "Service": "services", "ConfigMap": "configmaps",
    "Secret": "secrets", "ServiceAccount": "serviceaccounts", "Role": "roles",
    "RoleBinding": "rolebindings", "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PersistentVolumeClaim": "persistentvolumeclaims", "Pod": "pods",
    "ServiceMonitor": "servicemonitors",
}  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    content_type: str


@dataclass
class FakeApiServer:
    namespace: str
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)

    def add(self, obj: dict[str, Any]) -> None:
        obj.setdefault("metadata", {})["namespace"] = self.namespace
        _quantities_as_strings(obj)
        self.objects[(PLURALS[obj["kind"]], obj["metadata"]["name"])] = obj

    def names(self, plural: str) -> list[str]:
        return sorted(name for (p, name) in self.objects if p == plural)

    def handle(self, method: str, url: str, body: Any, token: str) -> tuple[int, Any]:
        parts = urlparse(url)
        segments = parts.path.strip("/").split("/")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        # /api/v1/namespaces/NS/PLURAL[/NAME[/SUB]] or /apis/GROUP/VERSION/namespaces/...
        rest = segments[segments.index("namespaces") + 1 :]
        namespace, plural, name, sub = [*rest, None, None][:4]
        if namespace != self.namespace:
            return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}
        if method in ("PATCH", "DELETE", "PUT", "POST") and token == "reader":
            return 403, status(
                403, "Forbidden",
                f'{plural} "{name}" is forbidden: User "system:serviceaccount:{namespace}:reader"'
                f' cannot {method.lower()} resource "{plural}" in the namespace "{namespace}"',
            )  # fmt: skip
        if name is None:
            wanted = dict(
                pair.split("=", 1) for pair in query.get("labelSelector", "").split(",") if pair
            )
            items = [
                o
                for (p, _), o in sorted(self.objects.items())
                if p == plural
                and all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
            ]
            return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}
        obj = self.objects.get((plural, name))
        if obj is None:
            return 404, status(404, "NotFound", f'{plural} "{name}" not found')
        if method == "GET" and sub == "log":
            text = self.logs.get(name, "")
            lines = int(query.get("tailLines", 0))
            if lines:
                text = "\n".join(text.splitlines()[-lines:])
            return 200, text
        if method == "PATCH" and sub == "scale":
            obj["spec"]["replicas"] = body["spec"]["replicas"]
            return 200, {
                "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": name},
                "spec": {"replicas": obj["spec"]["replicas"]}, "status": {"replicas": 0},
            }  # fmt: skip
        if method == "DELETE":
            return 200, self.objects.pop((plural, name))  # the server answers the object
        if method == "GET":
            return 200, obj
        return 405, status(405, "MethodNotAllowed", method)


def _quantities_as_strings(node: Any) -> None:
    """The server answers every resource quantity as a string (``cpu: 1`` reads back ``"1"``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("limits", "requests") and isinstance(value, dict):
                node[key] = {k: str(v) for k, v in value.items()}
            else:
                _quantities_as_strings(value)
    elif isinstance(node, list):
        for item in node:
            _quantities_as_strings(item)


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message, "reason": reason, "code": code,
    }  # fmt: skip


@contextmanager
def serve(fake: FakeApiServer) -> Iterator[str]:
    """Serve ``fake`` on 127.0.0.1; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
            path, _, query = self.path.partition("?")
            fake.requests.append(
                Request(
                    self.command,
                    path,
                    {k: v[0] for k, v in parse_qs(query).items()},
                    body,
                    self.headers.get("Content-Type", ""),
                )
            )
            code, answer = fake.handle(self.command, self.path, body, bearer)
            data = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
            self.send_response(code)
            kind = "text/plain" if isinstance(answer, str) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_DELETE = do_PUT = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def kubeconfig(folder: Path, server: str, token: str) -> Path:
    """A kubeconfig file for ``server`` with a bearer ``token``."""
    path = folder / f"kubeconfig-{token}"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": token, "user": {"token": token}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": token}}],
                "current-context": "fake",
            }
        )
    )
    return path
