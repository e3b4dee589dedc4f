"""A run in flight, as the run manager keeps it, and the payloads that end one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from chatgate.chat.answer import RunAnswer
from chatgate.models import new_id

FINAL = frozenset({"agent_completed", "agent_error"})
"""The events that end a run: exactly one of them does."""
INTERRUPTED_MESSAGE = "the run was interrupted: the gateway process running it stopped"


def interrupted_payload(cid: str) -> dict[str, Any]:
    """The payload of the ``agent_error`` that ends a run whose process stopped."""
    return {"code": "run_interrupted", "message": INTERRUPTED_MESSAGE, "correlation_id": cid}


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
    answer: RunAnswer = field(default_factory=lambda: RunAnswer(new_id("msg")), repr=False)
    failure: BaseException | None = field(default=None, repr=False)
    """The first write of the run that failed; nothing after it is published."""
    queued: int = field(default=0, repr=False)
    settled: asyncio.Event | None = field(default=None, repr=False)
    received_at: float = field(default=0.0, repr=False)
    """``perf_counter`` when its user_message arrived; 0 once its first event is published."""
    ended: bool = field(default=False, repr=False)
    """Whether its final event (``agent_completed`` or ``agent_error``) is queued."""
