"""Every reach into uvicorn's and websockets' internals, in one module.

uvicorn's websockets-sansio protocol closes some sockets itself: an oversized
frame, a broken frame, a missed keepalive pong, a server shutdown. Left alone,
those closes carry websockets' own codes and reasons (1011 for a missed pong).
The subclasses here give each one the code and ``"<slug>: <detail>"`` reason of
the wire contract and count it in the close statistics.

The protocol also offers the ``chatgate.send_many`` ASGI extension
(:mod:`chatgate.transport.send_many`): a run's events are queued in bursts, and
one write per frame was the largest cost of a chat round trip.

These subclasses use attributes that are not part of uvicorn's or websockets'
public API; :data:`UVICORN_INTERNALS` and :data:`WEBSOCKETS_INTERNALS` list
them, and ``tests/unit/test_uvicorn_internals.py`` fails naming the one a new
release moved. The pins in ``pyproject.toml`` stop below the next major version.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from chatgate.closecodes import CloseCode, close_reason
from chatgate.logs import correlation_id
from chatgate.transport.send_many import SEND_MANY, SEND_MANY_EXTENSION, serialize_text_frames

log = logging.getLogger("chatgate.transport.uvicorn_ws")

_RFC_TOO_BIG = 1009
_RFC_INTERNAL = 1011

UVICORN_INTERNALS = (
    # methods overridden or called on WebSocketsSansIOProtocol
    "handle_connect",
    "handle_parser_exception",
    "keepalive_timeout",
    "shutdown",
    "send",
    "stop_keepalive",
    # instance attributes read or written
    "conn",
    "app_state",
    "handshake_complete",
    "writable",
    "disconnected",
    "close_sent",
    "initial_response",
    "transport",
    "pong_timer",
    "pending_ping_payload",
    "ping_timeout",
    "queue",
)
"""What :class:`GatewayWebSocketProtocol` uses of uvicorn's protocol beyond the ASGI contract."""

WEBSOCKETS_INTERNALS = (
    "fail",
    "send_close",
    "send_text",
    "data_to_send",
    "close_sent",
    "state",
    "extensions",
    "expect_continuation_frame",
    "max_message_size",
)
"""What the subclasses use of websockets' ``ServerProtocol``."""


class _GatewayServerProtocol(ServerProtocol):
    """websockets' server protocol, failing with the gateway's codes and reasons."""

    def fail(self, code: int, reason: str = "") -> None:
        if code == _RFC_TOO_BIG:
            code, reason = (
                CloseCode.MESSAGE_TOO_BIG,
                close_reason(
                    CloseCode.MESSAGE_TOO_BIG, f"frame over {self.max_message_size} bytes"
                ),
            )
        elif code in {CloseCode.HEARTBEAT_TIMEOUT, CloseCode.SERVICE_RESTART}:
            pass
        elif code == _RFC_INTERNAL:
            # websockets' parser raised something it did not expect: a bug on
            # this side of the wire, never the client's fault.
            cid = correlation_id()
            log.error("websocket protocol failure: %s (correlation_id=%s)", reason, cid)
            code, reason = (
                CloseCode.INTERNAL_ERROR,
                close_reason(CloseCode.INTERNAL_ERROR, f"cid={cid}"),
            )
        else:
            # Protocol errors (1002), invalid UTF-8 (1007), unsupported data
            # (1003): the client broke RFC 6455.
            code, reason = CloseCode.BAD_REQUEST, close_reason(CloseCode.BAD_REQUEST, reason[:80])
        super().fail(code, reason)


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sansio protocol with the close codes of the wire contract."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The subclass only overrides a method: swapping the class of the
        # protocol uvicorn built costs nothing, building a second one does.
        self.conn.__class__ = _GatewayServerProtocol

    def handle_connect(self, event: Request) -> None:
        """Start the app, telling it that it may send several frames in one message."""
        super().handle_connect(event)
        # The app's task is created but has not run yet: it sees the extension.
        scope = getattr(self, "scope", None)
        if scope is not None and not self.handshake_complete:
            scope["extensions"][SEND_MANY_EXTENSION] = {}

    def _record(self, code: int) -> None:
        gateway = self.app_state.get("gateway")
        if gateway is not None:
            gateway.closes.record(code)

    async def send(self, message: Any) -> None:
        """Send an ASGI message; a finished denial response completes the handshake.

        uvicorn's sansio protocol leaves ``handshake_complete`` unset after a
        denial response and then logs an error for every refused upgrade.
        """
        if message["type"] == SEND_MANY:
            await self._send_many(message["frames"])
            return
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True

    async def _send_many(self, frames: Any) -> None:
        """Frame every UTF-8 payload as text and write them all at once.

        Raises:
            ClientDisconnected: the peer is gone, or a close was already sent.
            RuntimeError: the socket was not accepted yet.
        """
        await self.writable.wait()
        if self.disconnected or self.close_sent:
            raise ClientDisconnected
        if not self.handshake_complete or self.initial_response is not None:
            raise RuntimeError(f"{SEND_MANY!r} before the socket was accepted")
        conn = self.conn
        if conn.state is not State.OPEN:
            raise ClientDisconnected
        if conn.extensions or conn.expect_continuation_frame:
            # Compression: websockets encodes each frame through its extensions.
            for frame in frames:
                conn.send_text(frame)
            self.transport.write(b"".join(conn.data_to_send()))
            return
        self.transport.write(b"".join([*conn.data_to_send(), serialize_text_frames(frames)]))

    def handle_parser_exception(self) -> None:
        """The frame parser failed the connection (oversize, broken frame)."""
        if self.conn.close_sent is not None:
            self._record(self.conn.close_sent.code)
        super().handle_parser_exception()

    def keepalive_timeout(self) -> None:
        """No pong within the heartbeat timeout: 4101, never 1011."""
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        timeout = self.ping_timeout
        self.conn.fail(
            CloseCode.HEARTBEAT_TIMEOUT,
            close_reason(CloseCode.HEARTBEAT_TIMEOUT, f"no pong within {timeout:g}s"),
        )
        self._record(CloseCode.HEARTBEAT_TIMEOUT)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": int(CloseCode.HEARTBEAT_TIMEOUT)}
        )
        self.transport.close()

    def shutdown(self) -> None:
        """The server is draining: close open sockets with 1012 and a reason."""
        if self.handshake_complete and not self.close_sent and self.initial_response is None:
            self.stop_keepalive()
            reason = close_reason(CloseCode.SERVICE_RESTART, "server draining; reconnect now")
            self.queue.put_nowait(
                {
                    "type": "websocket.disconnect",
                    "code": int(CloseCode.SERVICE_RESTART),
                    "reason": reason,
                }
            )
            self.conn.send_close(CloseCode.SERVICE_RESTART, reason)
            self._record(CloseCode.SERVICE_RESTART)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.transport.close()
            return
        super().shutdown()
