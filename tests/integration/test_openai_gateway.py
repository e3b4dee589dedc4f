"""The ``openai`` agent behind a real gateway, against a fake OpenAI-compatible server.

The model server is ``tests/fake_openai.py``: real SSE over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fake_openai import FakeOpenAI, error_reply, running_fake_openai, text_reply, tool_call_reply
from processes import run_cli
from support import chat, recv_json, recv_until, running_server, send_json

KEY = "sk-test-0123456789abcdef"
END = ("agent_completed", "agent_error")


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        yield server


def model_server(fake: FakeOpenAI) -> dict[str, Any]:
    return {
        "agent": "openai",
        "openai_model": "fake-model",
        "openai_base_url": fake.base_url,
        "openai_api_key": KEY,
    }


async def test_a_streamed_answer_then_a_second_turn_that_sends_the_history(
    fake: FakeOpenAI,
) -> None:
    fake.answer(text_reply("Hel", "lo ", "there"))
    async with (
        running_server(**model_server(fake)) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await recv_json(ws)
        first = await chat(ws, "hi")
        fake.answer(text_reply("again"))
        second = await chat(ws, "once more", first[0]["payload"]["thread_id"])
    deltas = [f["payload"]["text"] for f in first if f["type"] == "agent_text_delta"]
    assert deltas == ["Hel", "lo ", "there"]
    assert first[-1]["payload"] == {"text": "Hello there", "status": "completed"}
    assert second[-1]["payload"]["text"] == "again"
    sent = fake.requests[1]["messages"]
    assert [(m["role"], m["content"]) for m in sent[-3:]] == [
        ("user", "hi"),
        ("assistant", "Hello there"),
        ("user", "once more"),
    ]
    assert fake.requests[1]["user"] == "alice"
    assert fake.headers[0]["authorization"] == f"Bearer {KEY}"


async def test_the_calculator_round_trip_carries_the_models_call_id(fake: FakeOpenAI) -> None:
    fake.answer(
        tool_call_reply("call_abc", "calculator", '{"expression": "6*7"}'),
        text_reply("It is 42."),
    )
    async with (
        running_server(**model_server(fake)) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await recv_json(ws)
        frames = await chat(ws, "what is 6*7?")
    tools = [f for f in frames if f["type"] in {"tool_executing", "tool_completed"}]
    assert [(f["type"], f["payload"]["tool_call_id"]) for f in tools] == [
        ("tool_executing", "call_abc"),
        ("tool_completed", "call_abc"),
    ]
    assert tools[1]["payload"]["result"] == 42
    assert frames[-1]["payload"]["text"].endswith("It is 42.")
    returned = fake.requests[1]["messages"][-1]
    assert (returned["role"], returned["tool_call_id"]) == ("tool", "call_abc")


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "model_auth_failed"), (429, "model_rate_limited"), (503, "model_unavailable")],
)
async def test_a_model_server_failure_ends_the_run_with_its_code_and_no_key(
    fake: FakeOpenAI, status: int, code: str
) -> None:
    fake.answer(error_reply(status, f"nope {KEY}"))
    async with (
        running_server(**model_server(fake)) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await recv_json(ws)
        frames = await chat(ws, "hi")
    error = frames[-1]
    assert (error["type"], error["payload"]["code"]) == ("agent_error", code)
    assert KEY not in str(frames)


async def test_cancel_closes_the_models_stream(fake: FakeOpenAI) -> None:
    hanging = text_reply("partial ", end="hang")
    fake.answer(hanging)
    async with (
        running_server(**model_server(fake)) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await recv_json(ws)
        await send_json(ws, {"type": "user_message", "id": "m", "payload": {"text": "hi"}})
        ack = (await recv_until(ws, "message_ack"))[-1]
        await recv_until(ws, "agent_text_delta")
        await asyncio.wait_for(fake.streaming.wait(), 10)
        await send_json(ws, {"type": "cancel", "run_id": ack["run_id"]})
        frames = await recv_until(ws, *END)
        await asyncio.wait_for(fake.disconnected.wait(), 10)
    assert frames[-1]["payload"] == {"text": "partial ", "status": "cancelled"}


def test_serve_without_a_model_is_a_boot_error_naming_the_variable() -> None:
    done = run_cli(
        "serve",
        "--port",
        "0",
        ENVIRONMENT="development",
        CHATGATE_AGENT="openai",
        CHATGATE_DATABASE_URL="memory://",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "CHATGATE_OPENAI_MODEL" in lines[0]
