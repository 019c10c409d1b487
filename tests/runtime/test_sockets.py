"""The socket data plane on its own: frames, credits on dequeue, the secret.

The attacks on the handshake are in test_sockets_attacks.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rayflow.runtime.io.handshake import HandshakeError
from rayflow.runtime.io.messages import DATA
from rayflow.runtime.io.sockets import DataServer, SocketChannel


def test_batches_arrive_in_order_and_credits_return_on_dequeue() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        arrived: list[tuple[Any, ...]] = []
        pending: list[asyncio.Future] = []

        def deliver(*message: Any) -> asyncio.Future:
            arrived.append(message)
            fut = loop.create_future()
            pending.append(fut)
            return fut

        server = DataServer(b"secret", deliver)
        address = await server.start("127.0.0.2")
        server.ready.set()
        channel = SocketChannel(("sink", 0))
        await channel.open(address, b"secret", ("src", 1), 3)
        done: list[Any] = []
        for seq in range(3):
            channel.transmit(seq, DATA, "default", [[seq]], None, on_done=done.append)
        while len(arrived) < 3:
            await asyncio.sleep(0.01)
        assert [m[:3] for m in arrived] == [
            (("src", 1), 3, 0),
            (("src", 1), 3, 1),
            (("src", 1), 3, 2),
        ]
        assert arrived[2][5] == [[2]]
        await asyncio.sleep(0.05)
        assert done == [], "no credit before the receiver dequeues"
        pending[0].set_result(None)
        while not done:
            await asyncio.sleep(0.01)
        assert done == [None]
        channel.close()
        server.close()

    asyncio.run(scenario())


def test_a_connection_with_the_wrong_secret_is_refused() -> None:
    async def scenario() -> None:
        delivered: list[Any] = []
        server = DataServer(b"right", lambda *m: delivered.append(m))
        address = await server.start("127.0.0.2")
        server.ready.set()
        channel = SocketChannel(("sink", 0))
        with pytest.raises(HandshakeError, match="closed the connection in the handshake"):
            await channel.open(address, b"wrong", ("src", 0), 0)
        assert delivered == [] and server.refused == 1
        server.close()

    asyncio.run(scenario())
