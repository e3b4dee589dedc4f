"""The chat use cases of one authenticated socket: what each client message does.

A :class:`ChatService` is built once the handshake has produced a complete
:class:`~chatgate.chat.session.Session`, and is driven by the transport: it
gets parsed client messages and the user's deliveries, and answers by putting
encoded frames into a :class:`FrameSink`. It knows nothing of ASGI or uvicorn,
so it is tested with a list as its sink.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from chatgate.auth.tokens import TokenVerifier
from chatgate.chat.replay import DeltaMerger
from chatgate.chat.runs import RunManager
from chatgate.chat.seen import SeenRanges
from chatgate.chat.session import Session
from chatgate.logs import correlation_id
from chatgate.models import Delivery, RunRecord, new_id
from chatgate.ops.metrics import Metrics
from chatgate.protocol import (
    Auth,
    Cancel,
    ClientMessage,
    ErrorCode,
    Ping,
    Resume,
    TokenRefresh,
    UserMessage,
    encode,
    error_frame,
    timestamp,
)
from chatgate.settings import Settings
from chatgate.store import Store

_RESUME_PAGE = 500
_TITLE_CHARS = 80
_MAX_TRACKED_THREADS = 1024


class RunTally(Protocol):
    """Where a socket counts the runs it started (its connection record)."""

    runs: int


class FrameSink(Protocol):
    """Where the service's frames go, in order (the socket's outbox)."""

    def put(self, frame: bytes) -> None:
        """Queue one encoded frame; never blocks."""

    async def room(self) -> bool:
        """Wait until the queue has room for more; False once the socket is closing."""


_Pending = Awaitable[object] | None
"""A new thread's write, still to await; None for a thread already stored."""


async def _settle_quietly(*writes: Awaitable[object]) -> None:
    """Await the writes of a turn whose failure an earlier one already raised.

    They fail with it (same batch, or a thread that is not there): awaited, their
    errors are not reported again as never retrieved.
    """
    for write in writes:
        with contextlib.suppress(Exception):
            await write


class ChatService:
    """Answers one socket's client messages and filters the user's deliveries for it."""

    # One per open socket: slots instead of a dict per socket.
    __slots__ = (
        "_metrics",
        "_on_refresh",
        "_out",
        "_record",
        "_resuming",
        "_runs",
        "_seen",
        "_settings",
        "_store",
        "_verifier",
        "session",
    )

    def __init__(
        self,
        session: Session,
        out: FrameSink,
        *,
        settings: Settings,
        store: Store,
        runs: RunManager,
        verifier: TokenVerifier,
        on_refresh: Callable[[Session], None],
        metrics: Metrics | None = None,
        record: RunTally | None = None,
    ) -> None:
        self.session = session
        self._metrics = metrics
        self._record = record
        self._out = out
        self._settings = settings
        self._store = store
        self._runs = runs
        self._verifier = verifier
        self._on_refresh = on_refresh
        # Made at the first event and the first resume: most sockets sit idle.
        self._seen: dict[str, SeenRanges] | None = None
        self._resuming: dict[str, list[Delivery]] | None = None

    async def handle(self, message: ClientMessage) -> None:
        """Carry out one parsed client message.

        Raises:
            CloseConnection: the message ends the socket (a refreshed token that is
                invalid or of another user).
            StoreUnavailable, BrokerUnavailable: a dependency does not answer.
        """
        match message:
            case UserMessage():
                await self._on_user_message(message)
            case Ping():
                self._reply("pong", {"id": message.id} if message.id is not None else {})
            case Resume():
                await self._on_resume(message)
            case Cancel():
                if not await self._runs.request_cancel(self.session.user_id, message.run_id):
                    self.error(ErrorCode.RUN_NOT_FOUND, "no such run in flight", message.id)
            case TokenRefresh():
                await self._on_token_refresh(message)
            case Auth():
                self.error(ErrorCode.INVALID_MESSAGE, "already authenticated", None)

    def error(self, code: ErrorCode, message: str, client_id: str | int | None) -> None:
        """Send an ``error`` frame; the socket stays open."""
        self._out.put(error_frame(code, message, correlation_id(), client_id))

    def _reply(self, kind: str, payload: dict[str, Any], **envelope: Any) -> None:
        self._out.put(encode(kind, payload, **envelope))

    async def _on_user_message(self, message: UserMessage) -> None:
        received_at = time.perf_counter()
        store, session = self._store, self.session
        connection_id = session.connection_id
        if await self._too_many_runs(message):
            return
        found = await self._thread_for(message)
        if found is None:
            self.error(ErrorCode.THREAD_NOT_FOUND, "no such thread", message.id)
            return
        thread_id, created = found
        history = await self._history(thread_id, created)
        run_id = new_id("run")
        # A new thread, the message and the run's record share one commit, and
        # all are in the store before the ack: another instance can cancel the
        # run at once.
        queued = store.queue_message(thread_id, "user", message.text, run_id)
        recorded = store.queue_run(
            RunRecord(run_id, thread_id, session.user_id, self._runs.instance_id)
        )
        try:
            if created is not None:
                await created
            stored = await queued
            await recorded
        except Exception as exc:
            await _settle_quietly(queued, recorded)
            if not isinstance(exc, LookupError):
                raise
            # The thread is gone since it was checked (the in-process store forgets).
            self.error(ErrorCode.THREAD_NOT_FOUND, "no such thread", message.id)
            return
        self._reply(
            "message_ack",
            {
                "client_message_id": message.id,
                "message_id": stored.id,
                "thread_id": thread_id,
                "run_id": run_id,
            },
            thread_id=thread_id,
            run_id=run_id,
        )
        self._runs.start(
            run_id=run_id,
            thread_id=thread_id,
            user_id=session.user_id,
            connection_id=connection_id,
            history=history,  # type: ignore[arg-type]
            text=message.text,
            message_id=stored.id,
            claims=session.claims,
            received_at=received_at,
            recorded=True,
        )
        if self._record is not None:
            self._record.runs += 1

    async def _too_many_runs(self, message: UserMessage) -> bool:
        """Refuse the message (True) when its connection or its user has too many runs in flight."""
        session, settings = self.session, self._settings
        if self._runs.in_flight(session.connection_id) >= settings.max_runs_per_connection:
            self.error(
                ErrorCode.RATE_LIMITED, "too many runs in flight on this connection", message.id
            )
            return True
        if await self._runs.user_in_flight(session.user_id) >= settings.max_runs_per_user:
            self.error(ErrorCode.RATE_LIMITED, "too many runs in flight for this user", message.id)
            return True
        return False

    async def _history(self, thread_id: str, created: _Pending) -> list[dict[str, str]]:
        """The agent's history: the thread's latest turns; none in a thread this message opens."""
        if created is not None:
            return []
        recent = await self._store.recent_turns(thread_id, self._settings.history_messages)
        return [{"role": role, "content": content} for role, content in recent]

    async def _thread_for(self, message: UserMessage) -> tuple[str, _Pending] | None:
        """The message's thread; None when it is not the user's.

        When the message names none, a new thread is queued, not yet committed:
        its write comes along (it has no history to read, and shares the
        message's commit). A thread this socket has had events of is the
        user's: only the user's events reach it, so asking the store again is
        not needed.
        """
        user_id = self.session.user_id
        if message.thread_id is None:
            thread, written = self._store.queue_thread(user_id, message.text[:_TITLE_CHARS])
            return thread.id, written
        if self._seen is not None and message.thread_id in self._seen:
            return message.thread_id, None
        found = await self._store.get_thread(user_id, message.thread_id)
        return (found.id, None) if found is not None else None

    async def _on_resume(self, message: Resume) -> None:
        store, thread_id = self._store, message.thread_id
        if await store.get_thread(self.session.user_id, thread_id) is None:
            self.error(ErrorCode.THREAD_NOT_FOUND, "no such thread", message.id)
            return
        resuming = self._resuming
        if resuming is None:
            resuming = self._resuming = {}
        elif thread_id in resuming:
            self.error(
                ErrorCode.INVALID_MESSAGE, "a resume of this thread is in progress", message.id
            )
            return
        # Live events of this thread wait while the log is read, so the client
        # sees the thread in event_id order.
        resuming[thread_id] = []
        try:
            replayed = await self._replay(thread_id, message.after_event_id)
        finally:
            waiting = resuming.pop(thread_id)
            if not resuming:
                self._resuming = None
        if self._metrics is not None:
            self._metrics.resumed(replayed)
        for delivery in waiting:
            if self._first_sight(delivery.thread_id, delivery.event_id):
                self._out.put(delivery.frame)
        seen = self._seen.get(thread_id) if self._seen is not None else None
        last = seen.highest if seen is not None else message.after_event_id
        self._reply("resume_complete", {"last_event_id": last}, thread_id=thread_id)

    async def _replay(self, thread_id: str, after: int) -> int:
        """Send the log after ``after``, deltas merged, paced to the send queue.

        Returns how many frames it sent (merged deltas count once).
        """
        merger = DeltaMerger()
        sent = 0
        while True:
            page = await self._store.events_after(thread_id, after, _RESUME_PAGE)
            for event in page:
                if not self._first_sight(thread_id, event.event_id):
                    frames = merger.flush()
                else:
                    frames = merger.add(event)
                for frame in frames:
                    if not await self._out.room():
                        return sent
                    self._out.put(frame)
                    sent += 1
            if len(page) < _RESUME_PAGE:
                break
            after = page[-1].event_id
        for frame in merger.flush():
            self._out.put(frame)
            sent += 1
        return sent

    async def _on_token_refresh(self, message: TokenRefresh) -> None:
        verified = await self._verifier.verify_async(message.token)
        self.session = self.session.refreshed(verified)
        self._on_refresh(self.session)
        expires_at = verified.expires_at
        self._reply(
            "token_refreshed",
            {
                "expires_at": timestamp(datetime.fromtimestamp(expires_at, UTC)),
                "expires_in_s": round(expires_at - time.time(), 3),
            },
        )

    def deliver(self, delivery: Delivery) -> None:
        """Pass on one of the user's events unless this socket already had it."""
        thread_id = delivery.thread_id
        if self._resuming:
            waiting = self._resuming.get(thread_id)
            if waiting is not None:
                waiting.append(delivery)
                return
        if self._first_sight(thread_id, delivery.event_id):
            self._out.put(delivery.frame)

    def _first_sight(self, thread_id: str, event_id: int) -> bool:
        """Whether the socket has not had this event yet; it has from now on."""
        tracked = self._seen
        if tracked is None:
            tracked = self._seen = {}
        seen = tracked.get(thread_id)
        if seen is None:
            if len(tracked) >= _MAX_TRACKED_THREADS:
                # Bound a long-lived socket's memory: forget the thread it met
                # first. Only a resume of that thread could then repeat an event.
                del tracked[next(iter(tracked))]
            seen = tracked[thread_id] = SeenRanges()
        return seen.add(event_id)
