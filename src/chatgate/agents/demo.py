"""The demo agent: answers arithmetic through a calculator tool, greets otherwise.

It needs no network and no model, and its answers are deterministic, so the
gateway can be run and tested end to end with it.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Any, ClassVar

from chatgate.agents.calculator import Arithmetic, CalculatorError, find_arithmetic

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from chatgate.agents.base import AgentEvent, HistoryEntry

TOOL_NAME = "calculator"

# Integers beyond 2**53 lose digits in JavaScript and do not fit the 64-bit
# integers that orjson encodes, so the payload carries them as floats; the
# answer text keeps every digit.
_JSON_SAFE_INT_LIMIT = 2**53


def _json_number(value: float) -> float:
    """Return ``value`` in a form every JSON client reads without loss or error."""
    if isinstance(value, int) and abs(value) > _JSON_SAFE_INT_LIMIT:
        return float(value)
    return value


def _event(event_type: str, **payload: Any) -> AgentEvent:
    """Build one agent event as the interface in ``base.py`` describes it."""
    return {"type": event_type, "payload": payload}


_PIECE = re.compile(r"\S+\s*|\s+")


def _pieces(text: str) -> list[str]:
    """The answer cut as a model streams it: a word and the space after it at a time."""
    return _PIECE.findall(text)


def _greeting(turns: int) -> str:
    """Reply to a message that holds no arithmetic."""
    earlier = "1 earlier turn" if turns == 1 else f"{turns} earlier turns"
    return (
        'Hi, I am the demo agent. I answer arithmetic such as "what is 6*7?". '
        f"This thread has {earlier}."
    )


def _calculate(arithmetic: Arithmetic) -> tuple[AgentEvent, str]:
    """Run the calculator; return its ``tool_completed`` event and the answer text."""
    expression = arithmetic.expression
    started = time.perf_counter()
    try:
        result = arithmetic.evaluate()
    except CalculatorError as error:
        duration_ms = (time.perf_counter() - started) * 1000
        event = _event(
            "tool_completed",
            tool_name=TOOL_NAME,
            result=None,
            error=str(error),
            duration_ms=duration_ms,
        )
        return event, f"Sorry, I could not compute {expression}: {error}."
    duration_ms = (time.perf_counter() - started) * 1000
    event = _event(
        "tool_completed",
        tool_name=TOOL_NAME,
        result=_json_number(result),
        duration_ms=duration_ms,
    )
    return event, f"{expression} = {result}"


class DemoAgent:
    """Answer arithmetic with a calculator tool, and anything else with a greeting."""

    name: ClassVar[str] = "demo"

    def __init__(self, delay_ms: int = 0) -> None:
        """Pause ``delay_ms`` between events, or never at 0; raise ValueError if negative.

        The pause lets a test hold a run open while it, say, disconnects.
        """
        if delay_ms < 0:
            raise ValueError(f"delay_ms must be 0 or more, got {delay_ms}")
        self._delay_s = delay_ms / 1000

    async def run(self, history: Sequence[HistoryEntry], text: str) -> AsyncIterator[AgentEvent]:
        """Yield thinking, the calculator's call and result if any, then the answer streamed."""
        # Awaited only when set: a coroutine per pause costs the common case for nothing.
        pause = self._delay_s
        arithmetic = find_arithmetic(text)
        if arithmetic is None:
            yield _event("agent_thinking", text="Reading your message.")
            if pause:
                await asyncio.sleep(pause)
            for piece in _pieces(_greeting(len(history))):
                yield _event("agent_text_delta", text=piece)
            yield _event("agent_completed")
            return
        expression = arithmetic.expression
        yield _event("agent_thinking", text=f"I will work out {expression} with the calculator.")
        if pause:
            await asyncio.sleep(pause)
        yield _event("tool_executing", tool_name=TOOL_NAME, arguments={"expression": expression})
        if pause:
            await asyncio.sleep(pause)
        tool_completed, answer = _calculate(arithmetic)
        yield tool_completed
        if pause:
            await asyncio.sleep(pause)
        for piece in _pieces(answer):
            yield _event("agent_text_delta", text=piece)
        yield _event("agent_completed")
