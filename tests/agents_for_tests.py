"""Agents that break the agent contract, loaded with ``agent="agents_for_tests:<name>"``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any


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
