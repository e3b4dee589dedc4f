"""The openai agent against a real HTTP server that speaks the Chat Completions API."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatgate.agents.base import AgentEvent, AgentFailure, HistoryEntry, RunContext
from chatgate.agents.loader import load_agent
from chatgate.agents.openai_chat import MAX_ROUNDS, OpenAIChatAgent, StreamedRound
from chatgate.settings import load_settings

from fake_openai import (
    FakeOpenAI,
    Reply,
    error_reply,
    running_fake_openai,
    text_reply,
    tool_call_reply,
)
from support import free_socket

KEY = "sk-test-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c1e"
WAIT_S = 10.0
SIX_TIMES_SEVEN = json.dumps({"expression": "6*7"})


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        yield server


@contextlib.asynccontextmanager
async def agent_for(base_url: str, **options: Any) -> AsyncIterator[OpenAIChatAgent]:
    options.setdefault("api_key", KEY)
    options.setdefault("timeout_s", WAIT_S)
    agent = OpenAIChatAgent("fake-model", base_url=base_url, **options)
    try:
        yield agent
    finally:
        await agent.aclose()


async def run_all(
    agent: OpenAIChatAgent,
    text: str = "hello",
    history: list[HistoryEntry] | None = None,
    context: RunContext | None = None,
) -> list[AgentEvent]:
    return [event async for event in agent.run(history or [], text, context=context)]


async def failure(
    agent: OpenAIChatAgent, text: str = "hello"
) -> tuple[AgentFailure, list[AgentEvent]]:
    """The AgentFailure the run raises, and the events it yielded before."""
    events: list[AgentEvent] = []

    async def collect() -> None:
        async for event in agent.run([], text):
            # One at a time: the events before the failure are what the test reads.
            events.append(event)  # noqa: PERF401

    with pytest.raises(AgentFailure) as caught:
        await collect()
    return caught.value, events


def deltas(events: list[AgentEvent]) -> str:
    return "".join(e["payload"]["text"] for e in events if e["type"] == "agent_text_delta")


def types(events: list[AgentEvent]) -> list[str]:
    return [event["type"] for event in events]


def without_duration(event: AgentEvent) -> AgentEvent:
    payload = {k: v for k, v in event["payload"].items() if k != "duration_ms"}
    return {"type": event["type"], "payload": payload}


# Streaming text.


async def test_text_arrives_as_deltas_then_the_whole_answer(fake: FakeOpenAI) -> None:
    fake.answer(text_reply("Hel", "lo, ", "wörld ✓"))
    async with agent_for(fake.base_url) as agent:
        events = await run_all(agent)
    assert events == [
        {"type": "agent_text_delta", "payload": {"text": "Hel"}},
        {"type": "agent_text_delta", "payload": {"text": "lo, "}},
        {"type": "agent_text_delta", "payload": {"text": "wörld ✓"}},
        {"type": "agent_completed", "payload": {"text": "Hello, wörld ✓"}},
    ]
    assert deltas(events) == events[-1]["payload"]["text"]


async def test_request_carries_system_prompt_history_tools_and_stream(fake: FakeOpenAI) -> None:
    fake.answer(text_reply("ok"))
    history: list[HistoryEntry] = [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "Hi Ada."},
    ]
    async with agent_for(fake.base_url, system_prompt="Be brief.") as agent:
        await run_all(agent, "what is my name?", history)
    (request,) = fake.requests
    assert request["model"] == "fake-model"
    assert request["stream"] is True
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "Hi Ada."},
        {"role": "user", "content": "what is my name?"},
    ]
    assert [tool["function"]["name"] for tool in request["tools"]] == ["calculator"]
    assert request["tools"][0]["function"]["parameters"]["required"] == ["expression"]
    assert request["tool_choice"] == "auto"
    assert "user" not in request
    assert fake.headers[0]["authorization"] == f"Bearer {KEY}"


async def test_second_turn_sends_the_first_as_history(fake: FakeOpenAI) -> None:
    fake.answer(text_reply("Four."), text_reply("Five."))
    async with agent_for(fake.base_url) as agent:
        first = await run_all(agent, "2+2 in words?")
        history: list[HistoryEntry] = [
            {"role": "user", "content": "2+2 in words?"},
            {"role": "assistant", "content": first[-1]["payload"]["text"]},
        ]
        await run_all(agent, "and 2+3?", history)
    assert fake.requests[1]["messages"] == [
        {"role": "user", "content": "2+2 in words?"},
        {"role": "assistant", "content": "Four."},
        {"role": "user", "content": "and 2+3?"},
    ]


async def test_context_user_id_is_the_openai_user_field(fake: FakeOpenAI) -> None:
    fake.answer(text_reply("ok"))
    context = RunContext(
        user_id="user-42", thread_id="th_1", run_id="run_1", message_id="msg_1", claims={}
    )
    async with agent_for(fake.base_url) as agent:
        await run_all(agent, context=context)
    assert fake.requests[0]["user"] == "user-42"


async def test_no_key_sends_a_placeholder_a_local_server_ignores(fake: FakeOpenAI) -> None:
    fake.answer(text_reply("ok"))
    async with agent_for(fake.base_url, api_key=None) as agent:
        assert types(await run_all(agent)) == ["agent_text_delta", "agent_completed"]


# Tools.


async def test_tool_round_trip(fake: FakeOpenAI) -> None:
    fake.answer(
        tool_call_reply("call_abc", "calculator", SIX_TIMES_SEVEN, preamble="Let me compute."),
        text_reply("6*7 is ", "42."),
    )
    async with agent_for(fake.base_url) as agent:
        events = await run_all(agent, "what is 6*7?")
    assert [without_duration(event) for event in events] == [
        {"type": "agent_text_delta", "payload": {"text": "Let me compute."}},
        {
            "type": "tool_executing",
            "payload": {
                "tool_call_id": "call_abc",
                "tool_name": "calculator",
                "arguments": {"expression": "6*7"},
            },
        },
        {
            "type": "tool_completed",
            "payload": {"tool_call_id": "call_abc", "tool_name": "calculator", "result": 42},
        },
        {"type": "agent_text_delta", "payload": {"text": "\n\n6*7 is "}},
        {"type": "agent_text_delta", "payload": {"text": "42."}},
        {"type": "agent_completed", "payload": {"text": "Let me compute.\n\n6*7 is 42."}},
    ]
    assert deltas(events) == events[-1]["payload"]["text"]
    assert events[2]["payload"]["duration_ms"] >= 0
    first, second = fake.requests
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert second["messages"][len(first["messages"]) :] == [
        {
            "role": "assistant",
            "content": "Let me compute.",
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": SIX_TIMES_SEVEN},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": '{"result": 42}'},
    ]


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("weather", '{"city": "Oslo"}', "unknown tool 'weather'"),
        ("calculator", '{"expression": ', 'arguments must be {"expression"'),
        ("calculator", '{"expr": "1+1"}', 'arguments must be {"expression"'),
        ("calculator", '{"expression": "__import__(\'os\')"}', "not allowed"),
    ],
    ids=["unknown-tool", "not-json", "wrong-argument", "not-arithmetic"],
)
async def test_a_bad_call_is_an_error_result_sent_back(
    fake: FakeOpenAI, name: str, arguments: str, error: str
) -> None:
    fake.answer(tool_call_reply("call_x", name, arguments), text_reply("Sorry."))
    async with agent_for(fake.base_url) as agent:
        events = await run_all(agent)
    assert types(events) == [
        "tool_executing",
        "tool_completed",
        "agent_text_delta",
        "agent_completed",
    ]
    completed = events[1]["payload"]
    assert completed["tool_call_id"] == "call_x"
    assert completed["result"] is None
    assert error in completed["error"]
    sent_back = fake.requests[1]["messages"][-1]
    assert sent_back["role"] == "tool"
    assert sent_back["tool_call_id"] == "call_x"
    assert json.loads(sent_back["content"]) == {"error": completed["error"]}


async def test_rounds_stop_at_the_cap(fake: FakeOpenAI) -> None:
    fake.answer(tool_call_reply("call_loop", "calculator", SIX_TIMES_SEVEN))
    async with agent_for(fake.base_url) as agent:
        caught, events = await failure(agent)
    assert caught.code == "model_bad_response"
    assert len(fake.requests) == MAX_ROUNDS == 8
    # The last request asks for words only; its tool calls are never run.
    assert [r["tool_choice"] for r in fake.requests] == ["auto"] * 7 + ["none"]
    assert types(events) == ["tool_executing", "tool_completed"] * 7


async def test_the_model_may_answer_in_the_last_round(fake: FakeOpenAI) -> None:
    call = tool_call_reply("call_loop", "calculator", SIX_TIMES_SEVEN)
    fake.answer(*[call] * 7, text_reply("Enough: 42."))
    async with agent_for(fake.base_url) as agent:
        events = await run_all(agent)
    assert len(fake.requests) == 8
    assert events[-1] == {"type": "agent_completed", "payload": {"text": "Enough: 42."}}


# Failures of the model server.


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "model_auth_failed"),
        (403, "model_auth_failed"),
        (429, "model_rate_limited"),
        (500, "model_unavailable"),
        (503, "model_unavailable"),
        (404, "model_bad_response"),
    ],
)
async def test_http_error_status(fake: FakeOpenAI, status: int, code: str) -> None:
    fake.answer(error_reply(status, "no luck"))
    async with agent_for(fake.base_url) as agent:
        caught, events = await failure(agent)
    assert caught.code == code
    assert f"HTTP {status}" in caught.message
    assert events == []
    # max_retries=0: the user decides whether to try again, not the client.
    assert len(fake.requests) == 1


async def test_refused_connection_is_unavailable() -> None:
    probe = free_socket()
    port = probe.getsockname()[1]
    probe.close()
    async with agent_for(f"http://127.0.0.1:{port}/v1") as agent:
        caught, _ = await failure(agent)
    assert caught.code == "model_unavailable"
    assert f"127.0.0.1:{port}" in caught.message


async def test_silence_past_the_timeout_is_unavailable(fake: FakeOpenAI) -> None:
    fake.answer(Reply(events=[], end="hang"))
    async with agent_for(fake.base_url, timeout_s=0.2) as agent:
        caught, _ = await failure(agent)
    assert caught.code == "model_unavailable"
    assert "timed out" in caught.message


@pytest.mark.parametrize(
    "reply",
    [
        text_reply("The answer is", end="drop"),
        Reply(events=[text_reply("The answer is").events[1], "this is not json"]),
        Reply(events=[{"choices": "not a list"}]),
        Reply(events=[{"choices": [{"index": 0, "delta": {"content": 42}}]}]),
        text_reply("The answer is", end="eof"),
    ],
    ids=["dropped", "garbage", "choices-not-a-list", "content-not-text", "no-finish-reason"],
)
async def test_broken_stream_is_bad_response(fake: FakeOpenAI, reply: Reply) -> None:
    fake.answer(reply)
    async with agent_for(fake.base_url) as agent:
        caught, _ = await failure(agent)
    assert caught.code == "model_bad_response"


async def test_a_dropped_stream_fails_after_the_text_so_far(fake: FakeOpenAI) -> None:
    fake.answer(text_reply("The answer", " is", end="drop"))
    async with agent_for(fake.base_url) as agent:
        caught, events = await failure(agent)
    assert caught.code == "model_bad_response"
    assert "broke off" in caught.message
    assert deltas(events) == "The answer is"
    assert types(events) == ["agent_text_delta", "agent_text_delta"]


async def test_an_error_event_mid_stream_is_bad_response(fake: FakeOpenAI) -> None:
    fake.answer(Reply(events=[{"error": {"message": "model overloaded", "type": "server"}}]))
    async with agent_for(fake.base_url) as agent:
        caught, _ = await failure(agent)
    assert caught.code == "model_bad_response"
    assert "model overloaded" in caught.message


@pytest.mark.parametrize("status", [401, 403, 429, 500, 400])
async def test_the_key_never_appears_in_the_failure(fake: FakeOpenAI, status: int) -> None:
    masked = f"{KEY[:8]}********{KEY[-4:]}"
    fake.answer(error_reply(status, f"Incorrect API key provided: {KEY} ({masked})"))
    async with agent_for(fake.base_url) as agent:
        caught, _ = await failure(agent)
    shown = f"{caught} {caught.message} {caught!r} {caught.__cause__!r}"
    assert KEY not in shown
    assert masked not in shown
    assert KEY[8:-4] not in shown
    assert caught.__cause__ is None


# Cancellation.


async def test_aclose_mid_stream_closes_the_model_stream(fake: FakeOpenAI) -> None:
    fake.answer(text_reply("Once upon", " a time", end="hang"))
    async with agent_for(fake.base_url) as agent:
        run = agent.run([], "tell me a story")
        first = await anext(run)
        assert first == {"type": "agent_text_delta", "payload": {"text": "Once upon"}}
        await anext(run)
        await asyncio.wait_for(fake.streaming.wait(), WAIT_S)
        assert not fake.disconnected.is_set()
        await run.aclose()
        await asyncio.wait_for(fake.disconnected.wait(), WAIT_S)


async def test_cancelling_the_task_closes_the_model_stream(fake: FakeOpenAI) -> None:
    fake.answer(text_reply("Once upon", end="hang"))
    async with agent_for(fake.base_url) as agent:
        task = asyncio.create_task(run_all(agent))
        await asyncio.wait_for(fake.streaming.wait(), WAIT_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(fake.disconnected.wait(), WAIT_S)


# The pure parts.


def test_tool_calls_are_assembled_by_index() -> None:
    from openai.types.chat import ChatCompletionChunk  # noqa: PLC0415

    def chunk(*calls: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
        delta = {"tool_calls": list(calls)} if calls else {}
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return ChatCompletionChunk.model_validate(
            {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [choice]}
        )  # fmt: skip

    streamed = StreamedRound()
    streamed.absorb(chunk({"index": 1, "id": "b", "function": {"name": "calc", "arguments": ""}}))
    streamed.absorb(chunk({"index": 0, "id": "a", "function": {"name": "calculator"}}))
    # Some servers repeat the id on every piece.
    streamed.absorb(chunk({"index": 1, "id": "b", "function": {"name": "ulator"}}))
    streamed.absorb(chunk({"index": 0, "function": {"arguments": '{"expression"'}}))
    streamed.absorb(chunk({"index": 1, "function": {"arguments": '{"expression": "1"}'}}))
    streamed.absorb(chunk({"index": 0, "function": {"arguments": ': "2"}'}}))
    streamed.absorb(chunk({"index": 2, "function": {"name": "calculator", "arguments": "{}"}}))
    streamed.absorb(chunk(finish="tool_calls"))
    calls = streamed.tool_calls()
    assert [(c.call_id, c.name, c.arguments) for c in calls[:2]] == [
        ("a", "calculator", '{"expression": "2"}'),
        ("b", "calculator", '{"expression": "1"}'),
    ]
    # A call the server gave no id gets one, for tool_call_id.
    assert calls[2].call_id.startswith("call_")
    assert streamed.finish_reason == "tool_calls"


async def test_loaded_from_the_environment_answers(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATGATE_AGENT", "openai")
    monkeypatch.setenv("CHATGATE_OPENAI_MODEL", "fake-model")
    monkeypatch.setenv("CHATGATE_OPENAI_SYSTEM_PROMPT", "You are terse.")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    settings = load_settings()
    loaded = load_agent(settings.agent, settings=settings)
    assert isinstance(loaded.agent, OpenAIChatAgent)
    fake.answer(text_reply("Yes."))
    try:
        events = await run_all(loaded.agent, "ok?")
    finally:
        await loaded.agent.aclose()
    assert events[-1] == {"type": "agent_completed", "payload": {"text": "Yes."}}
    assert fake.requests[0]["messages"][0] == {"role": "system", "content": "You are terse."}
    assert fake.headers[0]["authorization"] == f"Bearer {KEY}"
