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
import faulthandler
import io
import logging
import signal
import sys
from collections.abc import Sequence

from rayflow.cli import k8s, local, master, yarn
from rayflow.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from rayflow.errors import RayflowError, TaskError, TopologyError, UsageError
from rayflow.spec.settings import settings_help

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]


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
    local.add_parser(sub)
    master.add_parser(sub)
    k8s.add_parser(sub)
    yarn.add_parser(sub)
    return parser


COMMANDS = {
    **local.COMMANDS,
    **master.COMMANDS,
    "k8s": k8s.run,
    "yarn": yarn.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    # `kill -USR1 <pid>`: where every thread is, on stderr (a real one: not under a test)
    with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return COMMANDS[args.command](args)
    except (TopologyError, UsageError) as exc:
        print(f"rayflow: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TaskError as exc:
        print(f"rayflow: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except RayflowError as exc:
        print(f"rayflow: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
