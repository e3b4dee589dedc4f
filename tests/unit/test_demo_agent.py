"""The demo agent's events: their order, their payloads, and its pauses."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from chatgate.agents.base import AGENT_EVENT_TYPES, Agent, AgentEvent, HistoryEntry
from chatgate.agents.demo import DemoAgent

if TYPE_CHECKING:
    from collections.abc import Sequence

HISTORY: list[HistoryEntry] = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "what is 1+1?"},
]


async def stream(
    text: str,
    history: Sequence[HistoryEntry] = (),
    agent: DemoAgent | None = None,
) -> list[AgentEvent]:
    return [event async for event in (agent or DemoAgent()).run(history, text)]


async def collect(
    text: str,
    history: Sequence[HistoryEntry] = (),
    agent: DemoAgent | None = None,
) -> list[AgentEvent]:
    """The events with the streamed answer folded into agent_completed, as clients see it."""
    events = await stream(text, history, agent)
    deltas = [e["payload"]["text"] for e in events if e["type"] == "agent_text_delta"]
    folded = [e for e in events if e["type"] != "agent_text_delta"]
    assert folded[-1] == {"type": "agent_completed", "payload": {}}
    folded[-1] = {"type": "agent_completed", "payload": {"text": "".join(deltas)}}
    return folded


@pytest.mark.asyncio
async def test_the_answer_streams_a_word_at_a_time_after_the_tool() -> None:
    events = await stream("what is 6*7?")
    kinds = types(events)
    first_delta = kinds.index("agent_text_delta")
    assert kinds[:first_delta] == ["agent_thinking", "tool_executing", "tool_completed"]
    assert set(kinds[first_delta:-1]) == {"agent_text_delta"}
    assert kinds[-1] == "agent_completed"
    assert [e["payload"]["text"] for e in events[first_delta:-1]] == ["6*7 ", "= ", "42"]


def types(events: list[AgentEvent]) -> list[str]:
    return [event["type"] for event in events]


def test_is_an_agent_named_demo() -> None:
    agent: Agent = DemoAgent()
    assert isinstance(agent, Agent)
    assert DemoAgent.name == "demo"


@pytest.mark.asyncio
async def test_arithmetic_event_order() -> None:
    events = await collect("what is 6*7?")
    assert types(events) == [
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]


@pytest.mark.asyncio
async def test_arithmetic_payloads() -> None:
    thinking, executing, completed, answer = await collect("what is 6*7?")
    assert isinstance(thinking["payload"]["text"], str)
    assert thinking["payload"]["text"]
    assert executing["payload"] == {"tool_name": "calculator", "arguments": {"expression": "6*7"}}
    assert set(completed["payload"]) == {"tool_name", "result", "duration_ms"}
    assert completed["payload"]["tool_name"] == "calculator"
    assert completed["payload"]["result"] == 42
    assert type(completed["payload"]["result"]) is int
    assert isinstance(completed["payload"]["duration_ms"], float)
    assert completed["payload"]["duration_ms"] >= 0
    assert answer["payload"] == {"text": "6*7 = 42"}


@pytest.mark.asyncio
async def test_spoken_operators_reach_the_calculator() -> None:
    _, executing, completed, answer = await collect("2^10")
    assert executing["payload"]["arguments"] == {"expression": "2**10"}
    assert completed["payload"]["result"] == 1024
    assert "1024" in answer["payload"]["text"]


@pytest.mark.asyncio
async def test_float_result() -> None:
    *_, completed, answer = await collect("compute 10 / 4 please")
    assert completed["payload"]["result"] == 2.5
    assert "2.5" in answer["payload"]["text"]


@pytest.mark.asyncio
async def test_integers_past_json_safe_range_travel_as_floats() -> None:
    *_, completed, answer = await collect("what is 2**64?")
    assert completed["payload"]["result"] == float(2**64)
    assert isinstance(completed["payload"]["result"], float)
    assert str(2**64) in answer["payload"]["text"]


@pytest.mark.asyncio
async def test_calculator_error() -> None:
    events = await collect("what is 1/0?")
    assert types(events) == [
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    completed, answer = events[2]["payload"], events[3]["payload"]
    assert completed["tool_name"] == "calculator"
    assert completed["result"] is None
    assert completed["error"] == "division by zero"
    assert isinstance(completed["duration_ms"], float)
    assert "could not compute" in answer["text"]
    assert "division by zero" in answer["text"]


@pytest.mark.asyncio
async def test_without_arithmetic_event_order() -> None:
    events = await collect("hello")
    assert types(events) == ["agent_thinking", "agent_completed"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("history", "turns"),
    [([], "0 earlier turns"), (HISTORY[:1], "1 earlier turn."), (HISTORY, "3 earlier turns")],
)
async def test_greeting(history: list[HistoryEntry], turns: str) -> None:
    _, answer = await collect("what is love?", history)
    text = answer["payload"]["text"]
    assert answer["payload"] == {"text": text}
    assert "demo agent" in text
    assert "what is 6*7?" in text
    assert turns in text


@pytest.mark.asyncio
@pytest.mark.parametrize("text", ["what is 6*7?", "hello", "what is 1/0?", "", "2^10"])
async def test_events_follow_the_interface(text: str) -> None:
    events = await collect(text, HISTORY)
    for event in events:
        assert set(event) == {"type", "payload"}
        assert event["type"] in AGENT_EVENT_TYPES
        assert isinstance(event["payload"], dict)
    assert events[0]["type"] == "agent_thinking"
    assert events[-1]["type"] == "agent_completed"
    assert isinstance(events[-1]["payload"]["text"], str)


@pytest.mark.asyncio
async def test_no_delay_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def record_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", record_sleep)
    await collect("what is 6*7?")
    await collect("hello")
    assert slept == []


@pytest.mark.asyncio
async def test_delay_sleeps_between_every_two_events(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def record_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", record_sleep)
    await collect("what is 6*7?", agent=DemoAgent(delay_ms=250))
    assert slept == [0.25, 0.25, 0.25]
    slept.clear()
    await collect("hello", agent=DemoAgent(delay_ms=250))
    assert slept == [0.25]


@pytest.mark.asyncio
async def test_delay_holds_the_run_open_until_it_is_cancelled() -> None:
    run = DemoAgent(delay_ms=60_000).run([], "what is 6*7?")
    assert (await anext(run))["type"] == "agent_thinking"
    pending = asyncio.ensure_future(anext(run))
    # However busy the machine, a minute's pause has not passed after a few loop turns.
    for _ in range(10):
        await asyncio.sleep(0)
    assert not pending.done()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending


async def test_without_a_delay_the_run_does_not_pause() -> None:
    run = DemoAgent(delay_ms=0).run([], "what is 6*7?")
    assert (await anext(run))["type"] == "agent_thinking"
    assert (await anext(run))["type"] == "tool_executing"


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay_ms"):
        DemoAgent(delay_ms=-1)
