"""The agent interface: what the gateway expects from an agent.

An agent has a method ``run(history, text)`` returning an async iterator of
event dicts ``{"type": ..., "payload": {...}}`` whose types are
``agent_thinking``, ``agent_text_delta``, ``tool_executing``,
``tool_completed`` and, last, ``agent_completed``. The gateway adds the
envelope and ``agent_started``. When ``run`` also accepts a keyword argument
``context``, it is called with the run's :class:`RunContext`.

An agent that fails in a way worth naming to the user (the model refused the
key, rate-limited, ...) raises :class:`AgentFailure` with a code; any other
exception ends the run with ``agent_error`` ``agent_failed``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable


class HistoryEntry(TypedDict):
    """One turn of a thread as the agent sees it."""

    role: Literal["user", "assistant"]
    content: str


AgentEvent = dict[str, Any]
"""``{"type": <agent event type>, "payload": {...}}`` as yielded by an agent."""

AGENT_EVENT_TYPES = frozenset(
    {
        "agent_thinking",
        "agent_text_delta",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    },
)


@dataclass(frozen=True, slots=True)
class RunContext:
    """Who and what a run serves: handed to ``run(..., context=...)`` when accepted.

    ``claims`` are the verified token's claims, read-only; ``message_id`` is
    the id of the user message that started the run.
    """

    user_id: str
    thread_id: str
    run_id: str
    message_id: str
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)


class AgentFailure(Exception):
    """Raised by an agent to end its run with ``agent_error`` carrying ``code``.

    ``message`` is shown to the user: it must hold no secret.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@runtime_checkable
class Agent(Protocol):
    """Anything with a ``run(history, text)`` method returning an async iterator."""

    def run(self, history: Sequence[HistoryEntry], text: str) -> AsyncIterator[AgentEvent]:
        """Answer ``text`` given the thread so far, one event at a time."""
        ...
