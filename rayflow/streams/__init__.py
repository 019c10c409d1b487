"""The Streams API (Flink's DataStream, Bytewax's operators), compiled onto the engine.

>>> from rayflow.streams import Flow, Stream, KeyedStream, WindowedStream
"""

from rayflow.streams.flow import Flow, KeyedStream, Stream, WindowedStream
from rayflow.streams.windows import TimeWindow

__all__ = ["Flow", "KeyedStream", "Stream", "TimeWindow", "WindowedStream"]
