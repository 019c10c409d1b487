"""The socket data plane: batches between task actors over TCP instead of Ray actor calls.

Measured on the 2-core development machine, a Ray actor call costs about a millisecond of CPU
between the two processes (argument serialization, Ray's task bookkeeping, a reply, a callback),
which was the largest cost of moving a batch. A TCP connection per channel costs a ``pickle`` and a
``write`` on one side, a ``read`` and an ``unpickle`` on the other. Everything else stays as it is:
Ray places, names, supervises and controls the actors; data still carries sequence numbers; a
credit (one byte back on the same connection) still returns when the receiver *dequeues* a batch.

Each receiving task listens on its Ray node's address. A connection is authenticated before a
single byte of it is unpickled: the handshake (:mod:`rayflow.runtime.io.handshake`) is fixed-size
binary, a challenge-response keyed by the deployment's secret, under a timeout. Only then are
frames unpickled, each frame's announced length checked against the limit before it is read, and
the connection closed on the first bad frame: a peer that proved it holds the secret is one of
our own tasks. With TLS (:mod:`rayflow.runtime.io.tls`) the channel is encrypted and both ends
present the cluster's certificate.

>>> frame = encode_frame((0, 0, "default", [["a"]], None))
>>> len(frame) == _HEADER.size + int.from_bytes(frame[:4], "big")
True
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rayflow.runtime.io import codec, handshake
from rayflow.runtime.io.handshake import HandshakeError
from rayflow.runtime.io.messages import FEEDBACK, OnDone
from rayflow.runtime.io.tls import TlsFiles

log = logging.getLogger("rayflow.sockets")

_HEADER = struct.Struct("!I")
_CREDIT = b"\x01"
FRAME_LIMIT = 64 * 1024 * 1024  # one frame; batches are kept far smaller (route.INLINE_BYTES)
# A stream's buffer: it pauses reading past twice this, which bounds what a peer that streams
# without being read (in its handshake, say) can make a task hold; batches stay under ~100 KiB.
_STREAM_LIMIT = 256 * 1024
MAX_HANDSHAKES = 64  # connections allowed to be in their handshake at once; more are closed
_WARN_EVERY = 10.0  # seconds between warnings about refused peers (a scan must not flood logs)

Deliver = Callable[..., "asyncio.Future | None"]


class FrameTooLarge(ConnectionError):
    """A peer announced a frame over the limit; the connection is closed without reading it."""


def encode_frame(message: Any) -> bytes:
    """One length-prefixed pickled message (pickled without the memo: see ``io.codec``)."""
    data = codec.dumps(message)
    return _HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader, limit: int = FRAME_LIMIT) -> Any:
    """The next message from an *authenticated* peer; the length is checked before the read."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > limit:
        raise FrameTooLarge(f"a frame of {size} bytes announced, over the limit of {limit}")
    return codec.loads(await reader.readexactly(size))


class DataServer:
    """The receiving end of every socket channel into one task."""

    def __init__(
        self,
        secret: bytes,
        deliver: Deliver,
        tls: TlsFiles | None = None,
        *,
        handshake_timeout: float = handshake.HANDSHAKE_TIMEOUT,
        frame_limit: int = FRAME_LIMIT,
    ) -> None:
        self.secret = secret
        self.deliver = deliver  # TaskCore.deliver, set before any data can arrive
        # A spout's: an acker's completed trees (FEEDBACK frames), handed to its loop
        self.on_feedback: Callable[[Any], None] | None = None
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.frame_limit = frame_limit
        self.server: asyncio.AbstractServer | None = None
        self.ready = asyncio.Event()
        self.handshaking = 0
        self.refused = 0  # connections that failed the handshake (a metric and a test hook)
        self._warned = 0.0

    async def start(self, host: str) -> tuple[str, int]:
        """Listen on ``host`` (the Ray node's address) on a free port."""
        tls = self.tls.server_context() if self.tls is not None else None
        self.server = await asyncio.start_server(
            self._serve,
            host,
            0,
            limit=_STREAM_LIMIT,
            ssl=tls,
            ssl_handshake_timeout=self.handshake_timeout if tls is not None else None,
        )
        address = self.server.sockets[0].getsockname()
        return address[0], address[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = None
        try:
            if self.handshaking >= MAX_HANDSHAKES:
                self._refuse(writer, "too many connections in their handshake")
                return
            self.handshaking += 1
            try:
                source, generation = await asyncio.wait_for(
                    self._authenticate(reader, writer), self.handshake_timeout
                )
            finally:
                self.handshaking -= 1
            await self.ready.wait()
            await self._receive(reader, writer, source, generation)
        except (HandshakeError, TimeoutError) as exc:
            self._refuse(writer, str(exc) or "no handshake in time")
        except FrameTooLarge as exc:
            log.warning("closed the data channel from %s: %s", source, exc)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        except Exception:
            log.exception("data channel from %s failed; closing it", source)
        finally:
            writer.close()

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Any, int]:
        nonce = handshake.new_nonce()
        writer.write(handshake.hello(nonce))
        claim = await reader.readexactly(handshake.CLAIM.size)
        source, generation, proof = handshake.check_claim(self.secret, nonce, claim)
        writer.write(proof)
        return source, generation

    async def _receive(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        source: Any,
        generation: int,
    ) -> None:
        deliver = self.deliver
        write = writer.write
        limit = self.frame_limit

        def credit(_fut: Any) -> None:
            if not writer.is_closing():
                write(_CREDIT)

        while True:
            try:
                seq, kind, stream, rows, meta = await read_frame(reader, limit)
            except asyncio.IncompleteReadError:
                return  # the sender closed the channel
            if kind == FEEDBACK:  # an acker's, outside any input channel (a spout has none)
                if self.on_feedback is not None:
                    self.on_feedback(rows)
                write(_CREDIT)
                continue
            fut = deliver(source, generation, seq, kind, stream, rows, meta)
            if fut is None:
                write(_CREDIT)
            else:
                fut.add_done_callback(credit)

    def _refuse(self, writer: asyncio.StreamWriter, why: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning(
                "refused a data connection from %s: %s (%d refused so far)",
                writer.get_extra_info("peername"),
                why,
                self.refused,
            )

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


class SocketChannel:
    """The sending end of one socket channel: a connection and the credits coming back."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.writer: asyncio.StreamWriter | None = None
        self.waiting: deque[OnDone] = deque()
        self.reader_task: asyncio.Task | None = None
        self.error: BaseException | None = None

    async def open(
        self,
        address: tuple[str, int],
        secret: bytes,
        source: Any,
        generation: int,
        tls: TlsFiles | None = None,
        timeout: float = handshake.HANDSHAKE_TIMEOUT,
    ) -> None:
        """Connect and authenticate both ways; raises ``ConnectionError`` if either side fails."""
        reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(
                *address, ssl=tls.client_context() if tls is not None else None
            ),
            timeout,
        )
        try:
            await asyncio.wait_for(self._handshake(reader, secret, source, generation), timeout)
        except asyncio.IncompleteReadError:
            self.close()
            raise HandshakeError(
                f"the task {self.target} at {address[0]}:{address[1]} closed the connection in "
                "the handshake (another deployment's secret, or not a rayflow task?)"
            ) from None
        except BaseException:
            self.close()
            raise
        self.reader_task = asyncio.get_running_loop().create_task(self._read_credits(reader))

    async def _handshake(
        self, reader: asyncio.StreamReader, secret: bytes, source: Any, generation: int
    ) -> None:
        assert self.writer is not None
        server_nonce = handshake.read_hello(await reader.readexactly(handshake.HELLO.size))
        claim = handshake.make_claim(secret, server_nonce, source, generation)
        self.writer.write(claim)
        proof = await reader.readexactly(handshake.PROOF.size)
        handshake.check_proof(secret, server_nonce, claim, proof)

    def transmit(
        self, seq: int, kind: int, stream: str, rows: Any, meta: Any, *, on_done: OnDone
    ) -> None:
        if self.error is not None or self.writer is None:
            asyncio.get_running_loop().call_soon(on_done, self.error or ConnectionError("closed"))
            return
        frame = encode_frame((seq, kind, stream, rows, meta))  # may raise: then nothing changed
        self.waiting.append(on_done)
        self.writer.write(frame)

    async def _read_credits(self, reader: asyncio.StreamReader) -> None:
        waiting = self.waiting
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    raise ConnectionError(f"the task {self.target} closed its data channel")
                for _ in range(len(data)):
                    waiting.popleft()(None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = exc
            while waiting:
                waiting.popleft()(exc)

    def close(self) -> None:
        if self.reader_task is not None:
            self.reader_task.cancel()
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
