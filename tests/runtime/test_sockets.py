"""The socket data plane on its own: frames, credits on dequeue, the secret."""

from __future__ import annotations

import asyncio
from typing import Any

from rayflow.runtime.channels import DATA
from rayflow.runtime.sockets import DataServer, SocketChannel


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
        await channel.open(address, b"wrong", ("src", 0), 0)
        errors: list[Any] = []
        channel.transmit(0, DATA, "default", [[1]], None, on_done=errors.append)
        while not errors:
            await asyncio.sleep(0.01)
        assert isinstance(errors[0], ConnectionError) and delivered == []
        channel.close()
        server.close()

    asyncio.run(scenario())
