"""The agent chatgate runs under the benchmark (``CHATGATE_AGENT=bench_agent:BenchAgent``).

A message ``stream N`` streams N small ``agent_thinking`` events and an
``agent_completed``: the event-delivery scenario. ``deltas N`` streams an answer
of N ``agent_text_delta`` events (``w0 w1 ...``) and an ``agent_completed`` whose
text the gateway fills from them: the streamed-answer and resume scenarios.
``lean`` gets what ``bench/server_socketio_lean.py`` sends for any message: a
thinking, the calculator's call and its result, and the answer in
``agent_completed`` (no deltas, no calculator run): the parity round trip. Any
other message goes to the demo agent unchanged, so the chat round trip measures
exactly the demo agent. Self-contained (it imports nothing from ``bench``)
because the server process imports it with only ``bench/`` on its path.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from chatgate.agents.demo import DemoAgent

_COUNTED = re.compile(r"(stream|deltas) (\d{1,6})\Z")
MAX_STREAM_EVENTS = 100_000
_DELTAS_BETWEEN_YIELDS = 1_000
LEAN_TEXT = "lean"
"""The message that gets the lean server's five events: see :func:`_lean`."""
# The lean server's payloads, shared by every run as the lean server shares
# them: the gateway never changes a payload (it adds each tool event's tool_call_id
# to a copy).
_LEAN_EVENTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("agent_thinking", {"text": "I will work out 6*7 with the calculator."}),
    ("tool_executing", {"tool_name": "calculator", "arguments": {"expression": "6*7"}}),
    ("tool_completed", {"tool_name": "calculator", "result": 42, "duration_ms": 0.004}),
    ("agent_completed", {"text": "6*7 = 42"}),
)


def counted_request(text: str) -> tuple[str, int] | None:
    """The kind and N of a ``stream N`` or ``deltas N`` message, or None for any other text."""
    match = _COUNTED.match(text)
    if match is None:
        return None
    return match.group(1), min(int(match.group(2)), MAX_STREAM_EVENTS)


async def _stream(count: int) -> AsyncIterator[dict[str, Any]]:
    for index in range(count):
        yield {"type": "agent_thinking", "payload": {"text": f"chunk {index}"}}
    yield {"type": "agent_completed", "payload": {"text": f"streamed {count} events"}}


async def _lean() -> AsyncIterator[dict[str, Any]]:
    for kind, payload in _LEAN_EVENTS:
        yield {"type": kind, "payload": payload}


async def _deltas(count: int) -> AsyncIterator[dict[str, Any]]:
    # No pause between deltas: the figure is the gateway's cost per delta, not a model's pace.
    # Only a long answer hands the loop over now and then: on the memory store nothing
    # in a run awaits, so without it thousands of deltas would fill the socket's 1 MiB
    # send queue before the socket could write any, and the socket would close 4102.
    for index in range(count):
        yield {"type": "agent_text_delta", "payload": {"text": f"w{index} "}}
        if index % _DELTAS_BETWEEN_YIELDS == _DELTAS_BETWEEN_YIELDS - 1:
            await asyncio.sleep(0)
    yield {"type": "agent_completed", "payload": {}}


class BenchAgent:
    """The demo agent, plus ``lean``, ``stream N`` and ``deltas N`` for the other scenarios."""

    name = "bench"

    def __init__(self) -> None:
        self._demo = DemoAgent()

    def run(self, history: Sequence[Any], text: str) -> AsyncIterator[dict[str, Any]]:
        """Return the event iterator for ``text``; no extra layer around the demo agent's."""
        if text == LEAN_TEXT:
            return _lean()
        found = counted_request(text)
        if found is None:
            return self._demo.run(history, text)
        kind, count = found
        return _stream(count) if kind == "stream" else _deltas(count)
