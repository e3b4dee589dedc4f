"""The agent interface: what the gateway expects from an agent.

An agent has a method ``run(history, text)`` returning an async iterator of
event dicts ``{"type": ..., "payload": {...}}`` whose types are
``agent_thinking``, ``tool_executing``, ``tool_completed`` and, last,
``agent_completed``. The gateway adds the envelope and ``agent_started``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable


class HistoryEntry(TypedDict):
    """One turn of a thread as the agent sees it."""

    role: Literal["user", "assistant"]
    content: str


AgentEvent = dict[str, Any]
"""``{"type": <agent event type>, "payload": {...}}`` as yielded by an agent."""

AGENT_EVENT_TYPES = frozenset(
    {"agent_thinking", "tool_executing", "tool_completed", "agent_completed"},
)


@runtime_checkable
class Agent(Protocol):
    """Anything with a ``run(history, text)`` method returning an async iterator."""

    def run(self, history: Sequence[HistoryEntry], text: str) -> AsyncIterator[AgentEvent]:
        """Answer ``text`` given the thread so far, one event at a time."""
        ...
