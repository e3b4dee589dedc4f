"""Agents for tests, loaded with ``agent="agents_for_tests:<name>"``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from chatgate.agents.base import AgentFailure


class Boom:
    """Thinks once, then raises."""

    name = "boom"

    async def run(self, _history: Sequence[Any], text: str) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "agent_thinking", "payload": {"text": f"about to fail on {text!r}"}}
        raise RuntimeError("the agent broke on purpose")


class Incomplete:
    """Thinks once, then ends without ``agent_completed``."""

    name = "incomplete"

    async def run(self, _history: Sequence[Any], _text: str) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "agent_thinking", "payload": {"text": "thinking, and then nothing"}}


class Streamer:
    """Streams ``"w<i> "`` for i below the number the message names (e.g. "2000"), then ends.

    A message ``"slow 50"`` pauses 20 ms between deltas, so a test can act mid-stream.
    """

    name = "streamer"

    async def run(self, _history: Sequence[Any], text: str) -> AsyncIterator[dict[str, Any]]:
        words = text.split()
        slow = words[0] == "slow"
        count = int(words[-1])
        yield {"type": "tool_executing", "payload": {"tool_name": "count", "arguments": {}}}
        yield {"type": "tool_executing", "payload": {"tool_name": "count", "arguments": {}}}
        yield {"type": "tool_completed", "payload": {"tool_name": "count", "result": 1}}
        yield {"type": "tool_completed", "payload": {"tool_name": "count", "result": 2}}
        for i in range(count):
            if slow:
                await asyncio.sleep(0.02)
            yield {"type": "agent_text_delta", "payload": {"text": f"w{i} "}}
        yield {"type": "agent_completed", "payload": {}}


class ContextEcho:
    """Answers with what its run context says, and how much history it was given."""

    name = "context-echo"

    async def run(
        self, history: Sequence[Any], text: str, *, context: Any
    ) -> AsyncIterator[dict[str, Any]]:
        fields = {
            "user_id": context.user_id,
            "thread_id": context.thread_id,
            "run_id": context.run_id,
            "message_id": context.message_id,
            "claims_sub": context.claims.get("sub"),
            "history": len(history),
            "text": text,
        }
        yield {"type": "agent_completed", "payload": {"text": json.dumps(fields)}}


class Refused:
    """Fails the way a model server that refused the key does."""

    name = "refused"

    async def run(self, _history: Sequence[Any], _text: str) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "agent_text_delta", "payload": {"text": "partial"}}
        raise AgentFailure("model_auth_failed", "the model server refused the API key")


class Nul:
    """Answers with a NUL character in its text, as a broken model might."""

    name = "nul"

    async def run(self, _history: Sequence[Any], _text: str) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "agent_text_delta", "payload": {"text": "before\x00after"}}
        yield {"type": "agent_completed", "payload": {}}


class Unencodable:
    """Completes with a lone surrogate in its text, no delta before it."""

    name = "unencodable"

    async def run(self, _history: Sequence[Any], _text: str) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "agent_thinking", "payload": {"text": "answering"}}
        yield {"type": "agent_completed", "payload": {"text": f"half {chr(0xD800)} a character"}}
