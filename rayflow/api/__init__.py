"""What users import: the topology builder, spout and bolt base classes, tuples."""

from rayflow.api.components import Bolt, Context, Spout
from rayflow.api.result import RunResult
from rayflow.api.topology import BoltDeclarer, Topology
from rayflow.api.tuple import Batch, Tuple

__all__ = ["Batch", "Bolt", "BoltDeclarer", "Context", "RunResult", "Spout", "Topology", "Tuple"]
