"""One chat socket, from handshake to close: the adapter around the pure core.

It reads frames, asks the core modules (credentials, tokens, session, protocol,
rate limit) what they mean, and carries out the answer. Every close goes
through :meth:`Connection._close_now` or the outbox with a code of the table;
the one catch-all at the end of :meth:`Connection.serve` is the only place
that closes with 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from chatgate.auth.credentials import PROTOCOL_NAME, read_handshake, selected_subprotocol
from chatgate.auth.tokens import VerifiedToken
from chatgate.broker.base import Unsubscribe
from chatgate.chat.runs import event_frame
from chatgate.chat.seen import SeenRanges
from chatgate.chat.session import Session, build_session, user_id_for
from chatgate.closecodes import CloseCode, close_reason
from chatgate.errors import AuthError, BrokerUnavailable, CloseConnection, StoreUnavailable
from chatgate.gateway import Gateway
from chatgate.logs import correlation_id, get_logger
from chatgate.models import Delivery, new_id
from chatgate.protocol import (
    Auth,
    Cancel,
    ClientMessage,
    ErrorCode,
    Ping,
    ProtocolViolation,
    Resume,
    TokenRefresh,
    UserMessage,
    encode,
    error_frame,
    parse_client_frame,
    timestamp,
)
from chatgate.transport.origins import origin_allowed
from chatgate.transport.outbox import CloseFrame, Outbox
from chatgate.transport.ratelimit import RateLimiter, SlidingWindow, Verdict
from chatgate.transport.send_many import SEND_MANY, offers_send_many
from chatgate.transport.upgrade import read_upgrade_headers

log = get_logger("chatgate.transport.socket")

_RESUME_PAGE = 500
_INVALID_FRAME_WINDOW_S = 60.0
_SENDER_DRAIN_S = 5.0
_TITLE_CHARS = 80
_MAX_TRACKED_THREADS = 1024
_SENDER_LINGER_TURNS = 2


class _Disconnected(Exception):
    """The client went away; nothing more to send."""


class Connection:
    """Serves one WebSocket for its whole life."""

    # Thousands of these live at once: slots instead of a dict per socket.
    __slots__ = (
        "_accepted",
        "_closed",
        "_counted",
        "_invalid",
        "_limiter",
        "_outbox",
        "_receive",
        "_resuming",
        "_seen",
        "_send",
        "_send_many",
        "_sender",
        "_subprotocol",
        "_timer",
        "_unsubscribe",
        "connection_id",
        "gw",
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
        self.session: Session | None = None
        self._subprotocol: str | None = None
        self._accepted = False
        self._closed = False
        self._counted = False
        self._unsubscribe: Unsubscribe | None = None
        self._outbox: Outbox | None = None
        self._sender: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._seen: dict[str, SeenRanges] = {}
        self._resuming: dict[str, list[Delivery]] = {}
        # Made at the first message: many sockets never send one.
        self._limiter: RateLimiter | None = None
        self._invalid: SlidingWindow | None = None

    async def serve(self) -> None:
        """Run the socket to its end; never raises."""
        try:
            # Two steps, so that nothing of the handshake (the token, the
            # claims) stays referenced for the socket's whole life.
            await self._open()
            await self._run()
        except CloseConnection as exc:
            await self._close_now(exc.code, exc.detail)
        except _Disconnected:
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

    async def _open(self) -> None:
        settings = self.gw.settings
        upgrade = read_upgrade_headers(self.scope.get("headers", ()))
        handshake_error: AuthError | None = None
        token: str | None = None
        try:
            handshake = read_handshake(upgrade.authorization, self.scope.get("subprotocols", []))
            token, self._subprotocol = handshake.token, handshake.selected_subprotocol
        except AuthError as exc:
            handshake_error = exc
            self._subprotocol = selected_subprotocol(self.scope.get("subprotocols", []))
        await self._receive_connect()
        await self._accept()
        if handshake_error is not None:
            raise handshake_error
        if not origin_allowed(upgrade.origin, upgrade.host, settings.origins):
            raise CloseConnection(CloseCode.ORIGIN_DENIED, "origin not allowed")
        failing = self.gw.health.failing
        if failing:
            raise CloseConnection(
                CloseCode.TRY_AGAIN_LATER, f"{', '.join(sorted(failing))} unavailable"
            )
        if token is None:
            token = await self._await_auth_message()
        verified = await self.gw.verifier.verify_async(token)
        await self._open_session(verified, via_headers=upgrade.test_marked)

    async def _receive_connect(self) -> None:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            raise _Disconnected

    async def _accept(self) -> None:
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if self._subprotocol is not None:
            accept["subprotocol"] = self._subprotocol
        await self._send(accept)
        self._accepted = True

    async def _await_auth_message(self) -> str:
        timeout = self.gw.settings.auth_timeout_s
        try:
            async with asyncio.timeout(timeout):
                message = await self._receive()
        except TimeoutError:
            raise AuthError(CloseCode.AUTH_REQUIRED, f"no credential within {timeout:g}s") from None
        if message["type"] == "websocket.disconnect":
            raise _Disconnected
        text = message.get("text")
        try:
            parsed = parse_client_frame(text) if text is not None else None
        except ProtocolViolation:
            parsed = None
        if not isinstance(parsed, Auth):
            raise AuthError(CloseCode.AUTH_REQUIRED, "first message must be auth")
        return parsed.token

    async def _open_session(self, verified: VerifiedToken, *, via_headers: bool) -> None:
        gw = self.gw
        context = gw.e2e.context(via_headers=via_headers) if verified.is_test else None
        session = build_session(verified, self.connection_id, context)
        if not await gw.broker.acquire_connection(
            session.user_id, self.connection_id, gw.settings.max_connections_per_user
        ):
            raise CloseConnection(
                CloseCode.CONNECTION_LIMIT,
                f"at most {gw.settings.max_connections_per_user} connections per user",
            )
        self._counted = True
        self.session = session
        if context is not None:
            log.info(
                f"E2E CONTEXT DETECTED: {orjson.dumps(context['detection_method']).decode()}",
                connection_id=self.connection_id,
                user_id=session.user_id,
            )
        # Written before subscribing, so it is the socket's first frame whatever
        # a run of this user publishes meanwhile, and no sender task is needed yet.
        try:
            await self._write([self._established(session)])
        except OSError:
            raise _Disconnected from None
        self._outbox = Outbox(gw.settings.send_queue_bytes, self._wake_sender)
        self._unsubscribe = await gw.broker.subscribe(session.user_id, self._on_delivery)

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

    async def _run(self) -> None:
        outbox = self._outbox
        assert outbox is not None  # noqa: S101 - set by _open_session
        self._schedule_expiry()
        try:
            await self._receive_loop(outbox)
        except CloseConnection as exc:
            outbox.close(exc.code, exc.detail)
        await self._finish_sending()

    # Receiving

    async def _receive_loop(self, outbox: Outbox) -> None:
        loop = asyncio.get_running_loop()
        settings = self.gw.settings
        while not outbox.closing:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                self._closed = True
                return
            limiter = self._limiter
            if limiter is None:
                limiter = self._limiter = RateLimiter(
                    settings.rate_limit_messages, settings.rate_limit_window_s
                )
            verdict = limiter.check(loop.time())
            if verdict is Verdict.CLOSE:
                raise CloseConnection(CloseCode.RATE_LIMITED, "kept sending past the rate limit")
            try:
                parsed = _parse(message)
            except ProtocolViolation as violation:
                self._refuse(violation, loop.time())
                continue
            if verdict is Verdict.REFUSE:
                self._error(
                    ErrorCode.RATE_LIMITED, "too many messages; slow down", parsed_id(parsed)
                )
                continue
            await self._dispatch(parsed)

    def _refuse(self, violation: ProtocolViolation, now: float) -> None:
        invalid = self._invalid
        if invalid is None:
            limit = self.gw.settings.max_invalid_frames - 1
            invalid = self._invalid = SlidingWindow(limit, _INVALID_FRAME_WINDOW_S)
        if not invalid.hit(now):
            raise CloseConnection(CloseCode.TOO_MANY_ERRORS, "repeated invalid messages")
        self._error(violation.code, violation.message, violation.client_id)

    def _error(self, code: ErrorCode, message: str, client_id: str | int | None) -> None:
        assert self._outbox is not None  # noqa: S101 - only called once the session is open
        self._outbox.put(error_frame(code, message, correlation_id(), client_id))

    async def _dispatch(self, message: ClientMessage) -> None:
        match message:
            case UserMessage():
                await self._on_user_message(message)
            case Ping():
                self._reply("pong", {"id": message.id} if message.id is not None else {})
            case Resume():
                await self._on_resume(message)
            case Cancel():
                if not await self.gw.runs.request_cancel(self._user_id, message.run_id):
                    self._error(ErrorCode.RUN_NOT_FOUND, "no such run in flight", message.id)
            case TokenRefresh():
                await self._on_token_refresh(message)
            case Auth():
                self._error(ErrorCode.INVALID_MESSAGE, "already authenticated", None)

    def _reply(self, kind: str, payload: dict[str, Any], **envelope: Any) -> None:
        assert self._outbox is not None  # noqa: S101 - only called once the session is open
        self._outbox.put(encode(kind, payload, **envelope))

    @property
    def _user_id(self) -> str:
        assert self.session is not None  # noqa: S101 - only called once the session is open
        return self.session.user_id

    async def _on_user_message(self, message: UserMessage) -> None:
        gw, user_id = self.gw, self._user_id
        if gw.runs.in_flight(self.connection_id) >= gw.settings.max_runs_per_connection:
            self._error(
                ErrorCode.RATE_LIMITED, "too many runs in flight on this connection", message.id
            )
            return
        if message.thread_id is None:
            thread = await gw.store.create_thread(user_id, message.text[:_TITLE_CHARS])
        else:
            found = await gw.store.get_thread(user_id, message.thread_id)
            if found is None:
                self._error(ErrorCode.THREAD_NOT_FOUND, "no such thread", message.id)
                return
            thread = found
        history = [
            {"role": m.role, "content": m.content} for m in await gw.store.list_messages(thread.id)
        ]
        run_id = new_id("run")
        stored = await gw.store.add_message(thread.id, "user", message.text, run_id)
        self._reply(
            "message_ack",
            {
                "client_message_id": message.id,
                "message_id": stored.id,
                "thread_id": thread.id,
                "run_id": run_id,
            },
            thread_id=thread.id,
            run_id=run_id,
        )
        gw.runs.start(
            run_id=run_id,
            thread_id=thread.id,
            user_id=user_id,
            connection_id=self.connection_id,
            history=history,  # type: ignore[arg-type]
            text=message.text,
        )

    async def _on_resume(self, message: Resume) -> None:
        store, thread_id = self.gw.store, message.thread_id
        if await store.get_thread(self._user_id, thread_id) is None:
            self._error(ErrorCode.THREAD_NOT_FOUND, "no such thread", message.id)
            return
        if thread_id in self._resuming:
            self._error(
                ErrorCode.INVALID_MESSAGE, "a resume of this thread is in progress", message.id
            )
            return
        # Live events of this thread wait while the log is read, so the client
        # sees the thread in event_id order.
        self._resuming[thread_id] = []
        after = message.after_event_id
        try:
            while True:
                page = await store.events_after(thread_id, after, _RESUME_PAGE)
                for event in page:
                    if self._first_sight(thread_id, event.event_id):
                        self._put(event_frame(event))
                if len(page) < _RESUME_PAGE:
                    break
                after = page[-1].event_id
        finally:
            waiting = self._resuming.pop(thread_id)
        for delivery in waiting:
            if self._first_sight(delivery.thread_id, delivery.event_id):
                self._put(delivery.frame)
        last = self._seen[thread_id].highest if thread_id in self._seen else message.after_event_id
        self._reply("resume_complete", {"last_event_id": last}, thread_id=thread_id)

    async def _on_token_refresh(self, message: TokenRefresh) -> None:
        session = self.session
        assert session is not None  # noqa: S101 - only called once the session is open
        verified = await self.gw.verifier.verify_async(message.token)
        if user_id_for(verified) != session.user_id:
            raise AuthError(CloseCode.AUTH_INVALID, "token of another user")
        session.expires_at = verified.expires_at
        self._schedule_expiry()
        self._reply(
            "token_refreshed",
            {
                "expires_at": timestamp(datetime.fromtimestamp(verified.expires_at, UTC)),
                "expires_in_s": round(verified.expires_at - time.time(), 3),
            },
        )

    # Delivering

    def _on_delivery(self, delivery: Delivery) -> None:
        thread_id = delivery.thread_id
        if self._resuming:
            waiting = self._resuming.get(thread_id)
            if waiting is not None:
                waiting.append(delivery)
                return
        if self._first_sight(thread_id, delivery.event_id):
            self._put(delivery.frame)

    def _first_sight(self, thread_id: str, event_id: int) -> bool:
        """Whether the socket has not had this event yet; it has from now on."""
        seen = self._seen.get(thread_id)
        if seen is None:
            if len(self._seen) >= _MAX_TRACKED_THREADS:
                # Bound a long-lived socket's memory: forget the thread it met
                # first. Only a resume of that thread could then repeat an event.
                del self._seen[next(iter(self._seen))]
            seen = self._seen[thread_id] = SeenRanges()
        return seen.add(event_id)

    def _put(self, frame: bytes) -> None:
        if self._outbox is not None:
            self._outbox.put(frame)

    # Token expiry

    # One timer at a time: first the warning, which then arms the expiry.

    def _schedule_expiry(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        session = self.session
        assert session is not None  # noqa: S101 - only called once the session is open
        loop = asyncio.get_running_loop()
        remaining = session.expires_at - time.time()
        warning = self.gw.settings.token_expiry_warning_s
        if warning > 0:
            self._timer = loop.call_later(max(remaining - warning, 0), self._warn_expiry)
        else:
            self._timer = loop.call_later(max(remaining, 0), self._expire)

    def _warn_expiry(self) -> None:
        if self.session is not None:
            left = max(0.0, self.session.expires_at - time.time())
            self._reply("token_expiring", {"expires_in_s": round(left, 3)})
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
        if not self._accepted:
            with contextlib.suppress(OSError, RuntimeError):
                await self._accept()
        with contextlib.suppress(OSError):
            await self._send(
                {"type": "websocket.close", "code": int(code), "reason": close_reason(code, detail)}
            )

    async def _cleanup(self) -> None:
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
        if self._counted and self.session is not None:
            await self.gw.broker.release_connection(self.session.user_id, self.connection_id)
        self._outbox = None


def parsed_id(message: ClientMessage) -> str | int | None:
    """The client's ``id`` of a parsed message, when it has one."""
    return getattr(message, "id", None)


def _parse(message: Message) -> ClientMessage:
    text = message.get("text")
    if text is None:
        raise ProtocolViolation(ErrorCode.INVALID_MESSAGE, "binary frames are not supported")
    return parse_client_frame(text)
