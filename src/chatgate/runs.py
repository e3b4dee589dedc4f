"""Agent runs: driving an agent, numbering its events, storing and publishing them.

A run belongs to a user and a thread, not to a socket: it goes on when the
socket that started it goes away, and its events stay available for ``resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatgate.agents.base import AGENT_EVENT_TYPES, HistoryEntry
from chatgate.agents.loader import LoadedAgent
from chatgate.broker import Broker
from chatgate.logs import correlation_id, get_logger
from chatgate.models import Delivery, StoredEvent
from chatgate.protocol import encode
from chatgate.store import Store

log = get_logger("chatgate.runs")

_MAX_AGENT_PAYLOAD_KEYS = 64


class AgentContractError(Exception):
    """The agent broke the interface of PROTOCOL.md section 7."""


def event_frame(event: StoredEvent) -> str:
    """Encode a stored event; live delivery and ``resume`` send the same bytes."""
    return encode(
        event.type,
        event.payload,
        thread_id=event.thread_id,
        run_id=event.run_id,
        event_id=event.event_id,
        ts=event.ts,
    )


def _checked(item: object) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, dict):
        raise AgentContractError(f"yielded {type(item).__name__}, not a dict")
    kind = item.get("type")
    payload = item.get("payload", {})
    if kind not in AGENT_EVENT_TYPES:
        raise AgentContractError(f"yielded an event of type {str(kind)[:40]!r}")
    if not isinstance(payload, dict) or len(payload) > _MAX_AGENT_PAYLOAD_KEYS:
        raise AgentContractError("payload must be a dict")
    return str(kind), payload


@dataclass(slots=True)
class Run:
    """A run in flight."""

    run_id: str
    thread_id: str
    user_id: str
    connection_id: str
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    awaiting_agent: bool = field(default=False, repr=False)


class RunManager:
    """Starts, cancels and tracks runs in this process."""

    def __init__(self, store: Store, broker: Broker, agent: LoadedAgent) -> None:
        self._store = store
        self._broker = broker
        self._agent = agent
        self._runs: dict[str, Run] = {}

    def in_flight(self, connection_id: str) -> int:
        """How many runs started from ``connection_id`` are still going."""
        return sum(1 for run in self._runs.values() if run.connection_id == connection_id)

    def start(
        self,
        *,
        run_id: str,
        thread_id: str,
        user_id: str,
        connection_id: str,
        history: Sequence[HistoryEntry],
        text: str,
    ) -> Run:
        """Start a run in the background and return it."""
        run = Run(run_id, thread_id, user_id, connection_id)
        self._runs[run_id] = run
        run.task = asyncio.create_task(self._execute(run, list(history), text), name=run_id)
        run.task.add_done_callback(lambda _: self._runs.pop(run_id, None))
        return run

    def cancel(self, user_id: str, run_id: str) -> bool:
        """Ask the user's run to stop; False when no such run of this user is going."""
        run = self._runs.get(run_id)
        if run is None or run.user_id != user_id:
            return False
        run.cancel_requested = True
        # Interrupt only an agent that is waiting; a write to the store or the
        # broker in progress is left to finish so the log stays whole.
        if run.awaiting_agent and run.task is not None:
            run.task.cancel()
        return True

    async def shutdown(self) -> None:
        """Stop every run (the process is going away)."""
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def emit(self, run: Run, kind: str, payload: dict[str, Any]) -> StoredEvent:
        """Number, store and publish one event of ``run``."""
        event = await self._store.append_event(run.thread_id, run.run_id, kind, payload)
        delivery = Delivery(event.thread_id, event.event_id, event_frame(event))
        await self._broker.publish(run.user_id, delivery)
        return event

    async def _next(self, run: Run, events: AsyncIterator[Any]) -> Any:
        run.awaiting_agent = True
        try:
            return await anext(events)
        finally:
            run.awaiting_agent = False

    async def _execute(self, run: Run, history: list[HistoryEntry], text: str) -> None:
        await self.emit(run, "agent_started", {"agent": self._agent.name})
        events: AsyncIterator[Any] | None = None
        try:
            events = aiter(self._agent.agent.run(history, text))
            await self._drive(run, events)
        except asyncio.CancelledError:
            if not run.cancel_requested:
                raise
            await self.emit(run, "agent_completed", {"text": "", "status": "cancelled"})
        except Exception:
            # The agent is user code: its failure ends the run, never the process.
            cid = correlation_id()
            log.exception("agent failed", run_id=run.run_id, correlation_id=cid)
            await self.emit(
                run,
                "agent_error",
                {"code": "agent_failed", "message": "the agent failed", "correlation_id": cid},
            )
        finally:
            if events is not None:
                await _close_quietly(events)

    async def _drive(self, run: Run, events: AsyncIterator[Any]) -> None:
        while True:
            if run.cancel_requested:
                raise asyncio.CancelledError
            try:
                item = await self._next(run, events)
            except StopAsyncIteration:
                raise AgentContractError("ended without agent_completed") from None
            kind, payload = _checked(item)
            if kind == "agent_completed":
                answer = payload.get("text")
                final = {
                    **payload,
                    "text": answer if isinstance(answer, str) else "",
                    "status": "completed",
                }
                await self.emit(run, kind, final)
                await self._store.add_message(run.thread_id, "assistant", final["text"], run.run_id)
                return
            await self.emit(run, kind, payload)


async def _close_quietly(events: AsyncIterator[Any]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        # The run is already over; an agent that fails while cleaning up changes nothing.
        with contextlib.suppress(Exception):
            await aclose()
