"""Opening one authenticated socket, with every failure turned into a typed error.

Both the :class:`~chatgate.client.Client` and the probe open sockets here, so
they see a refused upgrade, a close and a network failure the same way.
"""

from __future__ import annotations

import asyncio
import enum
import json
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.typing import Subprotocol

from chatgate.auth.credentials import PROTOCOL_NAME
from chatgate.client.errors import (
    ClientError,
    ConnectFailed,
    ConnectionLost,
    FailureKind,
    HandshakeRejected,
    ServerClosed,
    UnexpectedFrame,
)

PROTOCOL = PROTOCOL_NAME
"""The subprotocol every chatgate client offers and the server selects."""

BEARER_PREFIX = "bearer."
MAX_FRAME_BYTES = 4 * 1024 * 1024


class AuthMethod(enum.StrEnum):
    """How the token is presented (docs/protocol.md section 2)."""

    HEADER = "header"
    """``Authorization: Bearer <jwt>`` on the upgrade (server-side clients)."""
    SUBPROTOCOL = "subprotocol"
    """``Sec-WebSocket-Protocol: chatgate.v1, bearer.<jwt>`` (what browsers can do)."""
    MESSAGE = "message"
    """A first ``{"type": "auth"}`` message after the upgrade."""


@dataclass(slots=True)
class Opened:
    """An authenticated socket and what the server said when it opened."""

    ws: ClientConnection = field(repr=False)
    established: dict[str, Any]
    opened_at: float
    """``time.monotonic()`` when the upgrade completed."""
    handshake_s: float
    """Seconds from the start of the TCP connection to the end of the upgrade."""

    @property
    def connection_id(self) -> str | None:
        """The server's id of this connection."""
        value = self.established.get("connection_id")
        return value if isinstance(value, str) else None

    @property
    def user_id(self) -> str | None:
        """The user the server authenticated."""
        value = self.established.get("user_id")
        return value if isinstance(value, str) else None


def handshake_options(
    token: str | None, auth: AuthMethod, headers: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[Subprotocol]]:
    """The extra headers and the subprotocols to offer for ``auth``."""
    extra = dict(headers or {})
    offered = [Subprotocol(PROTOCOL)]
    if token is not None and auth is AuthMethod.HEADER:
        extra["Authorization"] = f"Bearer {token}"
    elif token is not None and auth is AuthMethod.SUBPROTOCOL:
        offered.append(Subprotocol(BEARER_PREFIX + token))
    return extra, offered


def close_error(exc: ConnectionClosed) -> ServerClosed | ConnectionLost:
    """The typed error for a closed connection: the server's close frame, or a drop."""
    received = exc.rcvd
    if received is None:
        return ConnectionLost()
    return ServerClosed(received.code, received.reason)


_FAILURE_KINDS: tuple[
    tuple[type[BaseException] | tuple[type[BaseException], ...], FailureKind], ...
] = (
    (socket.gaierror, FailureKind.DNS),
    ((ssl.SSLError, ssl.CertificateError), FailureKind.TLS),
    (ConnectionRefusedError, FailureKind.REFUSED),
    (TimeoutError, FailureKind.TIMEOUT),
    ((InvalidHandshake, InvalidURI, EOFError), FailureKind.HANDSHAKE),
    (OSError, FailureKind.NETWORK),
)
"""Checked in order: a TLS or DNS error is also an OSError."""


def connect_error(exc: BaseException) -> ClientError:
    """The typed error for a failure while opening the socket.

    Raises:
        BaseException: ``exc`` itself when it is not a connection failure.
    """
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return HandshakeRejected(response.status_code, dict(response.headers), bytes(response.body))
    for types, kind in _FAILURE_KINDS:
        if isinstance(exc, types):
            return ConnectFailed(kind, _describe(exc))
    raise exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within the open timeout"
    reason = getattr(exc, "reason", None) if isinstance(exc, ssl.SSLError) else None
    if reason:
        return str(reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


async def upgrade(
    url: str,
    token: str | None = None,
    *,
    auth: AuthMethod = AuthMethod.HEADER,
    origin: str | None = None,
    headers: Mapping[str, str] | None = None,
    open_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    proxy: str | Literal[True] | None = None,
) -> ClientConnection:
    """Open the WebSocket (DNS, TCP, TLS, upgrade) without waiting for any frame.

    Raises:
        ConnectFailed: DNS, refused, TLS, timeout or a broken handshake.
        HandshakeRejected: the upgrade was answered with an HTTP status.
    """
    extra, offered = handshake_options(token, auth, headers)
    options: dict[str, Any] = {}
    if ssl_context is not None:
        options["ssl"] = ssl_context
    try:
        return await connect(
            url,
            additional_headers=extra,
            subprotocols=offered,
            origin=origin,  # type: ignore[arg-type]
            open_timeout=open_timeout,
            close_timeout=open_timeout,
            proxy=proxy,
            compression=None,
            max_size=MAX_FRAME_BYTES,
            **options,
        )
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI, EOFError) as exc:
        raise connect_error(exc) from exc


async def open_socket(
    url: str,
    token: str | None,
    *,
    auth: AuthMethod = AuthMethod.HEADER,
    origin: str | None = None,
    headers: Mapping[str, str] | None = None,
    open_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    proxy: str | Literal[True] | None = None,
) -> Opened:
    """Open a socket, authenticate, and wait for ``connection_established``.

    Raises:
        ConnectFailed: no socket (see :func:`upgrade`).
        HandshakeRejected: the upgrade was answered with an HTTP status.
        ServerClosed: the server closed instead, with the code of the table.
        ConnectionLost: the connection dropped without a close frame.
        UnexpectedFrame: the first frame was not ``connection_established``.
    """
    started = time.monotonic()
    ws = await upgrade(
        url,
        token,
        auth=auth,
        origin=origin,
        headers=headers,
        open_timeout=open_timeout,
        ssl_context=ssl_context,
        proxy=proxy,
    )
    opened_at = time.monotonic()
    try:
        if auth is AuthMethod.MESSAGE and token is not None:
            await ws.send(json.dumps({"type": "auth", "token": token}))
        frame = await first_frame(ws, open_timeout)
    except BaseException:
        await ws.close()
        raise
    if frame.get("type") != "connection_established":
        await ws.close()
        raise UnexpectedFrame(f"expected connection_established, got {frame.get('type')!r}")
    payload = frame.get("payload")
    return Opened(ws, payload if isinstance(payload, dict) else {}, opened_at, opened_at - started)


async def first_frame(ws: ClientConnection, within_s: float) -> dict[str, Any]:
    """Receive one JSON object frame.

    Raises:
        ServerClosed: the server closed with a close code.
        ConnectionLost: the connection dropped.
        ConnectFailed: nothing came within ``within_s`` seconds (kind ``timeout``).
        UnexpectedFrame: the frame is not a JSON object.
    """
    try:
        async with asyncio.timeout(within_s):
            raw = await ws.recv()
    except ConnectionClosed as exc:
        raise close_error(exc) from None
    except TimeoutError:
        raise ConnectFailed(FailureKind.TIMEOUT, f"no frame within {within_s:g}s") from None
    return decode_frame(raw)


def decode_frame(raw: str | bytes) -> dict[str, Any]:
    """Decode one server frame.

    Raises:
        UnexpectedFrame: not UTF-8 JSON, or not an object.
    """
    try:
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise UnexpectedFrame("a frame that is not JSON") from None
    if not isinstance(frame, dict):
        raise UnexpectedFrame("a frame that is not a JSON object")
    return frame
