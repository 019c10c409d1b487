"""rayflow: Storm- and Flink-style stream processing for Python, on Ray.

>>> from rayflow import Topology, Spout, Bolt, Tuple
"""

import os as _os

# Ray reads its auth mode when it is imported; rayflow keeps token authentication on (a cluster
# started without it can still be reached by setting RAY_AUTH_MODE before importing rayflow).
_os.environ.setdefault("RAY_AUTH_MODE", "token")

from rayflow.api import (
    Batch,
    Bolt,
    BoltDeclarer,
    Context,
    ReliableSpout,
    RunResult,
    Spout,
    Timer,
    Topology,
    Tuple,
    TwoPhaseCommitBolt,
    Window,
    WindowedBolt,
)
from rayflow.errors import ClusterError, ConfigError, RayflowError, TaskError, TopologyError
from rayflow.streams import Flow, KeyedStream, Stream, TimeWindow, WindowedStream

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Bolt",
    "BoltDeclarer",
    "ClusterError",
    "ConfigError",
    "Context",
    "Flow",
    "KeyedStream",
    "RayflowError",
    "ReliableSpout",
    "RunResult",
    "Spout",
    "Stream",
    "TaskError",
    "TimeWindow",
    "Timer",
    "Topology",
    "TopologyError",
    "Tuple",
    "TwoPhaseCommitBolt",
    "Window",
    "WindowedBolt",
    "WindowedStream",
]
