"""The socket data plane: batches between task actors over TCP instead of Ray actor calls.

Measured on the 2-core development machine, a Ray actor call costs about a millisecond of CPU
between the two processes (argument serialization, Ray's task bookkeeping, a reply, a callback),
which was the largest cost of moving a batch. A TCP connection per channel costs a ``pickle`` and a
``write`` on one side, a ``read`` and an ``unpickle`` on the other. Everything else stays as it is:
Ray places, names, supervises and controls the actors; data still carries sequence numbers; a
credit (one byte back on the same connection) still returns when the receiver *dequeues* a batch.

Each receiving task listens on its Ray node's address; a connection starts with a handshake that
carries the deployment's random secret, so only tasks of the same deployment can send to it.

>>> frame = encode_frame((0, 0, "default", [["a"]], None))
>>> len(frame) == _HEADER.size + int.from_bytes(frame[:4], "big")
True
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import pickle
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from rayflow.runtime.channels import OnDone

log = logging.getLogger("rayflow.sockets")

_HEADER = struct.Struct("!I")
_CREDIT = b"\x01"
_READ_LIMIT = 64 * 1024 * 1024  # one frame; batches are kept far smaller (routing.INLINE_BYTES)

Deliver = Callable[..., "asyncio.Future | None"]


def encode_frame(message: Any) -> bytes:
    """One length-prefixed pickled message."""
    data = pickle.dumps(message, protocol=5)
    return _HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return pickle.loads(await reader.readexactly(size))


class DataServer:
    """The receiving end of every socket channel into one task."""

    def __init__(self, secret: bytes, deliver: Deliver) -> None:
        self.secret = secret
        self.deliver = deliver  # TaskCore.deliver, set before any data can arrive
        self.server: asyncio.AbstractServer | None = None
        self.ready = asyncio.Event()

    async def start(self, host: str) -> tuple[str, int]:
        """Listen on ``host`` (the Ray node's address) on a free port."""
        self.server = await asyncio.start_server(self._serve, host, 0, limit=_READ_LIMIT)
        address = self.server.sockets[0].getsockname()
        return address[0], address[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = None
        try:
            secret, source, epoch = await read_frame(reader)
            if not hmac.compare_digest(secret, self.secret):
                log.warning(
                    "refused a data connection with a wrong secret from %s",
                    writer.get_extra_info("peername"),
                )
                return
            await self.ready.wait()
            deliver = self.deliver
            write = writer.write

            def credit(_fut: Any) -> None:
                if not writer.is_closing():
                    write(_CREDIT)

            while True:
                try:
                    seq, kind, stream, rows, meta = await read_frame(reader)
                except asyncio.IncompleteReadError:
                    return  # the sender closed the channel
                fut = deliver(source, epoch, seq, kind, stream, rows, meta)
                if fut is None:
                    write(_CREDIT)
                else:
                    fut.add_done_callback(credit)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except Exception:
            log.exception("data channel from %s failed; closing it", source)
        finally:
            writer.close()

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

    async def open(self, address: tuple[str, int], secret: bytes, source: Any, epoch: int) -> None:
        reader, self.writer = await asyncio.open_connection(*address, limit=_READ_LIMIT)
        self.writer.write(encode_frame((secret, source, epoch)))
        self.reader_task = asyncio.get_running_loop().create_task(self._read_credits(reader))

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
