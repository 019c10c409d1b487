"""Connection limits of the job master's HTTP port: a client that never finishes its request's
head, or that keeps connections open, must not hold the server.

aiohttp reads a request's head for as long as the client takes, and accepts every connection.
:class:`GuardedSite` is an aiohttp site whose connections pass through :class:`_Guarded` first:

- at most ``max_connections`` at once; the next one is answered 503 and closed;
- a new connection's request line and headers must arrive within ``header_timeout`` (408, then
  closed: a slowloris client that drips one header byte at a time is cut off);
- an idle keep-alive connection closes after ``idle_timeout`` (aiohttp's ``keepalive_timeout``,
  which also ends a later request on the connection whose head does not arrive in that time);
- a body must arrive within ``body_timeout`` and be at most ``max_body_bytes`` (the handlers'
  side, :mod:`rayflow.master.http`); after such a refusal, the rest of the body is read and
  dropped for at most ``lingering_time`` (so the client reads the answer), then the connection
  closes.

>>> Limits().header_timeout, Limits().max_connections
(10.0, 128)
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger("rayflow.master.http")


@dataclass(frozen=True)
class Limits:
    """How long and how much one client may take of the HTTP port (see module docstring)."""

    header_timeout: float = 10.0
    idle_timeout: float = 15.0
    body_timeout: float = 30.0
    max_connections: int = 128
    max_body_bytes: int = 1 << 20
    lingering_time: float = 2.0


def http_error(status: int, reason: str, message: str) -> bytes:
    """A whole ``Connection: close`` response with a JSON error body, for writing to a socket.

    >>> http_error(503, "Service Unavailable", "full").split(b"\\r\\n")[0]
    b'HTTP/1.1 503 Service Unavailable'
    """
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedSite(web.BaseSite):
    """An aiohttp TCP site that applies :class:`Limits` to its connections; ``port`` 0 picks a
    free one (read it from :attr:`port` once started)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: Limits) -> None:
        super().__init__(runner)
        self.host, self._port, self.limits = host, port, limits
        self.connections = 0

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port once started, the asked one before."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "the runner is not set up"
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Guarded(server(), self), self.host or None, self._port, reuse_address=True
        )


class _Guarded(asyncio.Protocol):
    """One connection, in front of aiohttp's own protocol object (``inner``)."""

    def __init__(self, inner: Any, site: GuardedSite) -> None:
        self.inner: Any = inner
        self.site = site
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.counted = False
        self.tail = b""  # the last bytes seen while the first head is incomplete

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        limits = self.site.limits
        if self.site.connections >= limits.max_connections:
            log.warning("refused a connection: %d are open", self.site.connections)
            message = f"the server has {limits.max_connections} connections open; try again"
            transport.write(http_error(503, "Service Unavailable", message))
            transport.close()
            self.inner = None
            return
        self.site.connections += 1
        self.counted = True
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(limits.header_timeout, self._too_slow)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if self.timer is not None:
            seen = self.tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self.timer.cancel()
                self.timer = None
                self.tail = b""
            else:
                self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self.inner is None else self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.counted:
            self.site.connections -= 1
            self.counted = False
        if self.inner is not None:
            self.inner.connection_lost(exc)
            self.inner = None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def _too_slow(self) -> None:
        self.timer = None
        if self.transport is None or self.transport.is_closing():
            return
        seconds = self.site.limits.header_timeout
        log.info("closed a connection whose request head took over %gs", seconds)
        message = f"the request line and headers did not arrive within {seconds:g}s"
        self.transport.write(http_error(408, "Request Timeout", message))
        self.transport.close()
