"""``rayflow run`` (a topology on an embedded Ray, or on ``--address``, until it ends) and
``rayflow validate`` (check a file and print its graph)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rayflow.cli.common import (
    EXIT_OK,
    add_topology_args,
    add_ui_access_args,
    is_flow_file,
    load_flow,
    load_spec,
    topology_path,
)
from rayflow.errors import UsageError
from rayflow.runtime.chaining import Chains
from rayflow.spec.settings import settings_help


def add_parser(sub: Any) -> None:
    """Register ``run`` and ``validate`` on the top-level subparsers ``sub``."""
    run = sub.add_parser(
        "run",
        help="run a topology on an embedded Ray (or --address) until it ends, Ctrl-C or --duration",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config keys:\n" + settings_help(),
    )
    add_topology_args(run)
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
    add_ui_access_args(run, "this run's")

    validate = sub.add_parser("validate", help="check a topology file and print its graph")
    add_topology_args(validate)


def describe(spec: Any) -> str:
    chains = Chains(spec)
    lines = [f"topology '{spec.name}' (reliability {spec.settings.reliability})"]
    for comp in spec.components:
        lines.append(f"  {comp.kind:<5} {comp.id} x{comp.parallelism}  {comp.class_ref.path}")
    for s in spec.streams:
        args = f"({', '.join(s.grouping.fields_)})" if s.grouping.fields_ else ""
        stream = "" if s.stream == "default" else f" [{s.stream}]"
        chained = " (chained)" if chains.head_of(s.source) == chains.head_of(s.target) else ""
        lines.append(f"  {s.source} -> {s.target}{stream}  {s.grouping.type}{args}{chained}")
    return "\n".join(lines)


def format_row(row: Any) -> str:
    if isinstance(row, tuple | list):
        return "  ".join(str(v) for v in row)
    return str(row)


def report(result: Any) -> str:
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
        lines.extend(f"  {format_row(row)}" for row in rows[:50])
        if len(rows) > 50:
            lines.append(f"  ... {len(rows) - 50} more")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from rayflow.launchers.embedded import run_topology
    from rayflow.spec.durations import parse_duration

    spec = load_spec(args)
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

    folders = code_folders(os.path.dirname(os.path.abspath(topology_path(args.topology))))
    print(describe(spec), file=sys.stderr)
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
    print(report(result))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    spec = load_spec(args)
    if is_flow_file(args.topology):  # the fused plan: which operators share a component
        print(load_flow(args.topology).explain())
    print(describe(spec))
    return EXIT_OK


COMMANDS = {"run": cmd_run, "validate": cmd_validate}
"""The verbs this module handles, by name."""
