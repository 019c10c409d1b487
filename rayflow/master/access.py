"""Whom the job master's HTTP port answers: the checks every request passes before its handler.

Three attacks shape them. A page on another site can send a *simple* request (a ``text/plain``
POST, no CORS preflight) to ``http://127.0.0.1:8744``; a page can rebind its own host name to
127.0.0.1 (DNS rebinding) and then read the API as if it were same-origin; and on a network, anyone
can send anything. So:

1. ``Host`` must name this server. A server bound to loopback answers only to loopback names
   (``localhost``, ``127.x.x.x``, ``[::1]``, with or without a port) and to ``allowed_hosts``
   (``--ui-allowed-hosts``). A server bound beyond loopback answers to any ``Host`` unless
   ``allowed_hosts`` is given; then to those names, loopback names, and IP addresses (a
   rebinding page can only send a *name*; probes and Prometheus scrapes come by address).
   Anything else: 403.
2. ``Origin``, when a browser sends one, must be this server's own: its host and port must be
   the ``Host``'s (a missing port is the scheme's default; the scheme is not compared, so a
   TLS-terminating proxy in front keeps working). Otherwise 403.
3. A write (any method but GET, HEAD, OPTIONS) needs ``Content-Type: application/json``, also
   with an empty body (a browser cannot send that cross-site without a preflight, which this
   server never grants): 415 otherwise.
4. A write needs ``Authorization: Bearer <token>`` when the server has a token (401). A server
   bound beyond loopback must have one: :class:`AccessPolicy` refuses to exist without it, so
   ``rayflow master`` and ``rayflow run`` refuse to start (as Flink's and Storm's UIs are only as
   safe as the network, we would rather fail loudly than serve writes to the network).

>>> policy = AccessPolicy("127.0.0.1")
>>> policy.refusal("GET", {"Host": "localhost:8744"})
>>> policy.refusal("GET", {"Host": "evil.example:8744"})[0]
403
>>> policy.refusal("POST", {"Host": "127.0.0.1:8744", "Content-Type": "text/plain"})[0]
415
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from rayflow.errors import UsageError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback(host: str) -> bool:
    """Whether a bind address or a ``Host`` name (without its port) is this machine only.

    >>> [is_loopback(h) for h in ("127.0.0.1", "127.4.5.6", "::1", "[::1]", "LOCALHOST.")]
    [True, True, True, True, True]
    >>> [is_loopback(h) for h in ("0.0.0.0", "", "::", "10.0.0.5", "localhost.evil.example")]
    [False, False, False, False, False]
    """
    name = _bare(host)
    if name == "localhost":
        return True
    address = _address(name)
    return address is not None and address.is_loopback


def split_host(header: str) -> tuple[str, int | None] | None:
    """A ``Host`` header's name and port (``None`` if it has none); ``None`` if it is malformed.

    >>> split_host("localhost:8744"), split_host("[::1]:80"), split_host("[::1]"), split_host("x")
    (('localhost', 8744), ('::1', 80), ('::1', None), ('x', None))
    >>> split_host("x:port") is None, split_host("") is None, split_host("a b") is None
    (True, True, True)
    """
    text = header.strip()
    port_text = ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
    elif text.count(":") == 1:
        name, port_text = text.split(":")
    else:
        name = text
    if not name or any(c.isspace() or c in "/@?#" for c in name):
        return None
    if port_text == "":
        return _bare(name), None
    if not port_text.isdigit() or int(port_text) > 65535:
        return None
    return _bare(name), int(port_text)


def parse_allowed_hosts(value: str | Iterable[str]) -> tuple[str, ...]:
    """``--ui-allowed-hosts``: a comma-separated list (or a list) of host names without ports;
    ``.example.com`` (or ``*.example.com``) allows that domain and its subdomains, ``*`` allows
    every name.

    >>> parse_allowed_hosts("rayflow.example, .corp.example,[::1]")
    ('rayflow.example', '.corp.example', '::1')
    >>> parse_allowed_hosts("rayflow.example:8744")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rayflow.errors.UsageError: --ui-allowed-hosts: 'rayflow.example:8744' is not a host name ...
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    hosts = []
    for item in items:
        entry = item.strip()
        if not entry:
            continue
        if entry.startswith("*."):
            entry = entry[1:]  # the same as ".example.com"
        name = entry[1:] if entry.startswith(".") else entry
        parsed = split_host(name) if name != "*" else ("*", None)
        if parsed is None or parsed[1] is not None or (":" in name and _address(name) is None):
            raise UsageError(
                f"--ui-allowed-hosts: {entry!r} is not a host name (give names without ports, "
                "separated by commas)"
            )
        hosts.append(("." if entry.startswith(".") else "") + parsed[0])
    return tuple(hosts)


@dataclass(frozen=True)
class AccessPolicy:
    """The checks of the module docstring for a server bound to ``bind_host``.

    >>> AccessPolicy("0.0.0.0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rayflow.errors.UsageError: the web UI and REST API would listen on 0.0.0.0 without a token: ...
    >>> wide = AccessPolicy("0.0.0.0", token="t", allowed_hosts=("rayflow.example",))
    >>> [wide.host_allowed(h) for h in ("rayflow.example", "10.1.2.3", "localhost", "evil.example")]
    [True, True, True, False]
    """

    bind_host: str
    token: str = ""
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.token and not is_loopback(self.bind_host):
            raise UsageError(
                f"the web UI and REST API would listen on {self.bind_host or 'every address'} "
                "without a token: give one (--ui-token or RAYFLOW_UI_TOKEN) or bind to "
                "127.0.0.1 (--ui-host)"
            )
        object.__setattr__(self, "allowed_hosts", parse_allowed_hosts(self.allowed_hosts))

    @property
    def loopback(self) -> bool:
        """Whether the server listens on this machine only."""
        return is_loopback(self.bind_host)

    def host_allowed(self, name: str) -> bool:
        """Whether a ``Host`` name (without its port) is one this server answers to."""
        name = _bare(name)
        if is_loopback(name) or any(_matches(name, allowed) for allowed in self.allowed_hosts):
            return True
        if self.loopback:
            return False
        return not self.allowed_hosts or _address(name) is not None

    def refusal(self, method: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        """``(status, message)`` when a request must be refused, ``None`` when it may pass."""
        host_header = headers.get("Host")
        if host_header is None:
            return 400, "the request has no Host header"
        host = split_host(host_header)
        if host is None:
            return 400, f"the Host header {host_header!r} is malformed"
        if not self.host_allowed(host[0]):
            return 403, (
                f"this server does not answer to the host name {host[0]!r} (a DNS rebinding "
                "page would send one like it); start it with --ui-allowed-hosts "
                f"{host[0]} if that is a name of this machine"
            )
        origin = headers.get("Origin")
        if origin is not None and not same_origin(origin, host):
            return 403, (
                f"cross-origin request refused: Origin {origin!r} is not this server "
                f"({host_header})"
            )
        if method.upper() in SAFE_METHODS:
            return None
        content_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            got = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
            return 415, (
                f"a {method.upper()} needs the header 'Content-Type: application/json' (also "
                f"with an empty body); this one has {got}"
            )
        if self.token and not authorized(headers.get("Authorization", ""), self.token):
            return 401, "this call needs the header 'Authorization: Bearer <token>'"
        return None


def same_origin(origin: str, host: tuple[str, int | None]) -> bool:
    """Whether an ``Origin`` header names the server that ``host`` (a split ``Host``) reached.

    >>> same_origin("http://127.0.0.1:8744", ("127.0.0.1", 8744))
    True
    >>> same_origin("https://rayflow.example", ("rayflow.example", None))
    True
    >>> [same_origin(o, ("127.0.0.1", 8744)) for o in ("http://evil.example", "null", "http://127.0.0.1:9")]
    [False, False, False]
    """
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port
    except ValueError:
        return False
    default = DEFAULT_PORTS.get(parts.scheme.lower())
    if default is None or not parts.hostname or parts.path or parts.query:
        return False
    name, port = host
    return _bare(parts.hostname) == name and (origin_port or default) == (port or default)


def authorized(header: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (compared in constant time)."""
    if not header.startswith("Bearer "):
        return False
    return secrets.compare_digest(header[7:].strip().encode(), token.encode())


def _bare(host: str) -> str:
    name = host.strip().lower().rstrip(".")
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


def _address(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(_bare(name))
    except ValueError:
        return None


def _matches(name: str, allowed: str) -> bool:
    if allowed == "*":
        return True
    if allowed.startswith("."):
        return name == allowed[1:] or name.endswith(allowed)
    return name == allowed
