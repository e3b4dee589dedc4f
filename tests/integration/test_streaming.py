"""Streamed answers end to end: deltas, tool-call ids, durability order, resume compaction.

docs/protocol.md section 4 (streamed text, durability order) and section 7 (run context).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from databases import database_url
from support import answer_text, chat, established, recv_json, recv_until, running_server, send_json

END = ("agent_completed", "agent_error")


async def test_the_demo_answer_streams_and_tool_events_pair_by_call_id() -> None:
    async with running_server() as server, server.connect(server.token("alice")) as ws:
        await established(ws)
        frames = await chat(ws, "what is 6*7?")
    ack, *events = frames
    types = [f["type"] for f in events]
    assert types[:4] == ["agent_started", "agent_thinking", "tool_executing", "tool_completed"]
    assert types[-1] == "agent_completed"
    assert set(types[4:-1]) == {"agent_text_delta"}
    completed = events[-1]["payload"]
    assert completed["status"] == "completed"
    assert answer_text(events) == completed["text"]
    assert "42" in completed["text"]
    executing, finished = events[2]["payload"], events[3]["payload"]
    assert executing["tool_call_id"] == finished["tool_call_id"]
    assert executing["tool_call_id"]
    deltas = [f["payload"] for f in events if f["type"] == "agent_text_delta"]
    assert {d["message_id"] for d in deltas} == {deltas[0]["message_id"]}
    assert deltas[0]["message_id"] != ack["payload"]["message_id"]


async def test_overlapping_tool_calls_pair_in_order_without_agent_ids() -> None:
    async with (
        running_server(agent="agents_for_tests:Streamer") as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        frames = await chat(ws, "3")
    tools = [
        (f["type"], f["payload"]["tool_call_id"])
        for f in frames
        if "tool_call_id" in f.get("payload", {})
    ]
    (_, first), (_, second), (_, done_first), (_, done_second) = tools
    assert first != second
    assert (done_first, done_second) == (first, second)


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
async def test_the_history_holds_every_answer_as_soon_as_it_is_announced(
    kind: str, tmp_path: Path
) -> None:
    async with (
        database_url(kind, tmp_path) as url,
        running_server(database_url=url) as server,
        server.connect(server.token("alice")) as ws,
        server.http() as http,
    ):
        await established(ws)
        thread_id = None
        held = 0
        for turn in range(20):
            frames = await chat(ws, f"what is {turn}+1?", thread_id)
            thread_id = frames[0]["payload"]["thread_id"]
            answer = frames[-1]["payload"]["text"]
            history = await http.get(
                f"/api/threads/{thread_id}/messages",
                headers={"Authorization": f"Bearer {server.token('alice')}"},
            )
            last = history.json()["messages"][-1]
            held += (last["role"], last["content"]) == ("assistant", answer)
        assert held == 20


async def resume(ws: Any, thread_id: str, after: int = 0) -> list[dict[str, Any]]:
    await send_json(ws, {"type": "resume", "thread_id": thread_id, "after_event_id": after})
    return await recv_until(ws, "resume_complete")


async def test_a_resumed_answer_of_2000_deltas_comes_back_in_a_few_frames() -> None:
    async with running_server(agent="agents_for_tests:Streamer") as server:
        token = server.token("alice")
        async with server.connect(token) as ws:
            await established(ws)
            frames = await chat(ws, "2000")
        live_text = frames[-1]["payload"]["text"]
        assert live_text == "".join(f"w{i} " for i in range(2000))
        async with server.connect(token) as other:
            await established(other)
            replayed = await resume(other, frames[0]["payload"]["thread_id"])
    deltas = [f for f in replayed if f["type"] == "agent_text_delta"]
    assert 1 <= len(deltas) <= 10
    assert answer_text(replayed) == live_text
    assert replayed[-2]["type"] == "agent_completed"
    assert replayed[-1]["payload"]["last_event_id"] == replayed[-2]["event_id"]


async def test_a_socket_that_joins_mid_answer_ends_with_the_exact_text() -> None:
    async with running_server(agent="agents_for_tests:Streamer") as server:
        token = server.token("alice")
        async with server.connect(token) as ws:
            await established(ws)
            await send_json(ws, {"type": "user_message", "id": "m", "payload": {"text": "slow 80"}})
            ack = await recv_json(ws)
            seen = await recv_until(ws, "agent_text_delta")
            while sum(f["type"] == "agent_text_delta" for f in seen) < 10:
                seen.append(await recv_json(ws))
            async with server.connect(token) as late:
                await established(late)
                joined = await resume(late, ack["payload"]["thread_id"])
                if joined[-2]["type"] not in END:
                    joined += await recv_until(late, *END)
            everything = seen + await recv_until(ws, *END)
    final = everything[-1]["payload"]["text"]
    assert final == "".join(f"w{i} " for i in range(80))
    assert joined[-1]["type"] in END
    numbered = [f["event_id"] for f in joined if f.get("event_id") is not None]
    assert numbered == sorted(set(numbered)), "each event once, in order"
    assert answer_text(joined) == final
    merged = [f for f in joined if f["type"] == "agent_text_delta"]
    assert len(merged) < 80, "what was said before joining came merged"


async def test_cancel_mid_stream_keeps_what_was_said_in_the_answer_and_the_history() -> None:
    async with (
        running_server(agent="agents_for_tests:Streamer") as server,
        server.connect(server.token("alice")) as ws,
        server.http() as http,
    ):
        await established(ws)
        await send_json(ws, {"type": "user_message", "id": "m", "payload": {"text": "slow 500"}})
        ack = await recv_json(ws)
        seen = await recv_until(ws, "agent_text_delta")
        await send_json(ws, {"type": "cancel", "run_id": ack["run_id"]})
        seen += await recv_until(ws, *END)
        completed = seen[-1]
        assert completed["type"] == "agent_completed"
        assert completed["payload"]["status"] == "cancelled"
        assert completed["payload"]["text"] == answer_text(seen)
        assert completed["payload"]["text"].startswith("w0 ")
        history = await http.get(
            f"/api/threads/{ack['payload']['thread_id']}/messages",
            headers={"Authorization": f"Bearer {server.token('alice')}"},
        )
    assert history.json()["messages"][-1]["content"] == completed["payload"]["text"]


async def test_an_agent_that_accepts_a_context_gets_the_run_it_serves() -> None:
    async with (
        running_server(agent="agents_for_tests:ContextEcho") as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        first = await chat(ws, "one")
        thread_id = first[0]["payload"]["thread_id"]
        second = await chat(ws, "two", thread_id)
    ack = second[0]["payload"]
    said = json.loads(second[-1]["payload"]["text"])
    assert said == {
        "user_id": "alice",
        "thread_id": thread_id,
        "run_id": ack["run_id"],
        "message_id": ack["message_id"],
        "claims_sub": "alice",
        "history": 2,
        "text": "two",
    }


async def test_the_history_an_agent_gets_is_bounded() -> None:
    async with (
        running_server(agent="agents_for_tests:ContextEcho", history_messages=3) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        thread_id = None
        for turn in range(4):
            frames = await chat(ws, f"t{turn}", thread_id)
            thread_id = frames[0]["payload"]["thread_id"]
    assert json.loads(frames[-1]["payload"]["text"])["history"] == 3


async def test_a_failure_the_agent_names_reaches_the_client_with_its_code() -> None:
    async with (
        running_server(agent="agents_for_tests:Refused") as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        frames = await chat(ws, "hi")
    error = frames[-1]
    assert error["type"] == "agent_error"
    assert error["payload"]["code"] == "model_auth_failed"
    assert error["payload"]["message"] == "the model server refused the API key"
    assert error["payload"]["correlation_id"]
