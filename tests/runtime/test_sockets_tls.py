"""Socket channels over mutual TLS, with certificates the test makes: a cluster CA signs the one
certificate every node has (as Ray's TLS set-up does); a certificate from another CA is refused,
and so is a peer that speaks plain TCP."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from rayflow.errors import ConfigError
from rayflow.runtime.io.messages import DATA
from rayflow.runtime.io.sockets import DataServer, SocketChannel
from rayflow.runtime.io.tls import TlsFiles
from tests.tls import make_ca_and_cert

SECRET = b"secret"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[TlsFiles, TlsFiles]:
    folder = tmp_path_factory.mktemp("tls")
    return make_ca_and_cert(folder, "cluster"), make_ca_and_cert(folder, "stranger")


async def _tls_server(files: TlsFiles) -> tuple[DataServer, tuple[str, int], list[Any]]:
    delivered: list[Any] = []
    server = DataServer(SECRET, lambda *m: delivered.append(m), files, handshake_timeout=2.0)
    address = await server.start("127.0.0.2")
    server.ready.set()
    return server, address, delivered


def test_batches_travel_over_mutual_tls(certificates: tuple[TlsFiles, TlsFiles]) -> None:
    cluster, _stranger = certificates

    async def scenario() -> None:
        server, address, delivered = await _tls_server(cluster)
        channel = SocketChannel(("sink", 0))
        await channel.open(address, SECRET, ("src", 0), 0, cluster)
        assert channel.writer is not None
        assert channel.writer.get_extra_info("ssl_object") is not None, "not encrypted"
        done: list[Any] = []
        channel.transmit(0, DATA, "default", [["hello"]], None, on_done=done.append)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not done and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert done == [None] and delivered[0][5] == [["hello"]]
        channel.close()
        server.close()

    asyncio.run(scenario())


def test_a_certificate_from_another_ca_is_refused(
    certificates: tuple[TlsFiles, TlsFiles],
) -> None:
    cluster, stranger = certificates
    # The stranger trusts the cluster's CA (so it would accept the server) but its own
    # certificate is signed by another CA: the server must refuse it.
    intruder = TlsFiles(stranger.cert, stranger.key, cluster.ca)

    async def scenario() -> None:
        server, address, delivered = await _tls_server(cluster)
        channel = SocketChannel(("sink", 0))
        with pytest.raises((ConnectionError, OSError)):
            await channel.open(address, SECRET, ("src", 0), 0, intruder, timeout=5)
        assert delivered == []
        server.close()

    asyncio.run(scenario())


def test_a_plain_tcp_peer_gets_nothing_from_a_tls_server(
    certificates: tuple[TlsFiles, TlsFiles],
) -> None:
    cluster, _stranger = certificates

    async def scenario() -> None:
        server, address, delivered = await _tls_server(cluster)
        channel = SocketChannel(("sink", 0))
        with pytest.raises((ConnectionError, OSError)):
            await channel.open(address, SECRET, ("src", 0), 0, None, timeout=5)
        assert delivered == []
        server.close()

    asyncio.run(scenario())


def test_tls_follows_rays_variables_and_says_what_is_missing() -> None:
    ray_tls = {
        "RAY_USE_TLS": "1",
        "RAY_TLS_SERVER_CERT": "/etc/ray/tls.crt",
        "RAY_TLS_SERVER_KEY": "/etc/ray/tls.key",
        "RAY_TLS_CA_CERT": "/etc/ray/ca.crt",
    }
    assert TlsFiles.from_settings("auto", ray_tls) == TlsFiles(
        "/etc/ray/tls.crt", "/etc/ray/tls.key", "/etc/ray/ca.crt"
    )
    assert TlsFiles.from_settings("false", ray_tls) is None
    assert TlsFiles.from_settings("true", {}, "a.pem", "a.key", "ca.pem") == TlsFiles(
        "a.pem", "a.key", "ca.pem"
    )
    with pytest.raises(ConfigError, match=re.escape("channel.tls.key, channel.tls.ca")):
        TlsFiles.from_settings("true", {}, cert="a.pem")


def test_files_that_cannot_be_loaded_are_named(tmp_path: Path) -> None:
    files = TlsFiles(str(tmp_path / "no.pem"), str(tmp_path / "no.key"), str(tmp_path / "ca"))
    with pytest.raises(ConfigError, match=r"channel\.tls: cannot load the certificate .*no\.pem"):
        files.server_context()
