"""The ``yarn`` launcher: a Ray cluster and a topology as one YARN application, through skein.

``rayflow yarn submit topology.yaml --workers 2`` builds a skein ``ApplicationSpec`` with two
services:

- ``ray-head`` (1 container): starts Ray (``ray start --head --block``: a daemonized start would
  end the container) with ``--num-cpus``, ``--memory`` and ``--object-store-memory`` taken from the
  container's resources, then the rayflow job master with its UI, publishes both addresses in
  skein's key-value store (and the UI as a page of skein's web UI, the application's tracking
  URL), and submits the topology;
- ``ray-worker`` (N containers): reads the head's address from the key-value store and joins it.

Ray's token authentication stays on: a fresh token travels as a file of the application (readable
by its containers only). The Python environment is an archive (``--env``, from venv-pack or
conda-pack) unpacked in every container, or a Python that exists on every node (``--python``).
The topology's folder travels as an archive, so its modules import in every container.
``pip install 'rayflow[yarn]'`` brings skein (and venv-pack).

    >>> options = YarnOptions(workers=2, worker_memory="2 GiB")
    >>> options.worker_resources().memory, options.worker_resources().vcores
    (2048, 1)
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayflow.errors import ClusterError, UsageError
from rayflow.extras import require

HEAD, WORKER = "ray-head", "ray-worker"
TOPOLOGY_FILE = "topology.yaml"  # the topology's name inside the shipped folder
EXCLUDED = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", "node_modules"}


def _skein() -> Any:
    return require("skein", "yarn", "the YARN launcher", ClusterError)


@dataclass
class YarnOptions:
    """What ``rayflow yarn submit`` takes besides the topology."""

    workers: int = 1
    worker_vcores: int = 1
    worker_memory: str = "4 GiB"
    head_vcores: int = 1
    head_memory: str = "4 GiB"
    object_store_fraction: float = 0.3
    queue: str = "default"
    name: str | None = None
    env_archive: str | None = None
    python: str | None = None
    files: list[str] = field(default_factory=list)
    defines: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    ray_port: int = 6379
    ui_port: int = 8744
    ui_token: str = ""
    loopback_ips: str | None = None
    """Single-host test clusters only: ``127.0.0.`` gives the head ``127.0.0.2`` and worker *i*
    ``127.0.0.(3+i)`` (Ray rewrites 127.0.0.1); by default Ray finds each node's address."""
    principal: str | None = None
    keytab: str | None = None

    def head_resources(self) -> Any:
        return _skein().Resources(memory=self.head_memory, vcores=self.head_vcores)

    def worker_resources(self) -> Any:
        return _skein().Resources(memory=self.worker_memory, vcores=self.worker_vcores)


def environment(options: YarnOptions) -> tuple[dict[str, Any], str]:
    """The files and the shell lines that give a container the Python environment."""
    skein = _skein()
    if options.env_archive:
        if not os.path.isfile(options.env_archive):
            raise UsageError(f"--env: no such archive {options.env_archive!r}")
        files = {"environment": skein.File(os.path.abspath(options.env_archive), type="archive")}
        # venv-pack and conda-pack archives both carry bin/activate, which fixes their paths.
        return files, "source environment/bin/activate\n"
    python = options.python or sys.executable
    return {}, f'export PATH={shlex.quote(str(Path(python).parent))}:"$PATH"\n'


def _ray_sizes(memory_mb: int, vcores: int, fraction: float) -> str:
    store = int(memory_mb * fraction) * 1024 * 1024
    task_memory = memory_mb * 1024 * 1024 - store
    return f"--num-cpus={vcores} --memory={task_memory} --object-store-memory={store}"


def _node_ip(options: YarnOptions, head: bool) -> str:
    """Shell that sets ``NODE_IP``, the address this node's Ray uses."""
    if not options.loopback_ips:  # the address Ray itself would pick for this node
        ip = "import ray._private.services as s; print(s.get_node_ip_address())"
        return f'NODE_IP="$(python -c {shlex.quote(ip)})"\n'
    prefix = shlex.quote(options.loopback_ips)
    if head:
        return f"NODE_IP={prefix}2\n"
    return f"NODE_IP={prefix}$((3 + ${{SKEIN_CONTAINER_ID##*_}}))\n"


def _prelude(options: YarnOptions, setup: str, head: bool) -> str:
    """What both services start with: strict shell, Python, Ray's token, the node's address."""
    return (
        "set -euo pipefail\n"
        + setup
        + 'export RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$(cat ray-token)"\n'
        + _node_ip(options, head)
    )


def head_script(options: YarnOptions, setup: str, target: str = TOPOLOGY_FILE) -> str:
    """The ``ray-head`` service's script; ``target``: what it submits from the shipped folder
    (the topology YAML, or a flow file as ``file.py:name``)."""
    defines = " ".join(f"-D {shlex.quote(f'{k}={v}')}" for k, v in options.defines.items())
    config = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in options.config.items())
    sizes = _ray_sizes(options.head_resources().memory, options.head_vcores,
                       options.object_store_fraction)  # fmt: skip
    return (
        _prelude(options, setup, head=True)
        + 'export RAYFLOW_UI_TOKEN="$(cat ui-token)"\n'
        + f"PORT={options.ray_port}\n"
        + "ray start --head --block --disable-usage-stats --include-dashboard=false "
        + '--node-ip-address="$NODE_IP" '
        + f'--port="$PORT" {sizes} &\n'
        + "RAY_PID=$!\n"
        + 'until ray health-check --address "$NODE_IP:$PORT" >/dev/null 2>&1; do\n'
        + '  kill -0 "$RAY_PID"\n  sleep 1\ndone\n'
        + 'rayflow master --address "$NODE_IP:$PORT" --ui-host "$NODE_IP" '
        + f"--ui-port {options.ui_port}\n"
        + 'python -m rayflow.launchers.yarn_container publish --ray "$NODE_IP:$PORT" '
        + f'--ui "http://$NODE_IP:{options.ui_port}"\n'
        + f"rayflow submit {shlex.quote('topology/' + target)} "
        + f'--address "$NODE_IP:$PORT" {defines} {config}\n'
        + 'echo "rayflow: topology submitted; Ray head $NODE_IP:$PORT"\n'
        + 'wait "$RAY_PID"\n'
    )


def worker_script(options: YarnOptions, setup: str) -> str:
    sizes = _ray_sizes(options.worker_resources().memory, options.worker_vcores,
                       options.object_store_fraction)  # fmt: skip
    return (
        _prelude(options, setup, head=False)
        + 'HEAD="$(python -m rayflow.launchers.yarn_container head-address)"\n'
        + 'echo "rayflow: joining the Ray head at $HEAD"\n'
        + 'exec ray start --block --disable-usage-stats --address="$HEAD" '
        + f'--node-ip-address="$NODE_IP" {sizes}\n'
    )


def submit_target(topology_path: str) -> str:
    """What the head submits from the shipped folder: the YAML as ``topology.yaml``, a flow
    file (``flow.py[:name]``) under its own name.

    >>> submit_target("jobs/wc.yaml"), submit_target("jobs/flow.py"), submit_target("f.py:wc")
    ('topology.yaml', 'flow.py:flow', 'f.py:wc')
    """
    path, _, name = topology_path.partition(":")
    if not path.endswith(".py"):
        return TOPOLOGY_FILE
    return f"{Path(path).name}:{name or 'flow'}"


def pack_topology(topology_path: str, extra: list[str], folder: str) -> str:
    """A zip of the topology's folder (its modules import from there) with the topology as
    ``topology.yaml`` (a flow file keeps its name) and the ``--file`` extras beside it; returns
    its path."""
    flow = submit_target(topology_path) != TOPOLOGY_FILE
    source = Path(topology_path.partition(":")[0] if flow else topology_path).resolve()
    target = Path(folder) / "topology.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.parent.rglob("*")):
            parts = set(path.relative_to(source.parent).parts)
            if path.is_file() and not parts & EXCLUDED and path.suffix != ".pyc":
                archive.write(path, path.relative_to(source.parent))
        if not flow:
            archive.write(source, TOPOLOGY_FILE)
        for name in extra:
            if not os.path.isfile(name):
                raise UsageError(f"--file: no such file {name!r}")
            archive.write(name, os.path.basename(name))
    return str(target)


def build_spec(spec: Any, topology_path: str, options: YarnOptions, folder: str) -> Any:
    """The skein ``ApplicationSpec`` for ``spec`` (validated) from ``topology_path``; the
    tokens and the topology archive are written into ``folder`` (kept until submitted)."""
    skein = _skein()
    if options.workers < 0:
        raise UsageError(f"--workers must be 0 or more, not {options.workers}")
    files, setup = environment(options)
    for name, value in (("ray-token", secrets.token_hex(16)),
                        ("ui-token", options.ui_token or secrets.token_hex(16))):  # fmt: skip
        path = Path(folder) / name
        path.write_text(value)
        path.chmod(0o600)
        files[name] = skein.File(str(path))
    files["topology"] = skein.File(
        pack_topology(topology_path, options.files, folder), type="archive"
    )
    head = skein.Service(
        resources=options.head_resources(),
        script=head_script(options, setup, submit_target(topology_path)),
        files=files,
        env={"RAYFLOW_TOPOLOGY": spec.name},
    )
    worker = skein.Service(
        resources=options.worker_resources(),
        script=worker_script(options, setup),
        files={k: v for k, v in files.items() if k != "ui-token"},
        instances=options.workers,
        depends=[HEAD],
        max_restarts=-1,
    )
    return skein.ApplicationSpec(
        name=options.name or f"rayflow-{spec.name}",
        queue=options.queue,
        services={HEAD: head, WORKER: worker},
        tags=["rayflow"],
    )


def client(options: YarnOptions | None = None) -> Any:
    """A skein client (starts skein's Java driver), with Kerberos when given."""
    skein = _skein()
    kwargs = {}
    if options is not None and options.principal:
        kwargs = {"principal": options.principal, "keytab": options.keytab}
    try:
        return skein.Client(**kwargs)
    except Exception as exc:
        raise ClusterError(
            f"cannot start skein's driver: {exc}. It needs Java and Hadoop's configuration "
            "(HADOOP_CONF_DIR) and `yarn classpath` on PATH"
        ) from exc


def submit(spec: Any, topology_path: str, options: YarnOptions) -> str:
    """Submit the application; returns its id."""
    with tempfile.TemporaryDirectory(prefix="rayflow-yarn-") as folder:
        application = build_spec(spec, topology_path, options, folder)
        with client(options) as c:
            return c.submit(application)


def connect(c: Any, app_id: str) -> Any:
    try:
        return c.connect(app_id, wait=False)
    except Exception as exc:
        raise ClusterError(f"application {app_id}: {exc}") from exc


def status(c: Any, app_id: str, ray_nodes: bool = True) -> dict[str, Any]:
    """The application's report, its containers, the published addresses and (``ray_nodes``)
    the Ray nodes, asked from Ray itself."""
    report = c.application_report(app_id)
    info: dict[str, Any] = {
        "id": app_id,
        "name": report.name,
        "state": str(report.state),
        "final_status": str(report.final_status),
        "tracking_url": report.tracking_url,
        "diagnostics": report.diagnostics,
        "containers": [],
    }
    if str(report.state) != "RUNNING":
        return info
    app = connect(c, app_id)
    info["containers"] = [
        {
            "id": x.id,
            "service": x.service_name,
            "state": str(x.state),
            "yarn_container_id": x.yarn_container_id,
            "node": x.yarn_node_http_address,
            "exit_message": x.exit_message,
        }
        for x in app.get_containers(states=list(_skein().model.ContainerState))
    ]
    published = {}
    for key in ("ray-head", "rayflow-ui", "ray-token"):
        value = app.kv.get(key)
        published[key] = value.decode() if isinstance(value, bytes) else value
    info["ray_head"], info["rayflow_ui"] = published["ray-head"], published["rayflow-ui"]
    if ray_nodes and published["ray-head"] and published["ray-token"]:
        info["ray_nodes"] = nodes_of(published["ray-head"], published["ray-token"])
    return info


def nodes_of(address: str, token: str) -> list[dict[str, Any]] | str:
    """The Ray cluster's nodes (address, alive), asked in a subprocess so that an unreachable
    head costs a timeout, not a hung CLI; an error text if it cannot be asked."""
    import json
    import subprocess

    code = (
        f"import json, ray; ray.init(address={address!r}, logging_level='ERROR', "
        "log_to_driver=False); print(json.dumps([{'address': n['NodeManagerAddress'], "
        "'alive': n['Alive']} for n in ray.nodes()]))"
    )
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
        )
    except subprocess.TimeoutExpired:
        return f"Ray at {address} did not answer in 60 s"
    if done.returncode != 0:
        return f"Ray at {address}: {done.stderr.strip().splitlines()[-1:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def scale(c: Any, app_id: str, workers: int) -> int:
    """Set the number of worker containers; returns how many there were."""
    app = connect(c, app_id)
    before = len(app.get_containers(services=[WORKER]))
    app.scale(WORKER, count=workers)
    return before


def kill(c: Any, app_id: str) -> None:
    c.kill_application(app_id)


def logs(c: Any, app_id: str, service: str | None = None) -> dict[str, str]:
    """Container logs by container: live from the NodeManagers while the application runs,
    else YARN's aggregated logs."""
    report = c.application_report(app_id)
    if str(report.state) != "RUNNING":
        deadline = time.monotonic() + 30
        while True:  # YARN moves a finished application's logs to the filesystem first
            try:
                return dict(c.application_logs(app_id).items())
            except ValueError as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"{app_id} has ended and YARN has not aggregated its logs ({exc}); "
                        "they stay in the NodeManagers' log folders, or enable "
                        "yarn.log-aggregation-enable and run `yarn logs -applicationId "
                        f"{app_id}`"
                    ) from exc
                time.sleep(1)
    import urllib.request

    app = connect(c, app_id)
    found: dict[str, str] = {}
    for x in app.get_containers(services=[service] if service else None):
        base = f"http://{x.yarn_node_http_address}/ws/v1/node/containers/{x.yarn_container_id}/logs"
        try:
            with urllib.request.urlopen(base, timeout=10) as response:
                import json

                listing = json.load(response)
            names = [f["fileName"] for f in _log_files(listing) if f["fileName"] not in YARN_FILES]
            parts = []
            for name in names:
                with urllib.request.urlopen(f"{base}/{name}", timeout=10) as response:
                    parts.append(f"--- {name}\n{response.read().decode(errors='replace')}")
            found[x.id] = "\n".join(parts)
        except OSError as exc:
            found[x.id] = f"(logs not readable from {x.yarn_node_http_address}: {exc})"
    return found


YARN_FILES = {"directory.info", "launch_container.sh", "prelaunch.out", "prelaunch.err"}
"""What the NodeManager adds to every container's logs; not the service's own output."""


def _log_files(listing: Any) -> list[dict[str, Any]]:
    """The file entries of the NodeManager's ``containers/{id}/logs`` answer."""
    entries = listing if isinstance(listing, list) else [listing]
    files: list[dict[str, Any]] = []
    for entry in entries:
        info = entry.get("containerLogsInfo", entry)
        listed = info.get("containerLogInfo", [])
        files += listed if isinstance(listed, list) else [listed]
    return files
