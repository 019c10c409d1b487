"""The job master's verbs of the ``rayflow`` command (Storm's ``storm jar/list/kill/...``):
submit, master, list, status, activate, deactivate, kill, savepoint, rebalance, logs, ui."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Any

from rayflow.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_topology_args,
    add_ui_access_args,
    load_spec,
    pairs,
    topology_path,
)
from rayflow.errors import UsageError


def add_parser(sub: Any) -> None:
    """The job master's verbs (Storm's ``storm jar/list/kill/activate/...``)."""

    def command(name: str, help_: str, topology: bool = True) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_)
        if topology:
            parser.add_argument("name", help="the topology's name")
        parser.add_argument(
            "--address",
            metavar="ADDR",
            help="the Ray cluster (default: RAY_ADDRESS, or the one started on this machine)",
        )
        return parser

    submit = sub.add_parser(
        "submit", help="run a topology on a Ray cluster until `rayflow kill` (returns at once)"
    )
    add_topology_args(submit)
    submit.add_argument("--address", metavar="ADDR", help="the Ray cluster (default: auto)")
    submit.add_argument(
        "--py-module",
        action="append",
        metavar="PATH",
        help="another local package the topology imports (repeatable)",
    )
    submit.add_argument(
        "--runtime-env",
        metavar="JSON",
        type=_json_object,
        help='more of Ray\'s runtime_env for the tasks, e.g. \'{"pip": ["requests"]}\'',
    )
    submit.add_argument(
        "--from-savepoint",
        metavar="PATH",
        default="",
        help="start from this savepoint (or checkpoint) folder or URL (exactly_once)",
    )
    submit.add_argument(
        "--allow-non-restored-state",
        action="store_true",
        help="with --from-savepoint: drop the state of components the topology no longer has",
    )
    _add_master_args(submit)
    listing = command("list", "the topologies running on the cluster", topology=False)
    listing.add_argument("--json", action="store_true", help="print JSON")
    status = command("status", "a topology's components, counters and recent errors")
    status.add_argument("--json", action="store_true", help="print JSON")
    command("activate", "spouts resume calling next_tuple")
    command("deactivate", "spouts stop calling next_tuple (the topology stays deployed)")
    kill = command("kill", "spouts finish, the rest drains, then every task ends")
    kill.add_argument(
        "--wait", type=float, default=30.0, metavar="SECONDS", help="drain time (default 30)"
    )
    kill.add_argument(
        "--savepoint",
        action="store_true",
        help="stop with a savepoint (spouts pause, the savepoint is written, tasks end)",
    )
    savepoint = command("savepoint", "write a savepoint of a running topology (exactly_once)")
    savepoint.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="give up after (120)"
    )
    rebalance = command("rebalance", "change components' parallelism while the topology runs")
    rebalance.add_argument(
        "--parallelism",
        "-e",
        dest="parallelism",
        action="append",
        required=True,
        metavar="COMPONENT=N",
        help="the component's new number of tasks (repeatable; -e as in Storm)",
    )
    rebalance.add_argument(
        "--wait", "-w", type=float, default=30.0, metavar="SECONDS", help="drain time (30)"
    )
    logs = command("logs", "the task actors' own log lines")
    logs.add_argument("component", nargs="?", help="only this component's tasks")
    logs.add_argument("--task", type=int, metavar="N", help="only task N of the component")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    ui = command("ui", "print the web UI's address and open it in a browser", topology=False)
    ui.add_argument("--no-browser", action="store_true", help="only print the address")
    master = command("master", "start the job master (submit starts it too)", topology=False)
    _add_master_args(master)
    master.add_argument(
        "--stop",
        action="store_true",
        help="end the master (topologies keep running; the next one takes them over)",
    )


def _add_master_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ui-host",
        default=os.environ.get("RAYFLOW_UI_HOST", "127.0.0.1"),
        help="where a newly started master serves its UI and REST API (default 127.0.0.1)",
    )
    parser.add_argument(
        "--ui-port",
        type=int,
        default=int(os.environ.get("RAYFLOW_UI_PORT", "8744")),
        help="its port (default 8744)",
    )
    add_ui_access_args(parser, "a newly started master's")


def _json_object(text: str) -> dict[str, Any]:
    """argparse type: a JSON object (``--runtime-env``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('expected a JSON object, e.g. \'{"pip": ["requests"]}\'')
    return value


def _master_options(args: argparse.Namespace) -> dict[str, Any]:
    """Where and for whom a new master serves; a wrong combination raises ``UsageError`` here,
    before any Ray is reached (a non-loopback ``--ui-host`` without ``--ui-token``)."""
    from rayflow.master.access import AccessPolicy

    policy = AccessPolicy(args.ui_host, args.ui_token, tuple(args.ui_allowed_hosts.split(",")))
    return {
        "host": policy.bind_host,
        "port": args.ui_port,
        "token": policy.token,
        "allowed_hosts": policy.allowed_hosts,
    }


def cmd_submit(args: argparse.Namespace) -> int:
    from rayflow.launchers import cluster

    spec = load_spec(args)
    summary = cluster.submit(
        spec,
        topology_path(args.topology),
        args.address,
        args.py_module,
        _master_options(args),
        runtime_env=args.runtime_env,
        from_savepoint=args.from_savepoint,
        allow_non_restored_state=args.allow_non_restored_state,
    )
    info = cluster.call("info")
    print(
        f"submitted topology '{summary['name']}': {summary['tasks']} tasks on "
        f"{summary['workers']} node(s); UI {info['url']}/#/topology/{summary['name']}\n"
        f"  rayflow status {summary['name']}    rayflow kill {summary['name']}"
    )
    return EXIT_OK


def cmd_master(args: argparse.Namespace) -> int:
    from rayflow.launchers import cluster
    from rayflow.master.actor import get_master

    options = {} if args.stop else _master_options(args)  # wrong ones: before Ray is reached
    cluster.connect(args.address)
    if args.stop:
        import ray

        ray.kill(get_master(), no_restart=True)
        print("rayflow job master stopped; its topologies keep running")
        return EXIT_OK
    get_master(create=True, **options)
    info = cluster.call("info")
    print(f"rayflow job master (pid {info['pid']}) serves {info['url']}")
    return EXIT_OK


def _cluster(args: argparse.Namespace) -> Any:
    from rayflow.launchers import cluster

    cluster.connect(args.address)
    return cluster


def cmd_list(args: argparse.Namespace) -> int:
    rows = _cluster(args).call("list")
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    table = [("NAME", "STATUS", "UPTIME", "TASKS", "WORKERS", "EMITTED", "RESTARTS")]
    for r in rows:
        table.append(
            (
                r["name"],
                r["status"],
                _uptime(r["uptime"]),
                str(r["tasks"]),
                str(r["workers"]),
                f"{r['emitted']:,.0f}",
                str(r["restarts"]),
            )
        )
    print(_table(table) if rows else "no topologies running (rayflow submit topology.yaml)")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    detail = _cluster(args).call("status", args.name)
    if args.json:
        print(json.dumps(detail, indent=2))
        return EXIT_OK
    print(
        f"topology {detail['name']}: {detail['status']}, up {_uptime(detail['uptime'])}, "
        f"{detail['tasks']} tasks on {detail['workers']} node(s), "
        f"reliability {detail['reliability']}, {detail['restarts']} restart(s)"
    )
    table = [
        (
            "COMPONENT",
            "KIND",
            "TASKS",
            "EMITTED",
            "EXECUTED",
            "ACKED",
            "FAILED",
            "EXEC MS",
            "COMPLETE MS",
            "CAPACITY",
            "BACKPRESSURE",
        )
    ]
    for c in detail["components"]:
        table.append(
            (
                c["id"],
                c["kind"],
                str(c["parallelism"]),
                f"{c.get('emitted', 0):,.0f}",
                f"{c.get('executed', 0):,.0f}",
                f"{c.get('acked', 0):,.0f}",
                f"{c.get('failed', 0):,.0f}",
                f"{c.get('execute_latency_ms', 0):.3f}",
                f"{c.get('complete_latency_ms', 0):.1f}",
                f"{c.get('capacity', 0):.0%}",
                f"{c.get('backpressure', 0):.0%}",
            )
        )
    print(_table(table))
    chains: dict[str, list[str]] = {}
    for c in detail["components"]:
        chains.setdefault(c.get("chain", c["id"]), []).append(c["id"])
    for members in chains.values():
        if len(members) > 1:
            print(f"chain: {' + '.join(members)} (one actor per task index)")
    for c in detail["components"]:
        if len(c.get("operators") or ()) > 1:
            print(f"fused: {c['id']} runs {' -> '.join(c['operators'])} (batch at a time)")
    for c in detail["components"]:
        for name, m in sorted((c.get("metrics") or {}).items()):
            value = f"count {m['count']:,}, sum {m['sum']:,.3f}" if "count" in m else m["value"]
            print(f"  {c['id']}.{name} ({m['type']}): {value}")
    restart = detail.get("restart")
    if restart and restart["failures"]:
        following = restart["next_delay"]
        print(
            f"restart strategy {restart['strategy']}: {restart['failures']} failure(s) counted, "
            + (
                "the next one fails the job"
                if following is None
                else f"next restart in {following:g}s"
            )
            + f" ({restart['reason']})"
        )
    problems = detail["failures"][:5] + detail["errors"][:5]
    if problems:
        print("recent errors:")
        for e in problems:
            print(f"  {e['component']}[{e['task']}] {e.get('where', 'restart')}: {e['error']}")
    checkpoints = detail.get("checkpoints")
    if checkpoints:
        latest = checkpoints["latest"]
        print(
            f"checkpoints: {checkpoints['completed']} completed, {checkpoints['failed']} failed"
            + (f"; latest {latest['id']} ({latest['bytes']:,} bytes, "
               f"{latest['duration_ms']} ms) at {latest['path']}" if latest else "")
        )  # fmt: skip
    if detail.get("error"):
        print(detail["error"])
    return EXIT_OK


def cmd_activate(args: argparse.Namespace) -> int:
    summary = _cluster(args).call(args.command, args.name)
    print(f"topology '{args.name}' is {summary['status']}")
    return EXIT_OK


def cmd_savepoint(args: argparse.Namespace) -> int:
    url = _cluster(args).call("savepoint", args.name, args.timeout)["savepoint"]
    print(f"savepoint of '{args.name}' written to {url}\n"
          f"  resume: rayflow submit TOPOLOGY.yaml --from-savepoint {url}")  # fmt: skip
    return EXIT_OK


def cmd_kill(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    if args.savepoint:
        answer = cluster.call("kill", args.name, args.wait, True)
        print(f"topology '{args.name}' stopped with a savepoint: {answer['savepoint']}")
        return EXIT_OK
    cluster.call("kill", args.name, args.wait)
    print(f"killing topology '{args.name}': spouts finish, then {args.wait:g}s to drain")
    deadline = time.monotonic() + args.wait + 60
    while any(r["name"] == args.name for r in cluster.call("list")):
        if time.monotonic() > deadline:
            print(f"rayflow: '{args.name}' still listed; see rayflow status {args.name}")
            return EXIT_FAILED
        time.sleep(0.5)
    print(f"topology '{args.name}' killed")
    return EXIT_OK


def cmd_rebalance(args: argparse.Namespace) -> int:
    parallelism = {}
    for component, value in pairs(args.parallelism, "--parallelism").items():
        try:
            parallelism[component] = int(value)
        except ValueError:
            raise UsageError(f"--parallelism {component}={value}: expected a number") from None
    cluster = _cluster(args)
    summary = cluster.call("rebalance", args.name, parallelism, args.wait)
    changes = ", ".join(f"{c}={n}" for c, n in parallelism.items())
    print(f"rebalanced topology '{args.name}' ({changes}): {summary['tasks']} tasks, "
          f"{summary['status']}")  # fmt: skip
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    tasks = [
        (c, i)
        for c, i in cluster.call("tasks", args.name)
        if (args.component is None and not c.startswith("__")) or c == args.component
    ]
    if args.task is not None:
        tasks = [(c, i) for c, i in tasks if i == args.task]
    if not tasks:
        raise UsageError(f"topology '{args.name}' has no such component or task")
    offsets: dict[tuple[str, int], Any] = {}
    with contextlib.suppress(KeyboardInterrupt):  # the end of -f
        _print_logs(cluster, args, tasks, offsets)
    return EXIT_OK


def _print_logs(cluster: Any, args: argparse.Namespace, tasks: list, offsets: dict) -> None:
    while True:
        for key in tasks:
            got = cluster.call("read_log", args.name, key[0], key[1], offsets.get(key))
            offsets[key] = got["offsets"]
            for line in got["text"].splitlines():
                print(f"{key[0]}[{key[1]}] | {line}")
        sys.stdout.flush()
        if not args.follow:
            return
        time.sleep(1.0)


def cmd_ui(args: argparse.Namespace) -> int:
    info = _cluster(args).call("info")
    print(info["url"])
    if not args.no_browser:
        import webbrowser

        webbrowser.open(info["url"])
    return EXIT_OK


def _uptime(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


COMMANDS = {
    "submit": cmd_submit,
    "master": cmd_master,
    "list": cmd_list,
    "status": cmd_status,
    "activate": cmd_activate,
    "deactivate": cmd_activate,
    "kill": cmd_kill,
    "rebalance": cmd_rebalance,
    "savepoint": cmd_savepoint,
    "logs": cmd_logs,
    "ui": cmd_ui,
}
"""The verbs this module handles, by name."""
