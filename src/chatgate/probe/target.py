"""The deployment under test: its socket URL and the HTTP base beside it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

LOCAL_URL = "ws://localhost:8000/ws"
SOCKET_PATH = "/ws"


class BadTarget(ValueError):
    """The URL cannot name a chatgate socket (a usage error)."""


def default_url(environ: Mapping[str, str] | None = None) -> str:
    """``wss://$STAGING_HOST/ws`` when ``STAGING_HOST`` is set, else the local server."""
    env = os.environ if environ is None else environ
    host = env.get("STAGING_HOST", "").strip()
    if host:
        return f"wss://{host.removeprefix('https://').rstrip('/')}{SOCKET_PATH}"
    return LOCAL_URL


@dataclass(frozen=True, slots=True)
class Target:
    """A socket URL split into what the probe's steps need."""

    url: str
    host: str
    port: int
    secure: bool
    path: str
    http_base: str
    """Where ``/healthz``, ``/diagnostics`` and ``/api`` live: the socket URL minus ``/ws``."""

    @classmethod
    def parse(cls, url: str) -> Target:
        """Parse a ``ws://`` or ``wss://`` URL.

        Raises:
            BadTarget: another scheme, no host, a query string, or a bad port.
        """
        parts = urlsplit(url)
        if parts.scheme not in {"ws", "wss"}:
            raise BadTarget(f"{url!r}: the URL must start with ws:// or wss://")
        if not parts.hostname:
            raise BadTarget(f"{url!r}: the URL names no host")
        if parts.query:
            raise BadTarget(f"{url!r}: no query string (tokens never go in the URL)")
        try:
            port = parts.port or (443 if parts.scheme == "wss" else 80)
        except ValueError:
            raise BadTarget(f"{url!r}: the port is not a number from 0 to 65535") from None
        path = parts.path or "/"
        prefix = path.rsplit("/", 1)[0] if path != "/" else ""
        scheme = "https" if parts.scheme == "wss" else "http"
        return cls(
            url=url,
            host=parts.hostname,
            port=port,
            secure=parts.scheme == "wss",
            path=path,
            http_base=f"{scheme}://{parts.netloc}{prefix}",
        )

    @property
    def at_socket_path(self) -> bool:
        """Whether the URL ends with the gateway's socket path."""
        return self.path.rstrip("/").endswith(SOCKET_PATH)
