"""The HTTP side of every connection: bounds on the request head, before any app runs.

uvicorn's httptools protocol takes a request head of any size, waits for it
for ever, and upgrades every WebSocket request it is given. The subclass here
answers ``431`` once the head passes ``CHATGATE_MAX_HEADER_BYTES`` (counted as
bytes arrive, so the parser never holds more), closes a connection whose head
is not complete within ``CHATGATE_HANDSHAKE_TIMEOUT_S``, answers ``421`` to a
``Host`` the server does not serve (:mod:`chatgate.transport.origins`), and
refuses an upgrade with ``503`` and ``Retry-After`` while
``CHATGATE_MAX_CONNECTIONS`` sockets are open.

It uses attributes that are not uvicorn's public API: :data:`HTTP_INTERNALS`
lists them and ``tests/unit/test_uvicorn_internals.py`` names any a release moves.
"""

from __future__ import annotations

import asyncio
import http
import logging
from dataclasses import dataclass, field
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chatgate.settings import Settings
from chatgate.transport.head_deadlines import HeadDeadlines
from chatgate.transport.origins import allowed_hosts, host_allowed

log = logging.getLogger("chatgate.transport.uvicorn_http")

RETRY_AFTER_S = 5
"""What a refused upgrade tells the client to wait: long enough for sockets to close."""

HTTP_INTERNALS = (
    # methods overridden or called on HttpToolsProtocol
    "connection_made",
    "connection_lost",
    "data_received",
    "on_headers_complete",
    "on_message_complete",
    "handle_websocket_upgrade",
    "_should_upgrade",
    "_unsupported_upgrade_warning",
    "_unset_keepalive_if_required",
    "send_400_response",
    # instance attributes read
    "config",
    "loop",
    "logger",
    "parser",
    "headers",
    "transport",
    "server_state",
)
"""What :class:`GatewayHttpProtocol` uses of uvicorn's httptools protocol beyond asyncio's."""


@dataclass(slots=True)
class TransportLimits:
    """The limits the server's protocols enforce, and the count of open WebSockets."""

    max_header_bytes: int = 16384
    handshake_timeout_s: float = 5.0
    max_connections: int = 10_000
    hosts: frozenset[str] | None = None
    """Host names served; None: any."""
    rate_limit_messages: int = 20
    rate_limit_window_s: float = 10.0
    open_sockets: int = 0
    """WebSockets open in this process: counted by the WebSocket protocol."""
    head_deadlines: HeadDeadlines | None = field(default=None, repr=False, compare=False)
    """The handshake timeouts of the heads still arriving (made by the first connection)."""

    def deadlines_on(self, loop: asyncio.AbstractEventLoop) -> HeadDeadlines:
        """The head deadlines of the connections served on ``loop``."""
        deadlines = self.head_deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self.head_deadlines = HeadDeadlines(loop, self.handshake_timeout_s)
        return deadlines

    @classmethod
    def from_settings(cls, settings: Settings) -> TransportLimits:
        """The limits ``settings`` configure."""
        configured = settings.allowed_hosts
        return cls(
            max_header_bytes=settings.max_header_bytes,
            handshake_timeout_s=settings.handshake_timeout_s,
            max_connections=settings.max_connections,
            hosts=allowed_hosts(
                tuple(h.strip() for h in configured.split(",") if h.strip())
                if configured
                else None,
                settings.bind_host,
                settings.origins,
            ),
            rate_limit_messages=settings.rate_limit_messages,
            rate_limit_window_s=settings.rate_limit_window_s,
        )


class GatewayConfig(uvicorn.Config):
    """uvicorn's configuration carrying the gateway's :class:`TransportLimits`."""

    def __init__(self, app: Any, *, limits: TransportLimits, **options: Any) -> None:
        super().__init__(app, **options)
        self.limits = limits


# Protocols built from a plain uvicorn.Config (the gateway run by uvicorn's own
# command line) share these defaults and one count of open sockets.
_DEFAULT_LIMITS = TransportLimits()


def limits_of(config: uvicorn.Config) -> TransportLimits:
    """The limits of the server that ``config`` configures."""
    return config.limits if isinstance(config, GatewayConfig) else _DEFAULT_LIMITS


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that is refused."""


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on the request head and on open sockets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits_of(self.config)
        # Bytes of the current request head seen so far; None once it is complete.
        self._head_seen: int | None = 0
        self._heads_done = 0
        self._head_deadlines: HeadDeadlines | None = None
        self._head_timed = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._refusal: bytes | None = None
        # A final response was sent: what still arrives is read and dropped.
        self._lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock on the first request head."""
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the head timer with the connection."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser, never more than the header limit of an incomplete head."""
        if self._lingering:
            return
        seen = self._head_seen
        if seen is None:
            self._feed(data)
            return
        if not self._head_timed:
            self._arm_head_timer()
        room = self._limits.max_header_bytes - seen
        if len(data) <= room:
            self._head_seen = seen + len(data)
            self._feed(data)
            return
        heads_done = self._heads_done
        self._head_seen = seen + room
        self._feed(data[:room])
        if self._lingering or self.transport.is_closing():
            return
        if self.transport.get_protocol() is not self:
            return
        if self._heads_done == heads_done:
            limit = self._limits.max_header_bytes
            self._respond(431, f"request header block over {limit} bytes\n")
            return
        self.data_received(data[room:])

    def _feed(self, data: bytes) -> None:
        # uvicorn's data_received, with the refusals of on_headers_complete.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._send_and_linger(self._refusal)
                return
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            self.send_400_response(message)

    def on_headers_complete(self) -> None:
        """The head is complete: refuse a host not served or an upgrade past the cap."""
        self._head_seen = None
        self._heads_done += 1
        self._cancel_head_timer()
        limits = self._limits
        if limits.hosts is not None and not host_allowed(_host_of(self.headers), limits.hosts):
            self._refusal = _response(421, "host not served here (CHATGATE_ALLOWED_HOSTS)\n")
            raise _Refused
        # The cheap comparison first: the upgrade checks walk the headers.
        if (
            limits.open_sockets >= limits.max_connections
            and self.parser.should_upgrade()
            and self._should_upgrade()
        ):
            log.warning(
                "upgrade refused with 503: %d sockets open (CHATGATE_MAX_CONNECTIONS)",
                limits.open_sockets,
            )
            self._refusal = _response(
                503,
                "too many open connections; retry later\n",
                retry_after=RETRY_AFTER_S,
            )
            raise _Refused
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """A request is complete: the next bytes start a new head."""
        super().on_message_complete()
        self._head_seen = 0

    def handle_websocket_upgrade(self) -> None:
        """Hand the socket to the WebSocket protocol, then let go of the parser.

        The parser calls back bound methods of this protocol: a reference
        cycle which, once the socket is upgraded, only the garbage collector
        would break, and it holds the request's scope, the flow control and
        the transport. Dropped here, they go at once, and the collector no
        longer runs every few hundred handshakes to find them.
        """
        super().handle_websocket_upgrade()
        del self.parser

    def _respond(self, status: int, body: str) -> None:
        self._send_and_linger(_response(status, body))

    def _send_and_linger(self, response: bytes) -> None:
        """Send a final response, then read and drop what the client still sends.

        Closing with unread bytes makes the kernel answer with a reset, and the
        client may lose the response before reading it; so this end shuts its
        side, and closes when the client does or after the handshake timeout.
        """
        self._head_seen = None
        self._lingering = True
        self._cancel_head_timer()
        transport = self.transport
        transport.write(response)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._linger_timer = self.loop.call_later(self._limits.handshake_timeout_s, transport.close)

    def _arm_head_timer(self) -> None:
        deadlines = self._head_deadlines
        if deadlines is None:
            deadlines = self._head_deadlines = self._limits.deadlines_on(self.loop)
        deadlines.start(self)
        self._head_timed = True

    def _cancel_head_timer(self) -> None:
        if self._head_timed:
            self._head_timed = False
            assert self._head_deadlines is not None  # noqa: S101 - set when timed
            self._head_deadlines.stop(self)
        timer, self._linger_timer = self._linger_timer, None
        if timer is not None:
            timer.cancel()

    def head_timed_out(self) -> None:
        """The request head did not complete within the handshake timeout: close."""
        self._head_timed = False
        if self._head_seen is not None and not self.transport.is_closing():
            log.debug("closed a connection whose request head did not complete in time")
            self.transport.close()


def _host_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's first ``Host`` header as text, or None."""
    for name, value in headers:
        if name == b"host":
            return value.decode("latin-1")
    return None


def _response(status: int, body: str, *, retry_after: int | None = None) -> bytes:
    """A complete ``Connection: close`` response."""
    phrase = http.HTTPStatus(status).phrase
    encoded = body.encode()
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        "content-type: text/plain; charset=utf-8",
        f"content-length: {len(encoded)}",
        "connection: close",
    ]
    if retry_after is not None:
        lines.append(f"retry-after: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + encoded
