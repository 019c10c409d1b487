"""The job master's HTTP port against the attacks of issue 17: cross-site writes (a ``text/plain``
POST, a foreign ``Origin``), DNS rebinding (a foreign ``Host``), a bind beyond loopback without a
token, and clients that hold connections (slow heads, idle keep-alive, too many connections, slow
or huge bodies). The server is the real one (:func:`serve_in_thread`) around a real
:class:`JobMaster` with no topologies and no Ray: a request the checks let through reaches the
master and is answered 404 (no such topology), one they stop never gets there.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rayflow.errors import UsageError
from rayflow.master.connections import Limits
from rayflow.master.http import Served, serve_in_thread
from rayflow.master.master import JobMaster
from rayflow.master.registry import MemoryRegistry

TOKEN = "http-test-token"
WRITE = "/api/v1/topologies/wordcount/deactivate"
JSON = {"Content-Type": "application/json"}


def serve(host: str = "127.0.0.1", **options: Any) -> Served:
    """The real server on a free loopback port, with the rules of a bind to ``host``."""
    return serve_in_thread(JobMaster(MemoryRegistry()), host, 0, listen="127.0.0.1", **options)


@pytest.fixture
def server() -> Iterator[Served]:
    served = serve()
    yield served
    served.close()


def call(
    served: Served, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, Any]:
    """One request with exactly these headers (``Host`` too, when given)."""
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    return response.status, json.loads(text) if text.startswith("{") else text


def test_a_write_that_is_not_json_is_refused_before_it_reaches_the_master(server: Served) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, body = call(server, "POST", WRITE, {"Content-Type": content_type}, b"{}")
        assert status == 415, (content_type, body)
        assert "Content-Type: application/json" in body["error"]
    status, body = call(server, "POST", WRITE)  # no Content-Type and no body, as curl -X POST
    assert status == 415 and "no Content-Type" in body["error"]
    status, body = call(server, "POST", WRITE, JSON)  # an empty JSON POST passes the checks
    assert status == 404 and "no topology named 'wordcount'" in body["error"]
    status, body = call(server, "POST", WRITE, {"Content-Type": "Application/JSON; charset=utf-8"})
    assert status == 404


def test_a_foreign_origin_is_refused(server: Served) -> None:
    own = f"http://127.0.0.1:{server.port}"
    for origin in ("http://evil.example", "null", f"http://localhost:{server.port}", own + "0"):
        status, body = call(server, "POST", WRITE, {**JSON, "Origin": origin})
        assert status == 403 and "cross-origin" in body["error"], origin
        status, _ = call(server, "GET", "/api/v1/topologies", {"Origin": origin})
        assert status == 403, origin
    status, _ = call(server, "POST", WRITE, {**JSON, "Origin": own})
    assert status == 404, "the page's own origin passes"
    status, _ = call(server, "POST", WRITE, {**JSON, "Origin": "http://127.0.0.1"}, b"")
    assert status == 403, "another port is another origin"


def test_a_foreign_host_is_refused_on_loopback(server: Served) -> None:
    """DNS rebinding: the browser sends the attacker's name as Host."""
    for host in (
        "evil.example",
        f"evil.example:{server.port}",
        "10.0.0.5",
        "localhost.evil.example",
    ):
        for path in ("/api/v1/topologies", "/health", "/", "/metrics"):
            status, body = call(server, "GET", path, {"Host": host})
            assert status == 403, (host, path)
            assert "--ui-allowed-hosts" in body["error"]
        status, _ = call(server, "POST", WRITE, {**JSON, "Host": host})
        assert status == 403
    for host in ("localhost", f"localhost:{server.port}", "127.0.0.1", "127.9.9.9:1", "[::1]:80"):
        status, body = call(server, "GET", "/api/v1/topologies", {"Host": host})
        assert (status, body) == (200, {"topologies": []}), host
    status, body = call(server, "GET", "/health", {"Host": "bad host:x"})
    assert status == 400 and "malformed" in body["error"]


def test_allowed_hosts_are_honoured() -> None:
    served = serve(allowed_hosts="rayflow.example, .corp.example")
    try:
        for host in ("rayflow.example", "RAYFLOW.example:8744", "corp.example", "ui.corp.example"):
            assert call(served, "GET", "/health", {"Host": host})[0] == 200, host
        for host in ("evil.example", "rayflow.example.evil.example", "evilcorp.example"):
            assert call(served, "GET", "/health", {"Host": host})[0] == 403, host
        origin = {"Host": "ui.corp.example", "Origin": "https://ui.corp.example"}
        assert call(served, "POST", WRITE, {**JSON, **origin})[0] == 404
    finally:
        served.close()
    with pytest.raises(UsageError, match="without ports"):
        serve(allowed_hosts="rayflow.example:8744")


def test_beyond_loopback_needs_a_token_and_answers_any_host_unless_told() -> None:
    with pytest.raises(UsageError, match="without a token"):
        serve_in_thread(JobMaster(MemoryRegistry()), "0.0.0.0", 0)
    served = serve("0.0.0.0", token=TOKEN)
    try:
        # a kubelet probe or a Prometheus scrape by pod IP, and a Service name
        for host in ("10.244.1.7:8744", "wc-rayflow-ui:8744", "localhost"):
            assert call(served, "GET", "/health", {"Host": host})[0] == 200, host
        status, body = call(served, "POST", WRITE, {**JSON, "Host": "10.244.1.7:8744"})
        assert status == 401 and "Bearer" in body["error"]
        wrong = {**JSON, "Authorization": "Bearer nope"}
        assert call(served, "POST", WRITE, wrong)[0] == 401
        right = {**JSON, "Authorization": f"Bearer {TOKEN}"}
        assert call(served, "POST", WRITE, right)[0] == 404
        assert call(served, "POST", WRITE, {**right, "Content-Type": "text/plain"})[0] == 415
    finally:
        served.close()
    listed = serve("0.0.0.0", token=TOKEN, allowed_hosts="rayflow.example")
    try:
        for host in ("rayflow.example", "10.244.1.7:8744", "[fd00::7]:8744", "127.0.0.1"):
            assert call(listed, "GET", "/health", {"Host": host})[0] == 200, host
        assert call(listed, "GET", "/health", {"Host": "evil.example"})[0] == 403
    finally:
        listed.close()


def read_until_closed(sock: socket.socket, deadline: float, drip: bytes = b"") -> bytes:
    """What the server sends until it closes the connection; ``drip`` sends one more byte of a
    never-ending header each time the server has said nothing for 0.2 s."""
    sock.settimeout(0.2)
    received = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            if drip:
                sock.sendall(drip)
            continue
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept the connection open; it sent {received!r}")


def test_a_client_that_never_finishes_its_headers_is_disconnected() -> None:
    served = serve(limits=Limits(header_timeout=1.0, idle_timeout=30.0))
    try:
        slow = socket.create_connection(("127.0.0.1", served.port))
        started = time.monotonic()
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        answer = read_until_closed(slow, started + 10, drip=b"a")  # slowloris: a byte at a time
        elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer
        assert 0.9 <= elapsed < 5, f"closed after {elapsed:.1f}s, the limit is 1s"
        assert call(served, "GET", "/health")[0] == 200, "others are still served"
    finally:
        served.close()


def test_an_idle_keep_alive_connection_is_closed() -> None:
    served = serve(limits=Limits(header_timeout=30.0, idle_timeout=1.0))
    try:
        sock = socket.create_connection(("127.0.0.1", served.port))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        started = time.monotonic()
        answer = read_until_closed(sock, started + 10)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert 0.9 <= time.monotonic() - started < 5
        # a second request on the connection whose head stalls is closed in the idle time too
        sock = socket.create_connection(("127.0.0.1", served.port))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /health HTTP/1.1\r\n")
        started = time.monotonic()
        answer = read_until_closed(sock, started + 10)
        assert answer.count(b"HTTP/1.1 200") == 1 and time.monotonic() - started < 5
    finally:
        served.close()


def test_connections_beyond_the_cap_are_refused_until_one_closes() -> None:
    served = serve(limits=Limits(max_connections=3))
    held = []
    try:
        for _ in range(3):  # three keep-alive connections, each answered once: surely counted
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            held.append(sock)
        extra = socket.create_connection(("127.0.0.1", served.port))
        answer = read_until_closed(extra, time.monotonic() + 10)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"3 connections open" in answer
        held.pop().close()
        deadline = time.monotonic() + 10
        while call(served, "GET", "/health")[0] != 200:  # the server sees the close soon after
            assert time.monotonic() < deadline, "a closed connection did not free its place"
    finally:
        for sock in held:
            sock.close()
        served.close()


def test_a_body_too_big_or_too_slow_is_refused() -> None:
    served = serve(limits=Limits(max_body_bytes=1000, body_timeout=1.0))
    try:
        status, body = call(
            served, "POST", WRITE, JSON, b'{"wait": 1, "x": "' + b"a" * 2000 + b'"}'
        )
        assert status == 413 and "over 1000 bytes" in body["error"]
        sock = socket.create_connection(("127.0.0.1", served.port))
        started = time.monotonic()
        sock.sendall(
            f"POST {WRITE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{".encode()
        )
        answer = read_until_closed(sock, started + 10)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"did not arrive within 1s" in answer and time.monotonic() - started < 5
    finally:
        served.close()


def test_the_ui_is_served_to_its_own_origin(server: Served) -> None:
    """What a browser on the UI's page sends: Host and Origin of the page, JSON writes."""
    page = {"Host": f"127.0.0.1:{server.port}"}
    status, text = call(server, "GET", "/", page)
    assert status == 200 and "rayflow" in text
    status, text = call(server, "GET", "/ui/app.js", page)
    assert status == 200 and '"Content-Type": "application/json"' in text
    origin = {**page, **JSON, "Origin": f"http://127.0.0.1:{server.port}"}
    assert call(server, "POST", WRITE, origin, b"{}")[0] == 404
