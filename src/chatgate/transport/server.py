"""Serving the app with uvicorn, with every protocol-level close mapped to the table.

uvicorn's websockets-sansio protocol closes some sockets itself: an oversized
frame, a broken frame, a missed keepalive pong, a server shutdown. Left alone,
those closes carry websockets' own codes and reasons (1011 for a missed pong).
The subclasses here give each one the code and ``"<slug>: <detail>"`` reason of
the wire contract and count it in the close statistics.

The protocol also offers the ``chatgate.transport.send_many`` ASGI extension
(``chatgate/send_many.py``): a run's events are queued in bursts, and one write
per frame was the largest cost of a chat round trip.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from chatgate.closecodes import CloseCode, close_reason
from chatgate.settings import Settings
from chatgate.transport.send_many import SEND_MANY, SEND_MANY_EXTENSION, serialize_text_frames

log = logging.getLogger("chatgate.transport.server")

_DRAIN_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_GC_THRESHOLD = 10_000
_RFC_TOO_BIG = 1009
_RFC_INTERNAL = 1011


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
            log.error("websocket protocol failure: %s", reason)
            code, reason = (
                CloseCode.BAD_REQUEST,
                close_reason(CloseCode.BAD_REQUEST, "protocol failure"),
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


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The server's configuration: websockets-sansio, and uvloop and httptools when installed."""
    options: dict[str, Any] = {
        "host": settings.bind_host,
        "port": settings.port,
        "ws": GatewayWebSocketProtocol,
        "ws_max_size": settings.max_message_bytes,
        "ws_ping_interval": settings.heartbeat_interval_s,
        "ws_ping_timeout": settings.heartbeat_timeout_s,
        "ws_per_message_deflate": settings.ws_compression,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "lifespan": "on",
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": max(settings.drain_timeout_s - 1.0, 1.0),
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


class GatewayServer(uvicorn.Server):
    """uvicorn's server, exiting 0 after an orderly drain.

    uvicorn re-raises the signal it caught once it has drained, so a supervisor
    would see a process killed by SIGTERM; the drain finished, so say so.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Route SIGINT and SIGTERM to a graceful shutdown while serving."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _DRAIN_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def serve(app: ASGIApp, settings: Settings) -> None:
    """Run the server until SIGTERM or SIGINT, then drain and return."""
    # Objects made at boot live as long as the process: freeze them out of
    # every collection. Each socket and event allocates a few dozen objects;
    # with the default threshold of 700 the collector ran every few events.
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_THRESHOLD, *gc.get_threshold()[1:])
    GatewayServer(uvicorn_config(app, settings)).run()
