"""Flink's socket window word count with the Streams API: words from a socket, counted per
word in 5 s tumbling (processing-time) windows, printed as each window closes.

    nc -lk 9000                                                  # in one terminal; type lines
    rayflow run examples/streams_socket_window_wordcount.py      # in another
"""

from __future__ import annotations

from rayflow import Flow
from rayflow.connectors.socket import SocketTextSpout


def show(result: tuple[str, object, int]) -> None:
    word, window, count = result
    print(f"{window.start}..{window.end}  {word} : {count}", flush=True)


flow = Flow("streams-socket-window-wordcount")
(
    flow.source(SocketTextSpout, kwargs={"hostname": "localhost", "port": 9000})
    .flat_map(str.split)
    .key_by(lambda word: word)
    .window({"type": "tumbling", "size": "5s"}, name="counts")
    .count()
    .sink(show, parallelism=1)
)
