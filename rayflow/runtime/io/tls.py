"""TLS for the data plane's channels, with the cluster's own certificates.

Where Ray runs with TLS (``RAY_USE_TLS=1`` and ``RAY_TLS_SERVER_CERT``, ``RAY_TLS_SERVER_KEY``,
``RAY_TLS_CA_CERT`` on every node), task channels use the same certificates; ``channel.tls``
turns it on or off explicitly, and ``channel.tls.cert``/``.key``/``.ca`` name other files. Both
ends present a certificate and check the other's against the CA (mutual TLS); host names are not
checked, since tasks address each other by IP and every node has the cluster's one certificate,
as Ray's own TLS does.

>>> TlsFiles.from_settings("false", {}) is None
True
>>> TlsFiles.from_settings("auto", {}) is None
True
>>> TlsFiles.from_settings("auto", {"RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": "c.pem",
...     "RAY_TLS_SERVER_KEY": "k.pem", "RAY_TLS_CA_CERT": "ca.pem"})
TlsFiles(cert='c.pem', key='k.pem', ca='ca.pem')
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from rayflow.errors import ConfigError

_ON = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of one task's TLS: its certificate, its key, and the CA both sides trust."""

    cert: str
    key: str
    ca: str

    @classmethod
    def from_settings(
        cls,
        mode: str,
        environ: Mapping[str, str],
        cert: str = "",
        key: str = "",
        ca: str = "",
    ) -> TlsFiles | None:
        """The files to use, or None for plain TCP. ``mode`` is ``channel.tls``: ``auto`` (on
        where Ray uses TLS), ``true`` or ``false``."""
        mode = mode.strip().lower()
        ray_tls = environ.get("RAY_USE_TLS", "").strip().lower() in _ON
        if mode in ("false", "off", "no", "0") or (mode == "auto" and not ray_tls):
            return None
        files = cls(
            cert or environ.get("RAY_TLS_SERVER_CERT", ""),
            key or environ.get("RAY_TLS_SERVER_KEY", ""),
            ca or environ.get("RAY_TLS_CA_CERT", ""),
        )
        named = zip(("cert", "key", "ca"), files.paths(), strict=True)
        missing = [name for name, path in named if not path]
        if missing:
            raise ConfigError(
                "channel.tls is on but no "
                + ", ".join(f"channel.tls.{name}" for name in missing)
                + " is given (set them, or RAY_TLS_SERVER_CERT, RAY_TLS_SERVER_KEY and "
                "RAY_TLS_CA_CERT as for Ray's own TLS)"
            )
        return files

    def paths(self) -> tuple[str, str, str]:
        return self.cert, self.key, self.ca

    def server_context(self) -> ssl.SSLContext:
        """For a task's data server: present our certificate, require the client's."""
        return self._context(ssl.Purpose.CLIENT_AUTH)

    def client_context(self) -> ssl.SSLContext:
        """For a channel into another task: present our certificate, check the server's."""
        return self._context(ssl.Purpose.SERVER_AUTH)

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(purpose, cafile=self.ca)
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"channel.tls: cannot load the certificate {self.cert!r}, key {self.key!r} or "
                f"CA {self.ca!r} on this node: {exc}"
            ) from exc
        context.check_hostname = False  # addressed by IP; the CA is the cluster's own
        context.verify_mode = ssl.CERT_REQUIRED  # both ways: mutual TLS
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context
