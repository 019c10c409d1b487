"""What users import: the topology builder, spout and bolt base classes, tuples."""

from rayflow.api.components import Bolt, Context, Spout, Timer
from rayflow.api.reliable import ReliableSpout
from rayflow.api.result import RunResult
from rayflow.api.topology import BoltDeclarer, Topology
from rayflow.api.transactional import TwoPhaseCommitBolt
from rayflow.api.tuple import Batch, Tuple
from rayflow.api.windows import Window, WindowedBolt

__all__ = [
    "Batch",
    "Bolt",
    "BoltDeclarer",
    "Context",
    "ReliableSpout",
    "RunResult",
    "Spout",
    "Timer",
    "Topology",
    "Tuple",
    "TwoPhaseCommitBolt",
    "Window",
    "WindowedBolt",
]
