"""The ``rayflow`` command.

    rayflow run examples/wordcount.yaml [--duration 30s] [-D NAME=value] [-c key=value]
    rayflow validate examples/wordcount.yaml
    rayflow submit examples/wordcount.yaml --address 127.0.0.2:6379   # runs until killed
    rayflow list | status NAME | activate NAME | deactivate NAME | kill NAME [--wait 30]
    rayflow rebalance NAME --parallelism split=4 [--wait 30]
    rayflow savepoint NAME | kill NAME --savepoint | submit t.yaml --from-savepoint PATH
    rayflow logs NAME [COMPONENT] [--task N] [-f]
    rayflow ui                                                         # the web UI's address
    rayflow k8s status|scale|logs|delete RELEASE                       # a Helm release
    rayflow yarn submit|status|scale|logs|kill ...                     # a YARN application

Exit codes: 0 done, 1 a task or the cluster failed, 2 a wrong topology file or argument.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import yaml

from rayflow.errors import RayflowError, TaskError, TopologyError, UsageError
from rayflow.spec.settings import settings_help

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _pairs(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    result = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} expects NAME=value, got {item!r}")
        result[name.strip()] = value
    return result


def _overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``-c batch.size=500`` -> ``{"batch.size": 500}`` (values read as YAML scalars)."""
    return {k: yaml.safe_load(v) if v else "" for k, v in _pairs(items, "-c").items()}


def _add_topology_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topology", help="the topology YAML file")
    parser.add_argument(
        "-D",
        dest="define",
        action="append",
        metavar="NAME=value",
        help="set a ${NAME} variable of the file (repeatable); the environment is the fallback",
    )
    parser.add_argument(
        "--filter",
        metavar="FILE.properties",
        help="read ${NAME} variables from a properties file (-D wins over it)",
    )
    parser.add_argument(
        "-c",
        dest="config",
        action="append",
        metavar="key=value",
        help="override a config key of the file, e.g. -c batch.size=500 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rayflow",
        description="Storm- and Flink-style stream processing for Python, on Ray.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config keys (topology 'config:', '-c key=value', or the environment):\n"
        + settings_help(),
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a topology on an embedded Ray (or --address) until it ends, Ctrl-C or --duration",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config keys:\n" + settings_help(),
    )
    _add_topology_args(run)
    run.add_argument(
        "--duration", metavar="30s", help="stop gracefully after 30s, 5m, 1h or N seconds"
    )
    run.add_argument(
        "--address",
        metavar="ADDR",
        help="an existing Ray cluster ('auto', 'host:6379', 'ray://host:10001'); "
        "default: start an embedded Ray on this machine",
    )
    run.add_argument("--quiet", "-q", action="store_true", help="no live throughput line")
    run.add_argument(
        "--ui-port",
        type=int,
        default=int(os.environ.get("RAYFLOW_UI_PORT", "8744")),
        help="where this run's web UI and REST API listen on 127.0.0.1 (default 8744)",
    )
    run.add_argument("--no-ui", action="store_true", help="no web UI for this run")

    validate = sub.add_parser("validate", help="check a topology file and print its graph")
    _add_topology_args(validate)
    _add_cluster_commands(sub)
    from rayflow.launchers import kubernetes_cli

    kubernetes_cli.add_parser(sub)
    from rayflow.launchers import yarn_cli

    yarn_cli.add_parser(sub, _add_topology_args)
    return parser


def _add_cluster_commands(sub: Any) -> None:
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
    _add_topology_args(submit)
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
    parser.add_argument(
        "--ui-token",
        default=os.environ.get("RAYFLOW_UI_TOKEN", ""),
        help="the bearer token its mutating REST calls need (RAYFLOW_UI_TOKEN)",
    )


def _load(args: argparse.Namespace) -> Any:
    from rayflow.spec.yaml_loader import load_properties, load_topology

    variables: dict[str, str] = {}
    if args.filter:
        if not os.path.isfile(args.filter):
            raise UsageError(f"--filter: no such file {args.filter!r}")
        variables.update(load_properties(args.filter))
    variables.update(_pairs(args.define, "-D"))
    if not os.path.isfile(args.topology):
        raise UsageError(f"no such topology file: {args.topology!r}")
    return load_topology(args.topology, variables=variables, overrides=_overrides(args.config))


def _describe(spec: Any) -> str:
    lines = [f"topology '{spec.name}' (reliability {spec.settings.reliability})"]
    for comp in spec.components:
        lines.append(f"  {comp.kind:<5} {comp.id} x{comp.parallelism}  {comp.class_ref.path}")
    for s in spec.streams:
        args = f"({', '.join(s.grouping.fields_)})" if s.grouping.fields_ else ""
        stream = "" if s.stream == "default" else f" [{s.stream}]"
        lines.append(f"  {s.source} -> {s.target}{stream}  {s.grouping.type}{args}")
    return "\n".join(lines)


def _format_row(row: Any) -> str:
    if isinstance(row, tuple | list):
        return "  ".join(str(v) for v in row)
    return str(row)


def _report(result: Any) -> str:
    how = {
        "finished": "finished",
        "duration": "stopped after its duration",
        "interrupted": "stopped by Ctrl-C",
    }[result.ended]
    lines = [f"topology '{result.name}' {how} in {result.seconds:.1f}s"]
    for comp, counters in result.components.items():
        parts = [
            f"{k} {counters.get(k, 0):,.0f}"
            for k in ("emitted", "executed", "failed")
            if counters.get(k)
        ]
        lines.append(f"  {comp:<16} " + ", ".join(parts or ["idle"]))
    for comp, rows in result.outputs.items():
        lines.append(f"{comp}:")
        lines.extend(f"  {_format_row(row)}" for row in rows[:50])
        if len(rows) > 50:
            lines.append(f"  ... {len(rows) - 50} more")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from rayflow.launchers.embedded import run_topology
    from rayflow.spec.durations import parse_duration

    spec = _load(args)
    if args.duration is not None:
        try:
            parse_duration(args.duration)
        except ValueError as exc:
            raise UsageError(f"--duration: {exc}") from None
    from rayflow.spec.yaml_loader import code_folders

    folders = code_folders(os.path.dirname(os.path.abspath(args.topology)))
    print(_describe(spec), file=sys.stderr)
    result = run_topology(
        spec,
        args.duration,
        address=args.address,
        progress=not args.quiet,
        code_paths=folders,
        ui_port=None if args.no_ui else args.ui_port,
        on_ui=lambda text: print(text, file=sys.stderr, flush=True),
    )
    print(_report(result))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    print(_describe(_load(args)))
    return EXIT_OK


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
    return {"host": args.ui_host, "port": args.ui_port, "token": args.ui_token}


def cmd_submit(args: argparse.Namespace) -> int:
    from rayflow.launchers import cluster

    spec = _load(args)
    summary = cluster.submit(
        spec,
        args.topology,
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


def cmd_k8s(args: argparse.Namespace) -> int:
    from rayflow.launchers import kubernetes_cli

    return kubernetes_cli.run(args)


def cmd_yarn(args: argparse.Namespace) -> int:
    from rayflow.launchers import yarn_cli

    return yarn_cli.run(args, _load)


def cmd_master(args: argparse.Namespace) -> int:
    from rayflow.launchers import cluster
    from rayflow.master.master import get_master

    cluster.connect(args.address)
    if args.stop:
        import ray

        ray.kill(get_master(), no_restart=True)
        print("rayflow job master stopped; its topologies keep running")
        return EXIT_OK
    get_master(create=True, **_master_options(args))
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
    for c in detail["components"]:
        for name, m in sorted((c.get("metrics") or {}).items()):
            value = f"count {m['count']:,}, sum {m['sum']:,.3f}" if "count" in m else m["value"]
            print(f"  {c['id']}.{name} ({m['type']}): {value}")
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
    for component, value in _pairs(args.parallelism, "--parallelism").items():
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    commands = {
        "run": cmd_run,
        "validate": cmd_validate,
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
        "k8s": cmd_k8s,
        "yarn": cmd_yarn,
    }
    try:
        return commands[args.command](args)
    except (TopologyError, UsageError) as exc:
        print(f"rayflow: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TaskError as exc:
        print(f"rayflow: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except RayflowError as exc:
        print(f"rayflow: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
