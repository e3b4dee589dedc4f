"""The agent chatgate runs under the benchmark (``CHATGATE_AGENT=bench_agent:BenchAgent``).

A message ``stream N`` streams N small ``agent_thinking`` events and an
``agent_completed``: the event-delivery scenario. Any other message goes to the
demo agent unchanged, so the chat round trip measures exactly the demo agent.
Self-contained (it imports nothing from ``bench``) because the server process
imports it with only ``bench/`` on its path.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from chatgate.agents.demo import DemoAgent

_STREAM = re.compile(r"stream (\d{1,6})\Z")
MAX_STREAM_EVENTS = 100_000


def stream_count(text: str) -> int | None:
    """The N of a ``stream N`` message, or None for any other text."""
    match = _STREAM.match(text)
    if match is None:
        return None
    return min(int(match.group(1)), MAX_STREAM_EVENTS)


async def _stream(count: int) -> AsyncIterator[dict[str, Any]]:
    for index in range(count):
        yield {"type": "agent_thinking", "payload": {"text": f"chunk {index}"}}
    yield {"type": "agent_completed", "payload": {"text": f"streamed {count} events"}}


class BenchAgent:
    """The demo agent, plus ``stream N`` for the event-delivery scenario."""

    name = "bench"

    def __init__(self) -> None:
        self._demo = DemoAgent()

    def run(self, history: Sequence[Any], text: str) -> AsyncIterator[dict[str, Any]]:
        """Return the event iterator for ``text``; no extra layer around the demo agent's."""
        count = stream_count(text)
        if count is None:
            return self._demo.run(history, text)
        return _stream(count)
