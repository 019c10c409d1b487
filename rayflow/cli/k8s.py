"""``rayflow k8s status|scale|logs|delete RELEASE``: the kubernetes launcher's verbs.

rayflow k8s status wc -n streams          # Deployments, pods (phase, restarts), Services
rayflow k8s scale wc --group workers --replicas 3
rayflow k8s logs wc [--group workers | --pod NAME] [--tail 100] [-f]
rayflow k8s delete wc [--with-checkpoints]
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from rayflow.launchers.kubernetes import K8sRelease


def add_parser(sub: Any) -> None:
    """Register ``rayflow k8s ...`` on the top-level subparsers ``sub``."""
    k8s = sub.add_parser("k8s", help="a Helm release of the rayflow chart on Kubernetes")
    verbs = k8s.add_subparsers(dest="k8s_command", required=True, metavar="VERB")

    def verb(name: str, help_: str) -> argparse.ArgumentParser:
        parser = verbs.add_parser(name, help=help_)
        parser.add_argument("release", help="the Helm release name")
        parser.add_argument(
            "-n",
            "--namespace",
            default=os.environ.get("RAYFLOW_K8S_NAMESPACE", "default"),
            help="its namespace (default: default, or RAYFLOW_K8S_NAMESPACE)",
        )
        parser.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube)")
        parser.add_argument("--context", help="kubeconfig context")
        return parser

    status = verb("status", "the release's Deployments, pods and Services")
    status.add_argument("--json", action="store_true", help="print JSON")
    scale = verb("scale", "set the number of pods of a worker group")
    scale.add_argument("--group", default="workers", help="the worker group (default: workers)")
    scale.add_argument("--replicas", type=int, required=True, help="pods wanted")
    logs = verb("logs", "the container logs of the head (default), a worker group or a pod")
    which = logs.add_mutually_exclusive_group()
    which.add_argument("--group", help="a worker group's pods")
    which.add_argument("--pod", help="one pod")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each pod")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing (one pod)")
    delete = verb("delete", "delete everything the release made")
    delete.add_argument(
        "--with-checkpoints",
        action="store_true",
        help="also delete the checkpoint volume claim (kept by default)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the ``k8s`` verb ``args`` asked for; returns the exit code."""
    release = K8sRelease(args.release, args.namespace, args.kubeconfig, args.context)
    if args.k8s_command == "status":
        status = release.status()
        print(json.dumps(status, indent=2) if args.json else format_status(status))
    elif args.k8s_command == "scale":
        change = release.scale(args.group, args.replicas)
        print(f"scaled {change['name']} from {change['from']} to {change['to']} pods")
    elif args.k8s_command == "logs":
        for pod, line in release.logs(args.group, args.pod, args.tail, args.follow):
            print(f"[{pod}] {line}", flush=args.follow)
    elif args.k8s_command == "delete":
        deleted = release.delete(keep_checkpoints=not args.with_checkpoints)
        print("\n".join(f"deleted {name}" for name in deleted))
    return 0


def format_status(status: dict[str, Any]) -> str:
    """The human table of :meth:`K8sRelease.status`.

    >>> print(format_status({"release": "wc", "namespace": "default", "deployments": [
    ...     {"name": "wc-head", "component": "head", "group": "", "replicas": 1, "ready": 0,
    ...      "available": 0}], "pods": [], "services": [], "autoscalers": []}))
    release wc in namespace default
    DEPLOYMENT  COMPONENT  READY
    wc-head     head       0/1
    no pods
    """
    lines = [f"release {status['release']} in namespace {status['namespace']}"]
    rows = [("DEPLOYMENT", "COMPONENT", "READY")] + [
        (d["name"], d["component"] + (f" {d['group']}" if d["group"] else ""),
         f"{d['ready']}/{d['replicas'] if d['replicas'] is not None else '-'}")
        for d in status["deployments"]
    ]  # fmt: skip
    lines.append(_columns(rows))
    if status["pods"]:
        rows = [("POD", "PHASE", "READY", "RESTARTS", "NODE", "REASON")] + [
            (p["name"], p["phase"], f"{p['ready']}/{p['containers']}", str(p["restarts"]),
             p["node"] or "-", p["reason"])
            for p in status["pods"]
        ]  # fmt: skip
        lines.append(_columns(rows))
    else:
        lines.append("no pods")
    if status["services"]:
        rows = [("SERVICE", "TYPE", "CLUSTER-IP", "PORTS")] + [
            (s["name"], s["type"], s["cluster_ip"] or "-", ",".join(s["ports"]))
            for s in status["services"]
        ]
        lines.append(_columns(rows))
    for h in status["autoscalers"]:
        lines.append(
            f"autoscaler {h['name']} -> {h['target']}: {h['min']}..{h['max']} "
            f"(now {h['current'] if h['current'] is not None else '-'})"
        )
    return "\n".join(lines)


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
