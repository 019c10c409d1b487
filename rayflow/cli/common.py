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
import sys
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
    parser.add_argument(
        "topology", help="the topology YAML file, or a Python file holding a Flow (flow.py[:name])"
    )
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


def is_flow_file(path: str) -> bool:
    """``flow.py`` or ``flow.py:name``: a Python module holding a :class:`rayflow.Flow`."""
    return path.partition(":")[0].endswith(".py")


def topology_path(path: str) -> str:
    """The file of a topology argument (``flow.py:name`` -> ``flow.py``)."""
    return path.partition(":")[0] if is_flow_file(path) else path


def load_flow(target: str) -> Any:
    """The Flow (or Topology) that ``path/to/flow.py[:name]`` holds, its module imported under
    its package's name (so that its functions travel to the tasks by reference, with the code)."""
    import importlib.util

    from rayflow.api.topology import Topology
    from rayflow.spec.yaml_loader import code_folders
    from rayflow.streams.flow import Flow

    path, _, name = target.partition(":")
    name = name or "flow"
    if not os.path.isfile(path):
        raise UsageError(f"no such flow file: {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    folders = code_folders(folder)
    top = folders[-1]
    module_name = os.path.relpath(os.path.abspath(path), top)[: -len(".py")].replace(os.sep, ".")
    for entry in reversed(folders):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    module = sys.modules.get(module_name)
    if module is None or os.path.abspath(getattr(module, "__file__", "")) != os.path.abspath(path):
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    found = getattr(module, name, None)
    if not isinstance(found, Flow | Topology):
        has = sorted(k for k, v in vars(module).items() if isinstance(v, Flow | Topology))
        raise UsageError(
            f"{path} has no Flow named '{name}'"
            + (f"; it has {', '.join(has)}: use {path}:{has[0]}" if has else "")
        )
    return found


def load_spec(args: argparse.Namespace) -> Any:
    from rayflow.spec.yaml_loader import load_properties, load_topology

    if is_flow_file(args.topology):
        if args.filter or args.define:
            raise UsageError("-D and --filter set ${NAME} variables of YAML files, not of flows")
        loaded = load_flow(args.topology)
        topology = loaded.topology() if hasattr(loaded, "topology") else loaded
        try:
            return topology.build(overrides(args.config))
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    variables: dict[str, str] = {}
    if args.filter:
        if not os.path.isfile(args.filter):
            raise UsageError(f"--filter: no such file {args.filter!r}")
        variables.update(load_properties(args.filter))
    variables.update(pairs(args.define, "-D"))
    if not os.path.isfile(args.topology):
        raise UsageError(f"no such topology file: {args.topology!r}")
    return load_topology(args.topology, variables=variables, overrides=overrides(args.config))
