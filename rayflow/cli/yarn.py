"""``rayflow yarn submit|status|scale|logs|kill``: a topology as a YARN application (skein).

rayflow yarn submit examples/wordcount.yaml --workers 2 --worker-memory 4GiB [--env env.tar.gz]
rayflow yarn status application_1700000000000_0001 [--json]
rayflow yarn scale application_1700000000000_0001 --workers 4
rayflow yarn logs application_1700000000000_0001 [--service ray-head]
rayflow yarn kill application_1700000000000_0001
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from rayflow.cli.common import add_topology_args, load_spec, pairs
from rayflow.errors import ClusterError
from rayflow.launchers import yarn


def add_parser(sub: Any) -> None:
    """Register ``rayflow yarn ...`` on the top-level subparsers ``sub``."""
    parser = sub.add_parser("yarn", help="run a topology as a YARN application (skein)")
    verbs = parser.add_subparsers(dest="yarn_command", required=True, metavar="VERB")
    submit = verbs.add_parser("submit", help="start Ray and the topology on YARN")
    add_topology_args(submit)
    submit.add_argument("--workers", type=int, default=1, help="Ray worker containers (1)")
    submit.add_argument("--worker-vcores", type=int, default=1, help="vcores per worker (1)")
    submit.add_argument("--worker-memory", default="4 GiB", help="memory per worker (4 GiB)")
    submit.add_argument("--head-vcores", type=int, default=1, help="vcores of the head (1)")
    submit.add_argument("--head-memory", default="4 GiB", help="memory of the head (4 GiB)")
    submit.add_argument(
        "--object-store-fraction",
        type=float,
        default=0.3,
        help="share of each container's memory for Ray's object store (0.3)",
    )
    submit.add_argument("--queue", default="default", help="YARN queue (default)")
    submit.add_argument("--name", help="application name (rayflow-TOPOLOGY)")
    where = submit.add_mutually_exclusive_group()
    where.add_argument("--env", help="a packed Python environment (venv-pack, conda-pack)")
    where.add_argument(
        "--python", help="a Python with rayflow that exists on every node (default: this one)"
    )
    submit.add_argument(
        "--file", action="append", default=[], help="another file for the topology's folder"
    )
    submit.add_argument("--ray-port", type=int, default=6379, help="Ray's GCS port (6379)")
    submit.add_argument("--ui-port", type=int, default=8744, help="the job master's UI (8744)")
    submit.add_argument(
        "--ui-token",
        default=os.environ.get("RAYFLOW_UI_TOKEN", ""),
        help="the UI's token for mutating calls (default: generated)",
    )
    submit.add_argument(
        "--loopback-ips",
        metavar="PREFIX",
        help="single-host test clusters: node addresses PREFIX2 (head), PREFIX3... (workers)",
    )
    submit.add_argument("--principal", help="Kerberos principal (with --keytab)")
    submit.add_argument("--keytab", help="Kerberos keytab file")
    submit.add_argument(
        "--dry-run", action="store_true", help="print the skein application spec; submit nothing"
    )
    submit.add_argument(
        "--wait",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="wait this long for the UI's address (0: return at once)",
    )
    for name, help_ in (
        ("status", "the application, its containers and addresses"),
        ("scale", "set the number of Ray worker containers"),
        ("logs", "the containers' logs"),
        ("kill", "stop the application"),
    ):
        verb = verbs.add_parser(name, help=help_)
        verb.add_argument("app_id", help="the YARN application id")
        if name == "status":
            verb.add_argument("--json", action="store_true", help="print JSON")
        if name == "scale":
            verb.add_argument("--workers", type=int, required=True, help="worker containers")
        if name == "logs":
            verb.add_argument("--service", choices=[yarn.HEAD, yarn.WORKER], help="one service")


def run(args: argparse.Namespace) -> int:
    """Run the ``yarn`` verb (``submit`` validates the topology file first)."""
    if args.yarn_command == "submit":
        return _submit(args, load_spec(args))
    with yarn.client() as c:
        if args.yarn_command == "status":
            info = yarn.status(c, args.app_id)
            print(json.dumps(info, indent=2) if args.json else format_status(info))
        elif args.yarn_command == "scale":
            before = yarn.scale(c, args.app_id, args.workers)
            print(f"{args.app_id}: {before} -> {args.workers} worker containers")
        elif args.yarn_command == "logs":
            for container, text in sorted(yarn.logs(c, args.app_id, args.service).items()):
                print(f"=== {container}\n{text}")
        elif args.yarn_command == "kill":
            yarn.kill(c, args.app_id)
            print(f"{args.app_id}: killed")
    return 0


def _submit(args: argparse.Namespace, spec: Any) -> int:
    options = yarn.YarnOptions(
        workers=args.workers,
        worker_vcores=args.worker_vcores,
        worker_memory=args.worker_memory,
        head_vcores=args.head_vcores,
        head_memory=args.head_memory,
        object_store_fraction=args.object_store_fraction,
        queue=args.queue,
        name=args.name,
        env_archive=args.env,
        python=args.python,
        files=args.file,
        # passed on as given to `rayflow submit` in the head, which reads their values
        defines=pairs(args.define, "-D"),
        config=pairs(args.config, "-c"),
        ray_port=args.ray_port,
        ui_port=args.ui_port,
        ui_token=args.ui_token,
        loopback_ips=args.loopback_ips,
        principal=args.principal,
        keytab=args.keytab,
    )
    if args.dry_run:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="rayflow-yarn-") as folder:
            print(yarn.build_spec(spec, args.topology, options, folder).to_yaml())
        return 0
    app_id = yarn.submit(spec, args.topology, options)
    print(f"submitted {app_id} (topology '{spec.name}')", flush=True)
    if args.wait > 0:
        ui = _wait_for_ui(app_id, args.wait)
        print(f"  UI {ui}/#/topology/{spec.name}")
    print(f"  rayflow yarn status {app_id}    rayflow yarn kill {app_id}")
    return 0


def _wait_for_ui(app_id: str, timeout: float) -> str:
    """Wait for the head to publish the UI's address, showing the application's state."""
    deadline = time.monotonic() + timeout
    last = ""
    with yarn.client() as c:
        while True:
            info = yarn.status(c, app_id, ray_nodes=False)  # no Ray connection per poll
            if info["state"] in ("FINISHED", "FAILED", "KILLED"):
                raise ClusterError(
                    f"{app_id} ended ({info['state']}, {info['final_status']}): "
                    f"{info['diagnostics']}; see `rayflow yarn logs {app_id}`"
                )
            if info.get("rayflow_ui"):
                return info["rayflow_ui"]
            if info["state"] != last:
                last = info["state"]
                print(f"  {app_id}: {last}...", file=sys.stderr, flush=True)
            if time.monotonic() > deadline:
                raise ClusterError(f"{app_id}: no UI address after {timeout:g}s; still {last}")
            time.sleep(2)


def format_status(info: dict[str, Any]) -> str:
    """The human form of :func:`rayflow.launchers.yarn.status`.

    >>> print(format_status({"id": "app_1", "name": "rayflow-wc", "state": "RUNNING",
    ...     "final_status": "UNDEFINED", "tracking_url": "http://rm/proxy/app_1",
    ...     "diagnostics": "", "ray_head": "10.0.0.5:6379", "rayflow_ui": "http://10.0.0.5:8744",
    ...     "containers": [{"id": "ray-head_0", "service": "ray-head", "state": "RUNNING",
    ...                     "yarn_container_id": "c_1", "node": "n1:8042", "exit_message": ""}]}))
    app_1  rayflow-wc  RUNNING (UNDEFINED)
      tracking URL  http://rm/proxy/app_1
      Ray head      10.0.0.5:6379
      rayflow UI    http://10.0.0.5:8744
      ray-head_0  RUNNING  n1:8042
    """
    lines = [f"{info['id']}  {info['name']}  {info['state']} ({info['final_status']})"]
    lines.append(f"  tracking URL  {info['tracking_url']}")
    if info.get("ray_head"):
        lines.append(f"  Ray head      {info['ray_head']}")
    if info.get("rayflow_ui"):
        lines.append(f"  rayflow UI    {info['rayflow_ui']}")
    nodes = info.get("ray_nodes")
    if isinstance(nodes, list):
        alive = [n["address"] for n in nodes if n["alive"]]
        lines.append(f"  Ray nodes     {len(alive)} alive: {', '.join(alive)}")
    elif nodes:
        lines.append(f"  Ray nodes     ({nodes})")
    if info.get("diagnostics"):
        lines.append(f"  diagnostics   {info['diagnostics']}")
    for x in info["containers"]:
        ended = f"  {x['exit_message']}" if x.get("exit_message") else ""
        lines.append(f"  {x['id']}  {x['state']}  {x['node']}{ended}")
    return "\n".join(lines)
