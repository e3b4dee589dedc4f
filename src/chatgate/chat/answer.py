"""What an agent yields, checked and completed into the events the wire contract defines.

Pure bookkeeping of one run, with no I/O: the answer text streamed so far (for
``agent_text_delta`` offsets, the final ``agent_completed.text`` and the
assistant message), and the pairing of tool events by ``tool_call_id``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from chatgate.agents.base import AGENT_EVENT_TYPES
from chatgate.models import new_id

MAX_PAYLOAD_KEYS = 64
MAX_TOOL_CALL_ID_CHARS = 128


class AgentContractError(Exception):
    """The agent broke the interface of docs/protocol.md section 7."""


class UnknownEvent(Exception):
    """The agent yielded an event type the contract does not know; it is skipped."""


@dataclass(slots=True)
class RunAnswer:
    """The answer of one run as it streams: its message id, its text, its open tool calls."""

    message_id: str
    parts: list[str] = field(default_factory=list)
    length: int = 0
    """Code points of the answer so far: the ``offset`` of the next delta."""
    streamed: bool = False
    _open_calls: dict[str, deque[str]] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The answer so far."""
        return "".join(self.parts)

    def event(self, item: object) -> tuple[str, dict[str, Any]]:
        """Check one yielded item and complete its payload as the wire carries it.

        Raises:
            AgentContractError: the item is not an event dict of the interface.
            UnknownEvent: its type is not one an agent may yield.
        """
        if not isinstance(item, dict):
            raise AgentContractError(f"yielded {type(item).__name__}, not a dict")
        kind = item.get("type")
        payload = item.get("payload", {})
        if not isinstance(payload, dict) or len(payload) > MAX_PAYLOAD_KEYS:
            raise AgentContractError("payload must be a dict")
        if kind not in AGENT_EVENT_TYPES:
            raise UnknownEvent(str(kind)[:40])
        if kind == "agent_text_delta":
            return kind, self._delta(payload)
        if kind == "tool_executing":
            return kind, {**payload, "tool_call_id": self._open_call(payload)}
        if kind == "tool_completed":
            return kind, {**payload, "tool_call_id": self._close_call(payload)}
        if kind == "agent_completed":
            return kind, self.completed(payload)
        return str(kind), payload

    def completed(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``agent_completed`` payload: the streamed text wins over the agent's own.

        Raises:
            AgentContractError: the agent's own text cannot be stored.
        """
        payload = payload or {}
        given = payload.get("text")
        if self.streamed or not isinstance(given, str):
            text = self.text
        else:
            text = _storable(given)
            try:
                # The answer becomes a message before any JSON encoding could refuse it.
                text.encode()
            except UnicodeEncodeError:
                raise AgentContractError("text must be valid Unicode") from None
        return {**payload, "text": text, "status": "completed"}

    def cancelled(self) -> dict[str, Any]:
        """The ``agent_completed`` payload of a cancelled run: the text streamed so far."""
        return {"text": self.text, "status": "cancelled"}

    def _delta(self, payload: dict[str, Any]) -> dict[str, Any]:
        text = payload.get("text")
        if not isinstance(text, str):
            raise AgentContractError("agent_text_delta needs a text string")
        # NUL is refused here; a lone surrogate by the event's JSON encoding, before either
        # is stored.
        _storable(text)
        offset = self.length
        self.parts.append(text)
        self.length += len(text)
        self.streamed = True
        return {"message_id": self.message_id, "offset": offset, "text": text}

    def _open_call(self, payload: dict[str, Any]) -> str:
        call_id = _given_id(payload) or new_id("call")
        self._open_calls.setdefault(_tool_name(payload), deque()).append(call_id)
        return call_id

    def _close_call(self, payload: dict[str, Any]) -> str:
        open_calls = self._open_calls.get(_tool_name(payload))
        given = _given_id(payload)
        if given is not None:
            if open_calls is not None and given in open_calls:
                open_calls.remove(given)
            return given
        # No id from the agent: the oldest open call of the same tool is the one that ended.
        return open_calls.popleft() if open_calls else new_id("call")


def _storable(text: str) -> str:
    """``text``, once known to hold no NUL: PostgreSQL's text columns cannot keep one.

    Refused on every store alike, before the answer's message is queued.
    """
    if "\x00" in text:
        raise AgentContractError("text must not contain NUL")
    return text


def _given_id(payload: dict[str, Any]) -> str | None:
    value = payload.get("tool_call_id")
    if isinstance(value, str) and 0 < len(value) <= MAX_TOOL_CALL_ID_CHARS:
        return value
    return None


def _tool_name(payload: dict[str, Any]) -> str:
    name = payload.get("tool_name")
    return name if isinstance(name, str) else ""
