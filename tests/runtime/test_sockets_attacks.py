"""A stranger who reaches a task's data port, as an attacker would try it: nothing it sends is
unpickled, nothing makes the task read more than the handshake, nothing holds a connection open
past the handshake timeout, and a recorded handshake cannot be replayed."""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest

from rayflow.runtime.io import handshake
from rayflow.runtime.io.handshake import HandshakeError
from rayflow.runtime.io.messages import DATA
from rayflow.runtime.io.sockets import DataServer, SocketChannel

SECRET = b"the deployment's secret"
DEADLINE = 5.0  # seconds within which the server must have closed a bad connection


class _CreatesFile:
    """A pickle that, once loaded, creates a file: the proof that bytes were unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


async def _server(**options: Any) -> tuple[DataServer, tuple[str, int], list[Any]]:
    delivered: list[Any] = []
    server = DataServer(SECRET, lambda *m: delivered.append(m), **options)
    address = await server.start("127.0.0.2")
    server.ready.set()
    return server, address, delivered


async def _rest_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server still sends, once it has closed; fails past the deadline."""
    return await asyncio.wait_for(reader.read(), DEADLINE)


def test_a_pickle_instead_of_a_handshake_is_never_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_CreatesFile(marker))
    payload = struct.pack("!I", len(payload)) + payload
    payload += b"\0" * max(0, handshake.CLAIM.size - len(payload))  # a whole claim's worth

    async def scenario() -> None:
        server, address, delivered = await _server()
        reader, writer = await asyncio.open_connection(*address)
        writer.write(payload * 2)
        rest = await _rest_until_closed(reader)
        assert rest == rest[: handshake.HELLO.size], "no proof is sent to a stranger"
        assert server.refused == 1 and delivered == []
        writer.close()
        server.close()

    asyncio.run(scenario())
    assert not marker.exists(), "the handshake was unpickled"
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_CreatesFile(control))).close()
    assert control.exists(), "the payload is a working attack when unpickled"


def test_a_huge_length_prefix_before_the_handshake_is_not_read() -> None:
    async def scenario() -> None:
        server, address, _ = await _server()
        reader, writer = await asyncio.open_connection(*address)
        writer.write(struct.pack("!I", 0xFFFFFFFF) + os.urandom(handshake.CLAIM.size))
        await _rest_until_closed(reader)
        assert server.refused == 1
        writer.close()
        server.close()

    asyncio.run(scenario())


def test_an_authenticated_peer_announcing_a_frame_over_the_limit_is_disconnected() -> None:
    async def scenario() -> None:
        server, address, delivered = await _server(frame_limit=1024)
        reader, writer = await asyncio.open_connection(*address)
        nonce = handshake.read_hello(await reader.readexactly(handshake.HELLO.size))
        writer.write(handshake.make_claim(SECRET, nonce, ("src", 0), 0))
        await reader.readexactly(handshake.PROOF.size)
        writer.write(struct.pack("!I", 4 * 1024**3 - 1) + b"x" * 4096)
        assert await _rest_until_closed(reader) == b""
        assert delivered == []
        writer.close()
        server.close()

    asyncio.run(scenario())


def test_a_recorded_handshake_cannot_be_replayed() -> None:
    async def scenario() -> None:
        server, address, delivered = await _server()
        # An honest task's handshake, as an eavesdropper records it.
        reader, writer = await asyncio.open_connection(*address)
        nonce = handshake.read_hello(await reader.readexactly(handshake.HELLO.size))
        recorded = handshake.make_claim(SECRET, nonce, ("split", 1), 0)
        writer.write(recorded)
        await reader.readexactly(handshake.PROOF.size)
        writer.close()
        # The replay on a new connection: the server's nonce is new, so the MAC no longer fits.
        reader, writer = await asyncio.open_connection(*address)
        writer.write(recorded)
        rest = await _rest_until_closed(reader)
        assert len(rest) == handshake.HELLO.size, "no proof for a replayed claim"
        assert server.refused == 1 and delivered == []
        writer.close()
        server.close()

    asyncio.run(scenario())


def test_an_idle_connection_is_closed_after_the_handshake_timeout() -> None:
    async def scenario() -> None:
        server, address, _ = await _server(handshake_timeout=0.3)
        connections = [await asyncio.open_connection(*address) for _ in range(5)]
        for reader, _writer in connections:
            assert len(await _rest_until_closed(reader)) == handshake.HELLO.size
        assert server.refused == 5 and server.handshaking == 0
        for _reader, writer in connections:
            writer.close()
        server.close()

    asyncio.run(scenario())


def test_a_server_without_the_secret_is_not_trusted_by_the_sender() -> None:
    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(handshake.hello(handshake.new_nonce()))
        await reader.readexactly(handshake.CLAIM.size)
        writer.write(os.urandom(handshake.PROOF.size))  # it cannot compute the proof
        await reader.read()

    async def scenario() -> None:
        server = await asyncio.start_server(impostor, "127.0.0.2", 0)
        address = server.sockets[0].getsockname()[:2]
        channel = SocketChannel(("sink", 0))
        with pytest.raises(HandshakeError, match="does not hold this deployment's secret"):
            await channel.open(address, SECRET, ("src", 0), 0)
        server.close()

    asyncio.run(scenario())


def test_the_claimed_source_and_epoch_reach_the_task() -> None:
    async def scenario() -> None:
        server, address, delivered = await _server()
        channel = SocketChannel(("sink", 0))
        await channel.open(address, SECRET, ("count", 7), 42)
        done: list[Any] = []
        channel.transmit(0, DATA, "default", [["w"]], None, on_done=done.append)
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while not delivered and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert delivered and delivered[0][:3] == (("count", 7), 42, 0)
        channel.close()
        server.close()

    asyncio.run(scenario())
