"""A real Kubernetes API server on 127.0.0.1 for the tests: kube-apiserver (built by
scripts/ensure-kube-apiserver.sh) backed by Debian's etcd (scripts/ensure-etcd.sh), both in a fresh
folder on free ports, stopped by their process ids. No kubelet, scheduler or controller-manager
runs: what the tests check is what the API server itself decides (admission, validation, RBAC).

    >>> with KubeApiServer() as api:                   # doctest: +SKIP
    ...     api.kubeconfig                             # an admin kubeconfig (static token)

    python scripts/kube_apiserver.py run   # a server until Ctrl-C or SIGTERM; prints its kubeconfig
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.services import MissingPart, Service, built_binary, free_port, serve

HERE = Path(__file__).resolve().parent
ADMIN_TOKEN = "rayflow-test-admin-token"  # static, in a token file only this server reads


def kube_apiserver_binary() -> str:
    found = os.environ.get("RAYFLOW_KUBE_APISERVER")
    if found:
        return found
    return built_binary(HERE / "ensure-kube-apiserver.sh", "kube-apiserver")


class KubeApiServer(Service):
    prefix = "rayflow-kube-"

    def __init__(self, folder: str | None = None) -> None:
        super().__init__(folder)
        self.etcd_port, self.etcd_peer_port, self.port = free_port(), free_port(), free_port()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.folder / "kubeconfig"

    def start(self, timeout: float = 120.0) -> KubeApiServer:
        etcd = shutil.which("etcd")
        if etcd is None:
            raise MissingPart("etcd is missing: bash scripts/ensure-etcd.sh installs it")
        binary = kube_apiserver_binary()
        self.folder.mkdir(parents=True, exist_ok=True)
        client = f"http://127.0.0.1:{self.etcd_port}"
        self.spawn(
            [etcd, "--data-dir", str(self.folder / "etcd"), "--listen-client-urls", client,
             "--advertise-client-urls", client,
             "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
             "--initial-cluster", f"default=http://127.0.0.1:{self.etcd_peer_port}"],
            "etcd.log", {**os.environ, "ETCD_LOG_LEVEL": "warn"},
        )  # fmt: skip
        key, pub = self.folder / "sa.key", self.folder / "sa.pub"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)],
                       check=True, capture_output=True)  # fmt: skip
        (self.folder / "tokens.csv").write_text(f"{ADMIN_TOKEN},admin,admin,system:masters\n")
        self.spawn(
            [binary, f"--etcd-servers={client}", "--bind-address=127.0.0.1",
             "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
             f"--cert-dir={self.folder / 'certs'}",
             f"--token-auth-file={self.folder / 'tokens.csv'}",
             "--authorization-mode=RBAC", "--service-cluster-ip-range=10.96.0.0/16",
             "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
             f"--service-account-key-file={pub}", f"--service-account-signing-key-file={key}",
             "--enable-priority-and-fairness=false", "--watch-cache=false",
             "--endpoint-reconciler-type=none"],
            "kube-apiserver.log",
        )  # fmt: skip
        self._write_kubeconfig()
        self._wait_ready(timeout)
        return self

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "test", "cluster": {
                        "server": self.url, "insecure-skip-tls-verify": True}}],
                    "users": [{"name": "admin", "user": {"token": ADMIN_TOKEN}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                    "current-context": "test",
                }
            )
        )  # fmt: skip

    def _wait_ready(self, timeout: float) -> None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        request = urllib.request.Request(
            f"{self.url}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        deadline = time.monotonic() + timeout
        while True:
            for proc, log in zip(self.procs, ("etcd.log", "kube-apiserver.log"), strict=True):
                if proc.poll() is not None:
                    tail = (self.folder / log).read_text(errors="replace")[-3000:]
                    self.stop()
                    raise MissingPart(f"{log[:-4]} exited:\n{tail}")
            try:
                with urllib.request.urlopen(request, timeout=2, context=context) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                tail = (self.folder / "kube-apiserver.log").read_text(errors="replace")[-3000:]
                self.stop()
                raise MissingPart(f"kube-apiserver was not ready in {timeout:g}s:\n{tail}")
            time.sleep(0.5)


def main(argv: list[str]) -> int:
    if argv[:1] != ["run"]:
        print(__doc__, file=sys.stderr)
        return 2

    def announce(api: KubeApiServer) -> None:
        print(f"kube-apiserver on {api.url}; Ctrl-C or SIGTERM stops it.", flush=True)
        print(f"  export KUBECONFIG={api.kubeconfig}", flush=True)

    return serve(KubeApiServer(), announce)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
