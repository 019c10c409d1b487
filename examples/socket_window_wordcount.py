"""Flink's socket window word count: words from a socket, counted in 5 s tumbling windows.

nc -lk 9000                                     # in one terminal; type lines
rayflow run examples/socket_window_wordcount.yaml   # in another
"""

from __future__ import annotations

from rayflow import Tuple, Window, WindowedBolt


class WindowWordCount(WindowedBolt):
    """Per word and window: the count, with the window's start and end (ms since the epoch)."""

    outputs = ["word", "count", "start", "end"]
    window = {"type": "tumbling", "size": "5s", "time": "processing"}

    def process_window(self, window: Window, tuples: list[Tuple]) -> None:
        assert window.key is not None
        self.emit([window.key[0], len(tuples), window.start, window.end])
