"""The asyncio chat client: one session kept alive over as many sockets as it takes.

One background task reads the current socket and routes every frame: run
events to the :class:`~chatgate.client.runs.RunStream` that started them,
answers to the request that waits for them. When the socket closes, the
close-code table decides (:func:`~chatgate.client.backoff.retry_for`): 40xx
stop the session and raise a :class:`~chatgate.client.errors.ServerClosed`
everywhere; 41xx, 1011, 1013 and dropped connections reconnect after a
full-jitter backoff; 1012 reconnects at once. After a reconnection every
thread the client has seen is resumed from the last event it released.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from websockets.exceptions import ConnectionClosed

from chatgate.client.backoff import ReconnectPolicy, retry_for
from chatgate.client.errors import (
    ClientClosed,
    ClientError,
    ConnectionLost,
    Interrupted,
    MessageNotConfirmed,
    ReconnectFailed,
    ServerClosed,
    UnexpectedFrame,
)
from chatgate.client.events import Event
from chatgate.client.router import Router
from chatgate.client.runs import Pending, RequestKind, RunStream
from chatgate.client.transport import AuthMethod, Opened, close_error, decode_frame, open_socket
from chatgate.closecodes import CloseCode, Retry

log = logging.getLogger("chatgate.client")

TokenProvider = Callable[[], Awaitable[str]]
"""Returns a fresh token: called for every connection and when the server warns of expiry."""


@dataclass(frozen=True, slots=True)
class ReconnectAttempt:
    """One reconnection about to happen, for an ``on_reconnect`` callback."""

    attempt: int
    """0 for the first attempt after a loss."""
    delay_s: float
    retry: Retry
    cause: ClientError


class Client:
    """A chat session with a chatgate server.

    Give either a ``token`` or a ``token_provider`` (an async callable returning
    a fresh token; it is also asked when the server sends ``token_expiring``,
    and once more after a 4004). ``auth`` picks how the token is presented.

    The first :meth:`connect` retries only closes the table marks retryable; a
    refused connection or a DNS failure is raised at once, since it usually
    means a wrong URL. Later losses are retried per :class:`ReconnectPolicy`.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        token_provider: TokenProvider | None = None,
        auth: AuthMethod = AuthMethod.HEADER,
        origin: str | None = None,
        headers: Mapping[str, str] | None = None,
        policy: ReconnectPolicy | None = None,
        open_timeout: float = 10.0,
        request_timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_reconnect: Callable[[ReconnectAttempt], None] | None = None,
    ) -> None:
        if token is None and token_provider is None:
            raise ValueError("give a token or a token_provider")
        self.url = url
        self.policy = policy or ReconnectPolicy()
        self.reconnects = 0
        self._token = token
        self._provider = token_provider
        self._auth = auth
        self._origin = origin
        self._headers = dict(headers or {})
        self._open_timeout = open_timeout
        self._request_timeout = request_timeout
        self._ssl = ssl_context
        self._on_reconnect = on_reconnect
        self._opened: Opened | None = None
        self._pump: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopped = asyncio.Event()
        self._failure: ClientError | None = None
        self._closing = False
        self._router = Router(on_event, self._on_expiring)
        self._ids = itertools.count(1)
        self._refresh_lock = asyncio.Lock()
        self._refresh_again = False

    # Lifecycle

    async def connect(self) -> dict[str, Any]:
        """Open the session; return the ``connection_established`` payload.

        Raises:
            ServerClosed: a close the table says not to retry (40xx), e.g. 4003.
            ReconnectFailed: retryable closes went on past ``policy.max_attempts``.
            ConnectFailed, HandshakeRejected: the socket could not be opened.
        """
        if self._pump is not None:
            raise RuntimeError("already connected")
        try:
            opened = await self._open()
        except ClientError as exc:
            opened = await self._retry(exc, initial=True)
        self._set_socket(opened)
        self._pump = asyncio.create_task(self._pump_frames(), name="chatgate-client")
        return opened.established

    async def close(self) -> None:
        """End the session: close the socket and fail whatever still waits with ClientClosed."""
        if self._closing:
            return
        self._closing = True
        self._stop(ClientClosed("the client was closed"))
        if self._opened is not None:
            await self._opened.ws.close()
        for task in (self._pump, self._refresher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def wait_closed(self) -> ClientError | None:
        """Wait until the session ends for good; return why (None after :meth:`close`)."""
        await self._stopped.wait()
        return None if isinstance(self._failure, ClientClosed) else self._failure

    @property
    def established(self) -> dict[str, Any]:
        """The ``connection_established`` payload of the current socket."""
        return self._opened.established if self._opened is not None else {}

    @property
    def connection_id(self) -> str | None:
        """The server's id of the current socket."""
        return self._opened.connection_id if self._opened is not None else None

    def last_event_id(self, thread_id: str) -> int | None:
        """The highest event id of ``thread_id`` released to the application so far."""
        cursor = self._router.cursors.get(thread_id)
        return cursor.last if cursor is not None else None

    # Requests

    async def send_message(self, text: str, thread_id: str | None = None) -> RunStream:
        """Send a user message and return the stream of its run, once acknowledged.

        Raises:
            RequestFailed: the server refused it (``thread_not_found``, ``rate_limited``...).
            MessageNotConfirmed: the connection dropped before ``message_ack``.
            ClientError: the session ended for good.
        """
        frame: dict[str, Any] = {"type": "user_message", "payload": {"text": text}}
        if thread_id is not None:
            frame["thread_id"] = thread_id
        pending = await self._request_pending(frame, RequestKind.MESSAGE, thread_id)
        assert pending.run is not None  # noqa: S101 - set with the ack that resolved the request
        return pending.run

    async def ask(self, text: str, thread_id: str | None = None) -> list[Event]:
        """Send a user message and return every event of its run, through its end."""
        run = await self.send_message(text, thread_id)
        return await run.collect()

    async def resume(self, thread_id: str, after_event_id: int | None = None) -> list[Event]:
        """Ask for the thread's events this client has not released yet; return them in order.

        ``after_event_id`` sets the starting point for a thread this client has
        not seen (default 0); for a thread it tracks, the client's own position wins.
        """
        cursor = self._router.cursor(thread_id, after_event_id)
        frame = {"type": "resume", "thread_id": thread_id, "after_event_id": cursor.last}
        pending = await self._request_pending(frame, RequestKind.RESUME, thread_id)
        return pending.events

    async def ping(self) -> dict[str, Any]:
        """Send ``ping`` and return the ``pong`` payload."""
        pong = await self._request({"type": "ping"}, RequestKind.PING)
        return pong.payload

    async def cancel(self, run_id: str) -> None:
        """Ask the server to cancel a run; its stream then ends with ``status: cancelled``."""
        await self._send({"type": "cancel", "run_id": run_id, "id": self._next_id()})

    async def refresh_token(self, token: str | None = None) -> dict[str, Any]:
        """Send ``token_refresh`` with ``token`` (or one from the provider); return the answer.

        Raises:
            ValueError: no token given and no provider.
            ClientError: the server closed instead (4003 for another user's token).
        """
        if token is None:
            if self._provider is None:
                raise ValueError("give a token or construct the client with a token_provider")
            token = await self._provider()
        async with self._refresh_lock:
            answer = await self._request(
                {"type": "token_refresh", "token": token}, RequestKind.REFRESH
            )
        self._token = token
        return answer.payload

    # Sending

    def _next_id(self) -> str:
        return f"c{next(self._ids)}"

    async def _request(
        self, frame: dict[str, Any], kind: RequestKind, thread_id: str | None = None
    ) -> Event:
        pending = await self._request_pending(frame, kind, thread_id)
        return pending.future.result()

    async def _request_pending(
        self, frame: dict[str, Any], kind: RequestKind, thread_id: str | None
    ) -> Pending:
        request_id = self._next_id()
        frame = {**frame, "id": request_id}
        pending = Pending(kind, asyncio.get_running_loop().create_future(), thread_id)
        self._router.pending[request_id] = pending
        try:
            await self._send(frame, kind)
            async with asyncio.timeout(self._request_timeout):
                await pending.future
        finally:
            self._router.pending.pop(request_id, None)
        return pending

    async def _send(self, frame: dict[str, Any], kind: RequestKind | None = None) -> None:
        opened = await self._current()
        try:
            await opened.ws.send(json.dumps(frame))
        except ConnectionClosed as exc:
            cause = close_error(exc)
            if self._retry_class(cause, initial=False, refreshed=False) is Retry.NEVER:
                raise cause from None
            raise (MessageNotConfirmed if kind is RequestKind.MESSAGE else Interrupted)(
                cause
            ) from None

    async def _current(self) -> Opened:
        """The open socket, waiting through a reconnection."""
        while True:
            if self._failure is not None:
                raise self._failure
            if self._ready.is_set() and self._opened is not None:
                return self._opened
            ready = asyncio.ensure_future(self._ready.wait())
            stopped = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
                stopped.cancel()

    # Connecting

    async def _open(self) -> Opened:
        token = await self._provider() if self._provider is not None else self._token
        return await open_socket(
            self.url,
            token,
            auth=self._auth,
            origin=self._origin,
            headers=self._headers,
            open_timeout=self._open_timeout,
            ssl_context=self._ssl,
        )

    def _retry_class(self, cause: ClientError, *, initial: bool, refreshed: bool) -> Retry:
        expired = isinstance(cause, ServerClosed) and cause.code == CloseCode.AUTH_EXPIRED
        if expired and self._provider is not None and not refreshed:
            return Retry.NOW  # "get a fresh token, then reconnect": the provider gives one
        if initial and not isinstance(cause, ServerClosed):
            return Retry.NEVER
        return retry_for(cause)

    async def _retry(self, cause: ClientError, *, initial: bool) -> Opened:
        """Reconnect after ``cause`` as the close table says; raise when it says stop."""
        attempt = 0
        refreshed = False
        while True:
            retry = self._retry_class(cause, initial=initial, refreshed=refreshed)
            if retry is Retry.NEVER:
                raise cause
            if self.policy.exhausted(attempt):
                raise ReconnectFailed(attempt, cause)
            refreshed = refreshed or (
                isinstance(cause, ServerClosed) and cause.code == CloseCode.AUTH_EXPIRED
            )
            delay = self.policy.delay(retry, attempt)
            if self._on_reconnect is not None:
                self._on_reconnect(ReconnectAttempt(attempt, delay, retry, cause))
            log.info("reconnecting in %.3fs after %s (attempt %d)", delay, cause, attempt + 1)
            await asyncio.sleep(delay)
            attempt += 1
            try:
                return await self._open()
            except ClientError as exc:
                cause = exc

    def _set_socket(self, opened: Opened) -> None:
        self._opened = opened
        self._ready.set()

    # Reading

    async def _pump_frames(self) -> None:
        """Read socket after socket until the session ends for good."""
        try:
            while True:
                assert self._opened is not None  # noqa: S101 - set before the pump starts
                cause = await self._read(self._opened)
                if self._closing:
                    return
                self._ready.clear()
                if self._retry_class(cause, initial=False, refreshed=False) is Retry.NEVER:
                    # Whatever waits gets the close itself: the session is over.
                    raise cause
                self._router.interrupt(cause)
                opened = await self._retry(cause, initial=False)
                self._set_socket(opened)
                self.reconnects += 1
                await self._resume_all()
        except ClientError as exc:
            self._stop(exc)

    async def _read(self, opened: Opened) -> ClientError:
        """Dispatch the socket's frames until it closes; return how it ended."""
        ws = opened.ws
        try:
            async for raw in ws:
                try:
                    frame = decode_frame(raw)
                except UnexpectedFrame as exc:
                    log.warning("ignoring a server frame: %s", exc)
                    continue
                self._router.dispatch(Event.from_frame(frame))
        except ConnectionClosed as exc:
            return close_error(exc)
        received = ws.protocol.close_rcvd
        return (
            ConnectionLost() if received is None else ServerClosed(received.code, received.reason)
        )

    # Refreshing the token

    def _on_expiring(self) -> None:
        if self._provider is None:
            return
        if self._refresher is not None and not self._refresher.done():
            # A warning can overtake the end of the refresh in flight (the server
            # warns at once when the new token expires as soon): refresh once more.
            self._refresh_again = True
            return
        self._refresher = asyncio.create_task(self._refresh_quietly(), name="chatgate-refresh")

    async def _refresh_quietly(self) -> None:
        self._refresh_again = True
        while self._refresh_again:
            self._refresh_again = False
            try:
                await self.refresh_token()
            except ClientError as exc:
                # The session's own close (4003, 4004) reports the failure to every waiter.
                log.warning("token refresh failed: %s", exc)
                return

    # Losing the socket

    async def _resume_all(self) -> None:
        """Ask the new socket for every tracked thread's events after the last one released."""
        opened = self._opened
        assert opened is not None  # noqa: S101 - called right after a reconnection
        for frame in self._router.resume_frames(self._next_id):
            with contextlib.suppress(ConnectionClosed):
                # A socket that already closed again is noticed by the next read.
                await opened.ws.send(json.dumps(frame))

    def _stop(self, error: ClientError) -> None:
        """End the session for good: every waiter and every run gets ``error``."""
        if self._failure is None:
            self._failure = error
        self._ready.clear()
        self._stopped.set()
        self._router.stop(error)
