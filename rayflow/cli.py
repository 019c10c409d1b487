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
import logging
import os
import sys
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
        help="where this run's web UI and REST API listen (default 8744)",
    )
    run.add_argument(
        "--ui-host",
        default=os.environ.get("RAYFLOW_UI_HOST", "127.0.0.1"),
        help="the address they listen on (default 127.0.0.1; another needs --ui-token)",
    )
    run.add_argument("--no-ui", action="store_true", help="no web UI for this run")
    from rayflow.launchers.master_cli import add_ui_access_args

    add_ui_access_args(run, "this run's")

    validate = sub.add_parser("validate", help="check a topology file and print its graph")
    _add_topology_args(validate)
    from rayflow.launchers import master_cli

    master_cli.add_parser(sub)
    from rayflow.launchers import kubernetes_cli

    kubernetes_cli.add_parser(sub)
    from rayflow.launchers import yarn_cli

    yarn_cli.add_parser(sub, _add_topology_args)
    return parser


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
    ui = None
    if not args.no_ui:  # a wrong --ui-host/--ui-token/--ui-allowed-hosts: before Ray starts
        from rayflow.master.access import AccessPolicy

        ui = AccessPolicy(args.ui_host, args.ui_token, tuple(args.ui_allowed_hosts.split(",")))
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
        ui_port=None if ui is None else args.ui_port,
        on_ui=lambda text: print(text, file=sys.stderr, flush=True),
        ui_access=ui,
    )
    print(_report(result))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    print(_describe(_load(args)))
    return EXIT_OK


def cmd_k8s(args: argparse.Namespace) -> int:
    from rayflow.launchers import kubernetes_cli

    return kubernetes_cli.run(args)


def cmd_yarn(args: argparse.Namespace) -> int:
    from rayflow.launchers import yarn_cli

    return yarn_cli.run(args, _load)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from rayflow.launchers import master_cli

    commands = {
        "run": cmd_run,
        "validate": cmd_validate,
        "k8s": cmd_k8s,
        "yarn": cmd_yarn,
        **master_cli.COMMANDS,
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
