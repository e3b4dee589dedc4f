"""Every reach into uvicorn's and websockets' internals, in one module.

uvicorn's websockets-sansio protocol closes some sockets itself: an oversized
frame, a broken frame, a missed keepalive pong, a server shutdown. Left alone,
those closes carry websockets' own codes and reasons (1011 for a missed pong).
The subclasses here give each one the code and ``"<slug>: <detail>"`` reason of
the wire contract and count it in the close statistics.

Every WebSocket open counts toward ``CHATGATE_MAX_CONNECTIONS`` (refused by
:mod:`chatgate.transport.uvicorn_http` before the upgrade); ping frames count
into the socket's rate limit, shared with the app through the
``chatgate.frame_limit`` extension (:mod:`chatgate.transport.frame_limit`); a
text message that is not UTF-8 closes 1007 with one DEBUG line, not a traceback.

The protocol also offers the ``chatgate.send_many`` ASGI extension
(:mod:`chatgate.transport.send_many`): a run's events are queued in bursts, and
one write per frame was the largest cost of a chat round trip.

Thousands of sockets sit idle at once, so each holds little: the queue of
ASGI messages and the writable flag are the small ones of
:mod:`chatgate.transport.inbox`, and the parsed upgrade request and the
response to it are dropped once the socket is accepted (the request carries
the token, too).

These subclasses use attributes that are not part of uvicorn's or websockets'
public API; :data:`UVICORN_INTERNALS` and :data:`WEBSOCKETS_INTERNALS` list
them, and ``tests/unit/test_uvicorn_internals.py`` fails naming the one a new
release moved. The pins in ``pyproject.toml`` stop below the next major version.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from chatgate.closecodes import CloseCode, close_reason
from chatgate.logs import correlation_id
from chatgate.ops.records import SERVER_CLOSE
from chatgate.transport.frame_limit import FRAME_LIMIT, SharedLimiter
from chatgate.transport.inbox import Inbox, Writable
from chatgate.transport.ratelimit import Verdict
from chatgate.transport.send_many import SEND_MANY, SEND_MANY_EXTENSION, serialize_text_frames
from chatgate.transport.uvicorn_http import limits_of

log = logging.getLogger("chatgate.transport.uvicorn_ws")
_UVICORN_LOG = logging.getLogger("uvicorn.error")
"""The logger uvicorn's protocol and websockets' write to (looked up once, not per socket)."""

_RFC_ABNORMAL = 1006
_RFC_INVALID_DATA = 1007
_RFC_TOO_BIG = 1009
_RFC_INTERNAL = 1011
_SEND_MANY_OFFER: dict[str, Any] = {}
"""The extension's value in every scope: it says nothing but that it is offered."""

UVICORN_INTERNALS = (
    # methods overridden or called on WebSocketsSansIOProtocol
    "connection_made",
    "connection_lost",
    "handle_connect",
    "handle_ping",
    "send_receive_event_to_app",
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
    "config",
    "loop",
    "frames",
    "curr_msg_data_type",
    "read_paused",
    "receive",
    "pause_writing",
    "resume_writing",
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
    "parser",
)
"""What the subclasses use of websockets' ``ServerProtocol``."""


class _GatewayServerProtocol(ServerProtocol):
    """websockets' server protocol, failing with the gateway's codes and reasons."""

    def close_with(self, code: CloseCode, detail: str) -> None:
        """Fail the connection with a code of the table (no mapping)."""
        super().fail(code, close_reason(code, detail))

    def fail(self, code: int, reason: str = "") -> None:
        if code == _RFC_TOO_BIG:
            code, reason = (
                CloseCode.MESSAGE_TOO_BIG,
                close_reason(
                    CloseCode.MESSAGE_TOO_BIG, f"frame over {self.max_message_size} bytes"
                ),
            )
        elif code == _RFC_INVALID_DATA:
            code, reason = (
                CloseCode.INVALID_PAYLOAD,
                close_reason(CloseCode.INVALID_PAYLOAD, reason[:80]),
            )
        elif code in {CloseCode.HEARTBEAT_TIMEOUT, CloseCode.SERVICE_RESTART, _RFC_ABNORMAL}:
            # Ours already, or the peer is gone (1006 sends no close frame).
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
            # Protocol errors (1002), unsupported data (1003): the client broke RFC 6455.
            code, reason = CloseCode.BAD_REQUEST, close_reason(CloseCode.BAD_REQUEST, reason[:80])
        super().fail(code, reason)


def _extensions(config: Config) -> list[Any]:
    """The extensions offered, as uvicorn's protocol builds them."""
    if not config.ws_per_message_deflate:
        return []
    return [
        ServerPerMessageDeflateFactory(
            server_max_window_bits=12,
            client_max_window_bits=12,
            compress_settings={"memLevel": 5},
        )
    ]


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sansio protocol with the close codes of the wire contract."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # uvicorn's __init__, attribute for attribute, without building the
        # asyncio Queue and Event it would replace at once: building those cost
        # more than the rest of the protocol. test_uvicorn_internals checks
        # that this sets every attribute uvicorn's __init__ sets.
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = _UVICORN_LOG
        self.root_path = config.root_path
        self.asgi_version = config.asgi_version
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        self.transport = None  # type: ignore[assignment]
        self.server = None
        self.client = None
        self.scheme = None  # type: ignore[assignment]
        inbox = self._inbox = Inbox()
        # uvicorn only puts into the queue and sets or clears the flag (and
        # waits on it in send); receive is this class's own.
        self.queue = cast("asyncio.Queue[Any]", inbox)
        self.handshake_initiated = False
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.close_timer = None
        self.close_timeout = 10.0
        self.initial_response = None
        self.conn = _GatewayServerProtocol(
            extensions=_extensions(config), max_size=config.ws_max_size, logger=_UVICORN_LOG
        )
        self.read_paused = False
        self.writable = cast("asyncio.Event", Writable())
        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        self.ping_timer = None
        self.pong_timer = None
        self.pending_ping_payload = None
        self.ping_sent_at = 0.0
        self.last_ping_rtt = 0.0
        self.frames = []
        self.curr_msg_data_type = "bytes"
        self._limits = limits_of(config)
        self._frame_limit: SharedLimiter | None = None
        self._counted = False

    @property
    def _conn(self) -> _GatewayServerProtocol:
        return cast("_GatewayServerProtocol", self.conn)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the socket toward ``CHATGATE_MAX_CONNECTIONS``."""
        super().connection_made(transport)
        self._limits.open_sockets += 1
        self._counted = True

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop counting the socket, and close websockets' parser: nothing more arrives.

        The parser is a generator that holds its protocol: left suspended, the
        pair is a reference cycle that only the garbage collector frees.
        """
        if self._counted:
            self._counted = False
            self._limits.open_sockets -= 1
        super().connection_lost(exc)
        self.conn.parser.close()

    def handle_connect(self, event: Request) -> None:
        """Start the app, offering it ``send_many`` and the socket's shared rate limiter."""
        super().handle_connect(event)
        # The app's task is created but has not run yet: it sees the extensions.
        scope = getattr(self, "scope", None)
        if scope is not None and not self.handshake_complete:
            limits = self._limits
            shared = SharedLimiter(limits.rate_limit_messages, limits.rate_limit_window_s)
            self._frame_limit = shared
            scope["extensions"][SEND_MANY_EXTENSION] = _SEND_MANY_OFFER
            scope["extensions"][FRAME_LIMIT] = shared

    def handle_ping(self) -> None:
        """A client ping counts against the socket's rate limit like a message."""
        shared = self._frame_limit
        if shared is not None and shared.get().check(self.loop.time()) is Verdict.CLOSE:
            self._fail_now(CloseCode.RATE_LIMITED, "kept sending pings past the rate limit")
            return
        super().handle_ping()

    def send_receive_event_to_app(self) -> None:
        """Hand a complete message to the app; text that is not UTF-8 closes 1007.

        uvicorn logs a traceback at ERROR for every such message and closes
        without a reason; a client's mistake is worth one DEBUG line.
        """
        if self.curr_msg_data_type != "text" or self.close_sent:
            super().send_receive_event_to_app()
            return
        frames, self.frames = self.frames, []
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            log.debug("closing 1007: a text message is not UTF-8 (byte %d)", exc.start)
            self._fail_now(CloseCode.INVALID_PAYLOAD, f"text is not UTF-8 at byte {exc.start}")
            return
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            # Backpressure as uvicorn applies it: one message at a time to the app.
            self.read_paused = True
            self.transport.pause_reading()

    def _fail_now(self, code: CloseCode, detail: str) -> None:
        """Close with ``code`` at once, telling the app the socket is gone."""
        if self.close_sent or self.transport.is_closing():
            return
        self._conn.close_with(code, detail)
        self._record(code)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": int(code)})
        self.transport.close()

    def _record(self, code: int) -> None:
        gateway = self.app_state.get("gateway")
        if gateway is not None:
            gateway.closes.record(code)
        scope = getattr(self, "scope", None)
        if scope is not None:
            # The app learns of this close as a disconnect: this says it was ours.
            scope[SERVER_CLOSE] = code

    async def receive(self) -> Any:
        """The next ASGI message; reading resumes once the app has taken them all."""
        inbox = self._inbox
        while inbox.empty():
            await inbox.arrival()
        message = inbox.get_nowait()
        if self.read_paused and inbox.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: Any) -> None:
        """Send an ASGI message; a finished denial response completes the handshake.

        uvicorn's sansio protocol leaves ``handshake_complete`` unset after a
        denial response and then logs an error for every refused upgrade.
        """
        kind = message["type"]
        if kind == SEND_MANY:
            await self._send_many(message["frames"])
            return
        await super().send(message)
        if kind == "websocket.accept" and self.handshake_complete:
            self._forget_upgrade()
        elif kind == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True

    def _forget_upgrade(self) -> None:
        """Drop the parsed request and its response: an open socket never reads them again."""
        if hasattr(self, "request"):
            # websockets' parser keeps the request in its frame for the socket's
            # whole life: emptying its headers is what frees them (the token too).
            self.request.headers.clear()
            del self.request
        if hasattr(self, "response"):
            del self.response

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
        self._fail_now(CloseCode.HEARTBEAT_TIMEOUT, f"no pong within {self.ping_timeout:g}s")

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
