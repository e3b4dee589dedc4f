"""What a client waits for: the events of a run it started, and answers to its requests."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from chatgate.client.errors import ClientError
from chatgate.client.events import TEXT_DELTA, Event, TextAssembly


class RunStream:
    """The events of one run this client started, from ``agent_started`` to its end.

    Iterate it (``async for event in run``); iteration stops after
    ``agent_completed`` or ``agent_error`` and raises the client's error if the
    session ends for good first. A reconnection in between is invisible: the
    missed events come through the automatic resume, each once, in order
    (missed text deltas merged into one, whose ``event_id`` is the last merged);
    :attr:`answer` assembles the text either way.
    """

    def __init__(self, ack: dict[str, Any]) -> None:
        self.run_id: str = str(ack.get("run_id"))
        self.thread_id: str = str(ack.get("thread_id"))
        self.message_id: str | None = ack.get("message_id")
        self.ack = ack
        self.ended = False
        self.answer = TextAssembly()
        """The answer as its ``agent_text_delta`` events arrived (``answer.text``)."""
        self._queue: asyncio.Queue[Event | ClientError] = asyncio.Queue()

    def put(self, item: Event | ClientError) -> None:
        """Hand the stream its next event, or the error that ends it."""
        if isinstance(item, Event):
            if item.ends_run:
                self.ended = True
            elif item.type == TEXT_DELTA:
                offset, text = item.payload.get("offset"), item.payload.get("text")
                if isinstance(offset, int) and offset >= 0 and isinstance(text, str):
                    self.answer.place(offset, text)
        self._queue.put_nowait(item)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while True:
            item = await self._queue.get()
            if isinstance(item, ClientError):
                raise item
            yield item
            if item.ends_run:
                return

    async def collect(self) -> list[Event]:
        """Every event of the run through its end (wrap in ``asyncio.timeout`` to bound it).

        Raises:
            ClientError: the session ended for good first.
        """
        return [event async for event in self]


class RequestKind(enum.Enum):
    """What a pending request waits for."""

    MESSAGE = "message_ack"
    PING = "pong"
    RESUME = "resume_complete"
    REFRESH = "token_refreshed"


@dataclass(slots=True)
class Pending:
    """A request waiting for its answer (or for an ``error`` naming its id)."""

    kind: RequestKind
    future: asyncio.Future[Event]
    thread_id: str | None = None
    events: list[Event] = field(default_factory=list)
    """For a resume: the thread's events released while it was in progress."""
    run: RunStream | None = None
    """For a user message: the stream of the run its ack announced."""

    def resolve(self, event: Event) -> None:
        """Answer the request, unless it was already answered or abandoned."""
        if not self.future.done():
            self.future.set_result(event)

    def fail(self, error: ClientError) -> None:
        """Fail the request, unless it was already answered or abandoned."""
        if not self.future.done():
            self.future.set_exception(error)
