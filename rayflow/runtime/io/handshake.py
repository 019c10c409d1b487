"""The data plane's handshake: a peer proves it holds the deployment's secret before any byte it
sends is read as anything but fixed-size binary fields.

Task actors listen on their node's address, so anyone on the network can connect. Nothing on a
connection is unpickled until the peer has answered a challenge:

1. the server sends ``HELLO``: a magic and version, and a fresh random 32-byte nonce;
2. the client sends ``CLAIM``: magic, its own nonce, the ``(component, task, generation)`` it claims
   to be, and ``HMAC-SHA256(secret, "client" | server nonce | client nonce | claim)``;
3. the server checks the MAC in constant time and answers ``PROOF``:
   ``HMAC-SHA256(secret, "server" | client nonce | server nonce | claim)``, so the client knows
   it reached a task of its own deployment too.

The secret never travels; a recorded claim is useless on a new connection (the server's nonce is
new); every message has a fixed size, so a peer cannot make the server read more than
``CLAIM.size`` bytes before it is authenticated. Each step runs under a timeout.

>>> secret, server_nonce = b"s" * 16, b"n" * 32
>>> claim = make_claim(secret, server_nonce, ("split", 1), 3)
>>> len(claim) == CLAIM.size
True
>>> check_claim(secret, server_nonce, claim)[:2]
(('split', 1), 3)
>>> check_claim(b"wrong", server_nonce, claim)
Traceback (most recent call last):
rayflow.runtime.io.handshake.HandshakeError: the peer does not hold this deployment's secret
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from rayflow.errors import RayflowError
from rayflow.runtime.io.messages import TaskKey

MAGIC = b"RFLW\x00\x01"  # protocol name and version 1
NONCE_BYTES = 32
MAX_ID_BYTES = 255
HELLO = struct.Struct(f"!6s{NONCE_BYTES}s")
_CLAIMED = struct.Struct(f"!QIB{MAX_ID_BYTES}s")  # generation, task index, id length, id (padded)
CLAIM = struct.Struct(f"!6s{NONCE_BYTES}s{_CLAIMED.size}s32s")
PROOF = struct.Struct("!32s")
HANDSHAKE_TIMEOUT = 10.0  # seconds a peer has for each step before it is disconnected


class HandshakeError(RayflowError, ConnectionError):
    """A peer failed the handshake (wrong secret, wrong protocol, malformed fields)."""


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def hello(server_nonce: bytes) -> bytes:
    """The server's first message."""
    return HELLO.pack(MAGIC, server_nonce)


def read_hello(data: bytes) -> bytes:
    """The server nonce from a ``HELLO``."""
    magic, server_nonce = HELLO.unpack(data)
    if magic != MAGIC:
        raise HandshakeError("the peer does not speak rayflow's data protocol (version 1)")
    return server_nonce


def _mac(secret: bytes, side: bytes, first: bytes, second: bytes, claimed: bytes) -> bytes:
    return hmac.new(secret, side + first + second + claimed, hashlib.sha256).digest()


def _claimed(source: TaskKey, generation: int) -> bytes:
    component, index = source
    name = component.encode()
    if len(name) > MAX_ID_BYTES:
        raise HandshakeError(f"a component id over {MAX_ID_BYTES} bytes: {component[:40]!r}...")
    return _CLAIMED.pack(generation, index, len(name), name)


def make_claim(
    secret: bytes, server_nonce: bytes, source: TaskKey, generation: int, client_nonce: bytes = b""
) -> bytes:
    """The client's answer to ``HELLO``: who it is, and the proof that it holds ``secret``."""
    client_nonce = client_nonce or new_nonce()
    claimed = _claimed(source, generation)
    mac = _mac(secret, b"client", server_nonce, client_nonce, claimed)
    return CLAIM.pack(MAGIC, client_nonce, claimed, mac)


def check_claim(secret: bytes, server_nonce: bytes, data: bytes) -> tuple[TaskKey, int, bytes]:
    """``(source, generation, proof)`` of a valid ``CLAIM``; raises :class:`HandshakeError` else.

    The MAC is checked before any claimed field is decoded: a peer without the secret learns
    nothing and gets no field parsed.
    """
    magic, client_nonce, claimed, mac = CLAIM.unpack(data)
    if magic != MAGIC:
        raise HandshakeError("the peer does not speak rayflow's data protocol (version 1)")
    if not hmac.compare_digest(mac, _mac(secret, b"client", server_nonce, client_nonce, claimed)):
        raise HandshakeError("the peer does not hold this deployment's secret")
    generation, index, size, name = _CLAIMED.unpack(claimed)
    try:
        component = name[:size].decode()
    except UnicodeDecodeError:
        raise HandshakeError("the claimed component id is not UTF-8") from None
    proof = PROOF.pack(_mac(secret, b"server", client_nonce, server_nonce, claimed))
    return (component, index), generation, proof


def check_proof(secret: bytes, server_nonce: bytes, claim: bytes, data: bytes) -> None:
    """Raises :class:`HandshakeError` unless ``data`` is the server's proof for ``claim``."""
    _magic, client_nonce, claimed, _mac_sent = CLAIM.unpack(claim)
    (proof,) = PROOF.unpack(data)
    if not hmac.compare_digest(proof, _mac(secret, b"server", client_nonce, server_nonce, claimed)):
        raise HandshakeError("the task listening there does not hold this deployment's secret")
