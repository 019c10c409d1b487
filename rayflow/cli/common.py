"""What the ``rayflow`` verbs share: exit codes, ``NAME=value`` pairs, the topology file's
arguments (``-D``, ``--filter``, ``-c``) and loading it, the UI's access options.

>>> pairs(["port=9999", "host=a=b"], "-D")
{'port': '9999', 'host': 'a=b'}
>>> overrides(["batch.size=500", "reliability=at_least_once"])
{'batch.size': 500, 'reliability': 'at_least_once'}
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import yaml

from rayflow.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def pairs(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    result = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} expects NAME=value, got {item!r}")
        result[name.strip()] = value
    return result


def overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``-c batch.size=500`` -> ``{"batch.size": 500}`` (values read as YAML scalars)."""
    return {k: yaml.safe_load(v) if v else "" for k, v in pairs(items, "-c").items()}


def add_topology_args(parser: argparse.ArgumentParser) -> None:
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


def add_ui_access_args(parser: argparse.ArgumentParser, whose: str) -> None:
    """``--ui-token`` and ``--ui-allowed-hosts`` (``rayflow master``, ``submit`` and ``run``)."""
    parser.add_argument(
        "--ui-token",
        default=os.environ.get("RAYFLOW_UI_TOKEN", ""),
        help=f"the bearer token {whose} REST writes need (RAYFLOW_UI_TOKEN); required when it "
        "listens beyond loopback",
    )
    parser.add_argument(
        "--ui-allowed-hosts",
        default=os.environ.get("RAYFLOW_UI_ALLOWED_HOSTS", ""),
        metavar="NAMES",
        help="comma-separated host names the UI answers to besides loopback ones, e.g. "
        "rayflow.example,.corp.example (RAYFLOW_UI_ALLOWED_HOSTS); on a non-loopback --ui-host "
        "without it, any Host is answered",
    )


def load_spec(args: argparse.Namespace) -> Any:
    from rayflow.spec.yaml_loader import load_properties, load_topology

    variables: dict[str, str] = {}
    if args.filter:
        if not os.path.isfile(args.filter):
            raise UsageError(f"--filter: no such file {args.filter!r}")
        variables.update(load_properties(args.filter))
    variables.update(pairs(args.define, "-D"))
    if not os.path.isfile(args.topology):
        raise UsageError(f"no such topology file: {args.topology!r}")
    return load_topology(args.topology, variables=variables, overrides=overrides(args.config))
