"""Read text lines from a TCP socket (Flink's ``socketTextStream``): try it with ``nc -lk 9000``.

The spout connects in ``open``, reads without blocking in ``next_tuple`` (never stalling the task
loop), emits one tuple per line, and finishes when the server closes the connection.

    spouts:
      - id: lines
        className: rayflow.connectors.socket.SocketTextSpout
        kwargs: {hostname: localhost, port: 9000}
"""

from __future__ import annotations

import socket

from rayflow.api.components import Context, Spout
from rayflow.errors import RayflowError

_CHUNK = 64 * 1024


class SocketTextSpout(Spout):
    """One tuple ``[line]`` per line read from ``hostname:port``."""

    outputs = ["line"]

    def __init__(
        self,
        hostname: str = "localhost",
        port: int = 9000,
        encoding: str = "utf-8",
        connect_timeout: float = 10.0,
    ) -> None:
        self.hostname = hostname
        self.port = int(port)
        self.encoding = encoding
        self.connect_timeout = connect_timeout
        self.sock: socket.socket | None = None
        self.pending = b""

    def open(self, context: Context) -> None:
        try:
            self.sock = socket.create_connection((self.hostname, self.port), self.connect_timeout)
        except OSError as exc:
            raise RayflowError(
                f"cannot connect to {self.hostname}:{self.port} ({exc}); start a server first, "
                f"for example: nc -lk {self.port}"
            ) from exc
        self.sock.setblocking(False)

    def next_tuple(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return  # nothing to read now: the task loop backs off and calls again
        if not data:
            if self.pending:
                self.emit([self.pending.decode(self.encoding, "replace")])
                self.pending = b""
            self.finish()
            return
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            self.emit([line.rstrip(b"\r").decode(self.encoding, "replace")])

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
