"""A test agent that streams a long answer slowly, so a test can act while it streams.

Loaded by the browser tests' gateway with ``CHATGATE_AGENT=slow_agent:SlowAgent``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

PIECES = 60
PAUSE_S = float(os.environ.get("SLOW_AGENT_PAUSE_MS", "80")) / 1000


def piece(index: int) -> str:
    """The answer's piece ``index``; astral characters make code points and UTF-16 differ."""
    return f"part {index} 🙂 ok; " if index % 10 == 0 else f"part {index}; "


ANSWER = "".join(piece(i) for i in range(1, PIECES + 1)) + "the end."
"""What the agent streams, whole."""


class SlowAgent:
    """Calls a tool, then streams :data:`ANSWER` in :data:`PIECES` deltas with a pause between."""

    name = "slow"

    async def run(self, _history: Sequence[Any], text: str) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "agent_thinking", "payload": {"text": "Counting slowly."}}
        yield {
            "type": "tool_executing",
            "payload": {"tool_name": "counter", "arguments": {"upto": PIECES}},
        }
        yield {
            "type": "tool_completed",
            "payload": {"tool_name": "counter", "result": PIECES, "duration_ms": 0},
        }
        for index in range(1, PIECES + 1):
            await asyncio.sleep(PAUSE_S)
            yield {"type": "agent_text_delta", "payload": {"text": piece(index)}}
        yield {"type": "agent_text_delta", "payload": {"text": "the end."}}
        yield {"type": "agent_completed", "payload": {}}
