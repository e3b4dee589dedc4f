"""One chat socket, from handshake to close: the plumbing around the chat service.

:class:`Connection` runs the :class:`~chatgate.transport.handshake.Handshake`,
then reads frames, applies the per-socket limits, and hands each parsed
message to the :class:`~chatgate.chat.service.ChatService`; what the service
and the user's deliveries produce goes out through the outbox. Every close
goes through :meth:`Connection._close_now` or the outbox with a code of the
table; the one catch-all at the end of :meth:`Connection.serve` is the only
place that closes with 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from chatgate.auth.credentials import PROTOCOL_NAME
from chatgate.broker.base import Unsubscribe
from chatgate.chat.service import ChatService
from chatgate.chat.session import Session
from chatgate.closecodes import CloseCode, close_reason
from chatgate.errors import BrokerUnavailable, CloseConnection, StoreUnavailable
from chatgate.gateway import Gateway
from chatgate.logs import correlation_id, get_logger
from chatgate.models import new_id
from chatgate.ops.records import SERVER_CLOSE, reason_for
from chatgate.protocol import (
    ClientMessage,
    ErrorCode,
    ProtocolViolation,
    encode,
    parse_client_frame,
    timestamp,
)
from chatgate.transport.frame_limit import shared_limiter
from chatgate.transport.handshake import Disconnected, Handshake
from chatgate.transport.outbox import CloseFrame, Outbox
from chatgate.transport.ratelimit import RateLimiter, SlidingWindow, Verdict
from chatgate.transport.send_many import SEND_MANY, offers_send_many

log = get_logger("chatgate.transport.socket")

_INVALID_FRAME_WINDOW_S = 60.0
_SENDER_DRAIN_S = 5.0
_SENDER_LINGER_TURNS = 2


class Connection:
    """Serves one WebSocket for its whole life."""

    # Thousands of these live at once: slots instead of a dict per socket.
    __slots__ = (
        "_accepted",
        "_closed",
        "_invalid",
        "_limiter",
        "_outbox",
        "_receive",
        "_send",
        "_send_many",
        "_sender",
        "_service",
        "_timer",
        "_unsubscribe",
        "connection_id",
        "gw",
        "record",
        "scope",
        "session",
    )

    def __init__(self, gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        self.gw = gateway
        self.scope = scope
        self._receive = receive
        self._send = send
        # Under chatgate's own server a burst of frames goes out in one write.
        self._send_many = offers_send_many(scope)
        self.connection_id = new_id("conn")
        # The connection's record counts its frames and runs in place, and
        # outlives it by some minutes (chatgate.ops.records).
        self.record = gateway.records.open(self.connection_id, _remote(scope))
        # Set once the handshake has counted the connection: cleanup releases it.
        self.session: Session | None = None
        self._accepted = False
        self._closed = False
        self._unsubscribe: Unsubscribe | None = None
        self._outbox: Outbox | None = None
        self._service: ChatService | None = None
        self._sender: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        # Made at the first message: many sockets never send one.
        self._limiter: RateLimiter | None = None
        self._invalid: SlidingWindow | None = None

    async def serve(self) -> None:
        """Run the socket to its end; never raises."""
        try:
            # Two steps, so that nothing of the handshake (the token, the
            # request) stays referenced for the socket's whole life.
            service = await self._open()
            await self._run(service)
        except CloseConnection as exc:
            await self._close_now(exc.code, exc.detail)
        except Disconnected:
            pass
        except (StoreUnavailable, BrokerUnavailable) as exc:
            dependency = "store" if isinstance(exc, StoreUnavailable) else "broker"
            self.gw.health.report_failure(dependency, type(exc).__name__)
            await self._close_now(CloseCode.TRY_AGAIN_LATER, f"{dependency} unavailable")
        except Exception:
            # The connection's edge, the one catch-all: log the bug, close 1011 with its id.
            cid = correlation_id()
            log.exception("connection failed", connection_id=self.connection_id, correlation_id=cid)
            await self._close_now(CloseCode.INTERNAL_ERROR, f"cid={cid}")
        finally:
            await self._cleanup()

    async def _open(self) -> ChatService:
        gw = self.gw
        record = self.record
        handshake = Handshake(
            gw, self.scope, self._handshake_receive, self._accept, self.connection_id, record
        )
        session = self.session = await handshake.run()
        record.user_id, record.auth_method = session.user_id, session.auth_method
        # The handshake read the upgrade's headers once; the scope lives as long
        # as the socket, and they would, with the credential among them. The
        # lifespan state is for the HTTP routes: the socket has its gateway.
        self.scope["headers"] = ()
        self.scope.pop("state", None)
        # Written before subscribing, so it is the socket's first frame whatever
        # a run of this user publishes meanwhile, and no sender task is needed yet.
        try:
            await self._write([self._established(session)])
        except OSError:
            raise Disconnected from None
        outbox = self._outbox = record.outbox = Outbox(
            gw.settings.send_queue_bytes, self._wake_sender
        )
        service = self._service = ChatService(
            session,
            outbox,
            settings=gw.settings,
            store=gw.store,
            runs=gw.runs,
            verifier=gw.verifier,
            on_refresh=self._on_refresh,
            metrics=gw.metrics,
            record=record,
        )
        self._unsubscribe = await gw.broker.subscribe(session.user_id, service.deliver)
        return service

    async def _accept(self, subprotocol: str | None) -> None:
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if subprotocol is not None:
            accept["subprotocol"] = subprotocol
        await self._send(accept)
        self._accepted = True
        self.gw.records.accepted_total += 1

    async def _handshake_receive(self) -> Message:
        """Receive for the handshake, noting a disconnect and counting the auth frame."""
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.receive":
            self.record.frames_in += 1
        elif kind == "websocket.disconnect":
            self._disconnected(message)
        return message

    def _disconnected(self, message: Message) -> None:
        """Note the close that ended the socket: the client's, or one the protocol sent."""
        code: int = message.get("code", 1005)
        by_server = self.scope.get(SERVER_CLOSE) == code
        reason = message.get("reason") or (reason_for(code) if by_server else "")
        self.record.closing(code, reason, "server" if by_server else "client")

    def _established(self, session: Session) -> bytes:
        settings = self.gw.settings
        return encode(
            "connection_established",
            {
                "connection_id": self.connection_id,
                "user_id": session.user_id,
                "protocol": PROTOCOL_NAME,
                "heartbeat_interval_s": settings.heartbeat_interval_s,
                "max_message_bytes": settings.max_message_bytes,
                "e2e": session.e2e_context,
                "server_time": timestamp(),
            },
        )

    # Receiving

    async def _run(self, service: ChatService) -> None:
        """Read and handle messages until the socket closes, then finish sending.

        The receive loop is this coroutine's own, not one it awaits: every open
        socket keeps the chain of coroutines it waits in alive, one frame each.
        """
        outbox = self._outbox
        assert outbox is not None  # noqa: S101 - set by _open
        self._schedule_expiry(service.session)
        loop = asyncio.get_running_loop()
        record = self.record
        try:
            while not outbox.closing:
                message = await self._receive()
                if message["type"] == "websocket.disconnect":
                    self._closed = True
                    self._disconnected(message)
                    break
                record.frames_in += 1
                verdict = self._verdict(loop.time())
                try:
                    parsed = _parse(message)
                except ProtocolViolation as violation:
                    self._refuse(service, violation, loop.time())
                    continue
                if verdict is Verdict.REFUSE:
                    service.error(
                        ErrorCode.RATE_LIMITED, "too many messages; slow down", parsed_id(parsed)
                    )
                    continue
                await service.handle(parsed)
        except CloseConnection as exc:
            outbox.close(exc.code, exc.detail)
        await self._finish_sending()

    def _verdict(self, now: float) -> Verdict:
        """The rate limit's verdict on a message; a client that kept sending is closed.

        The limiter is made at the first message: many sockets never send one.

        Raises:
            CloseConnection: 4100, the client kept sending past the limit.
        """
        limiter = self._limiter
        if limiter is None:
            # Under chatgate's server the limiter also counts the socket's pings.
            shared = shared_limiter(self.scope)
            settings = self.gw.settings
            limiter = self._limiter = (
                shared.get()
                if shared is not None
                else RateLimiter(settings.rate_limit_messages, settings.rate_limit_window_s)
            )
        verdict = limiter.check(now)
        if verdict is Verdict.CLOSE:
            raise CloseConnection(CloseCode.RATE_LIMITED, "kept sending past the rate limit")
        return verdict

    def _refuse(self, service: ChatService, violation: ProtocolViolation, now: float) -> None:
        invalid = self._invalid
        if invalid is None:
            limit = self.gw.settings.max_invalid_frames - 1
            invalid = self._invalid = SlidingWindow(limit, _INVALID_FRAME_WINDOW_S)
        if not invalid.hit(now):
            raise CloseConnection(CloseCode.TOO_MANY_ERRORS, "repeated invalid messages")
        service.error(violation.code, violation.message, violation.client_id)

    # Token expiry

    # One timer at a time: first the warning, which then arms the expiry.

    def _on_refresh(self, session: Session) -> None:
        self.session = session
        self._schedule_expiry(session)

    def _schedule_expiry(self, session: Session) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        remaining = session.expires_at - time.time()
        warning = self.gw.settings.token_expiry_warning_s
        if warning > 0:
            self._timer = loop.call_later(max(remaining - warning, 0), self._warn_expiry)
        else:
            self._timer = loop.call_later(max(remaining, 0), self._expire)

    def _warn_expiry(self) -> None:
        if self.session is not None and self._outbox is not None:
            left = max(0.0, self.session.expires_at - time.time())
            self._outbox.put(encode("token_expiring", {"expires_in_s": round(left, 3)}))
            self._timer = asyncio.get_running_loop().call_later(left, self._expire)

    def _expire(self) -> None:
        if self._outbox is not None:
            self._outbox.close(CloseCode.AUTH_EXPIRED, "token expired; refresh before exp")

    # Sending and closing

    def _wake_sender(self) -> None:
        """Start a sender unless one is running; it stops when the outbox is empty."""
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        outbox = self._outbox
        assert outbox is not None  # noqa: S101 - only woken by the outbox
        # Let the tasks that are ready run first: a message's ack and the run it
        # started are queued one turn apart, and then they share one write.
        await asyncio.sleep(0)
        idle_turns = 0
        while True:
            item = outbox.pop()
            if item is None:
                # Stop only right after finding the queue empty, with no await in
                # between: a frame put later finds this task done and starts another.
                if idle_turns == _SENDER_LINGER_TURNS:
                    return
                # A run's events come in bursts, one loop turn apart: waiting a
                # turn or two for the next is cheaper than a new task for it.
                idle_turns += 1
                await asyncio.sleep(0)
                continue
            idle_turns = 0
            if isinstance(item, CloseFrame):
                await self._close_now(item.code, item.detail)
                return
            try:
                await self._write(item)
            except OSError:
                # The ASGI server reports a peer that went away as an OSError
                # (uvicorn's ClientDisconnected); nothing more can be sent.
                self._closed = True
                return

    async def _write(self, frames: list[bytes]) -> None:
        """Send text frames; raises OSError when the peer is gone."""
        self.record.frames_out += len(frames)
        if self._send_many:
            await self._send({"type": SEND_MANY, "frames": frames})
            return
        for frame in frames:
            await self._send({"type": "websocket.send", "text": frame.decode()})

    async def _finish_sending(self) -> None:
        """Write what is queued and the close (the client's, or 1000), then return."""
        outbox = self._outbox
        if outbox is None:
            return
        if self._closed:
            if self._sender is not None:
                self._sender.cancel()
            return
        outbox.close(CloseCode.NORMAL, "bye")
        sender = self._sender
        if sender is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(sender, _SENDER_DRAIN_S)

    async def _close_now(self, code: CloseCode, detail: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.gw.closes.record(int(code))
        reason = close_reason(code, detail)
        self.record.closing(int(code), reason, "server")
        if not self._accepted:
            with contextlib.suppress(OSError, RuntimeError):
                await self._accept(None)
        with contextlib.suppress(OSError):
            await self._send({"type": "websocket.close", "code": int(code), "reason": reason})

    async def _cleanup(self) -> None:
        # First, so that a failure to unsubscribe cannot lose the record's close.
        self.gw.records.close(self.record, authenticated=self.session is not None)
        # The timer, the sender, the subscription and the outbox all hold bound
        # methods of this connection: dropping them lets reference counting free
        # it at once instead of leaving a cycle to the collector.
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done():
            sender.cancel()
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            await unsubscribe()
        if self.session is not None:
            await self.gw.broker.release_connection(self.session.user_id, self.connection_id)
        self._outbox = None
        self._service = None


def _remote(scope: Scope) -> str | None:
    """The peer's address as ``host:port``, when the server gave it."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


def parsed_id(message: ClientMessage) -> str | int | None:
    """The client's ``id`` of a parsed message, when it has one."""
    return getattr(message, "id", None)


def _parse(message: Message) -> ClientMessage:
    text = message.get("text")
    if text is None:
        raise ProtocolViolation(ErrorCode.INVALID_MESSAGE, "binary frames are not supported")
    return parse_client_frame(text)
