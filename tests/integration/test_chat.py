"""Chatting with an agent (docs/protocol.md sections 4 and 7): events, threads, resume, cancel."""

from __future__ import annotations

from typing import Any

import pytest

from support import (
    DEMO_RUN,
    Server,
    answer_text,
    assert_answers_assemble,
    assert_resumed,
    chat,
    established,
    recv_json,
    recv_until,
    running_server,
    send_json,
    stored_log,
)

AGENT_EVENTS = DEMO_RUN
CHAT_TYPES = ["message_ack", *AGENT_EVENTS]
RUN_LENGTH = len(AGENT_EVENTS)


def _assert_run(frames: list[dict[str, Any]], first_event_id: int) -> dict[str, Any]:
    """Check one arithmetic run of the demo agent; return its ack."""
    assert [f["type"] for f in frames] == CHAT_TYPES
    ack = frames[0]
    assert ack["event_id"] is None
    payload = ack["payload"]
    assert payload["thread_id"].startswith("th_")
    assert payload["run_id"].startswith("run_")
    assert payload["message_id"]
    events = frames[1:]
    assert [f["event_id"] for f in events] == list(
        range(first_event_id, first_event_id + len(events))
    )
    for event in events:
        assert event["thread_id"] == payload["thread_id"], event
        assert event["run_id"] == payload["run_id"], event
        assert event["ts"].endswith("Z")
    assert_answers_assemble(events)
    return ack


async def _ping(ws: Any, ping_id: str) -> None:
    await send_json(ws, {"type": "ping", "id": ping_id})
    pong = await recv_json(ws)
    assert pong["type"] == "pong", pong


async def test_what_is_6_times_7() -> None:
    async with running_server() as server, server.connect(server.token("alice")) as ws:
        await established(ws)
        frames = await chat(ws, "what is 6*7?", msg_id="q1")
        ack = _assert_run(frames, first_event_id=1)
        assert ack["payload"]["client_message_id"] == "q1"
        started, thinking, executing, completed, *deltas, answer = frames[1:]
        assert started["payload"]["agent"] == "demo"
        assert thinking["payload"]["text"]
        assert executing["payload"]["tool_name"] == "calculator"
        assert executing["payload"]["arguments"]
        assert completed["payload"]["tool_name"] == "calculator"
        assert completed["payload"]["result"] == 42
        assert completed["payload"]["duration_ms"] >= 0
        assert executing["payload"]["tool_call_id"] == completed["payload"]["tool_call_id"]
        assert [(d["payload"]["offset"], d["payload"]["text"]) for d in deltas] == [
            (0, "6*7 "),
            (4, "= "),
            (6, "42"),
        ]
        assert {d["payload"]["message_id"] for d in deltas} == {deltas[0]["payload"]["message_id"]}
        assert answer["payload"]["text"] == "6*7 = 42"
        assert answer["payload"]["status"] == "completed"


async def test_second_message_in_a_thread_continues_the_event_ids() -> None:
    async with running_server() as server, server.connect(server.token("alice")) as ws:
        await established(ws)
        first = _assert_run(await chat(ws, "what is 6*7?"), first_event_id=1)
        thread_id = first["payload"]["thread_id"]
        frames = await chat(ws, "what is 2+3?", thread_id=thread_id, msg_id="m2")
        second = _assert_run(frames, first_event_id=RUN_LENGTH + 1)
        assert second["payload"]["thread_id"] == thread_id
        assert second["payload"]["run_id"] != first["payload"]["run_id"]
        assert second["payload"]["client_message_id"] == "m2"
        assert frames[4]["payload"]["result"] == 5


async def test_a_new_thread_starts_its_event_ids_at_1() -> None:
    async with running_server() as server, server.connect(server.token("alice")) as ws:
        await established(ws)
        first = _assert_run(await chat(ws, "what is 6*7?"), first_event_id=1)
        other = _assert_run(await chat(ws, "what is 1+1?"), first_event_id=1)
        assert other["payload"]["thread_id"] != first["payload"]["thread_id"]


async def test_history_is_passed_to_the_agent() -> None:
    async with running_server() as server, server.connect(server.token("alice")) as ws:
        await established(ws)
        frames = await chat(ws, "hello there")
        assert "0 earlier turns" in frames[-1]["payload"]["text"]
        thread_id = frames[0]["payload"]["thread_id"]
        frames = await chat(ws, "hello again", thread_id=thread_id)
        # The first user message and the agent's answer to it.
        assert "2 earlier turns" in frames[-1]["payload"]["text"], frames[-1]
        frames = await chat(ws, "and again", thread_id=thread_id)
        assert "4 earlier turns" in frames[-1]["payload"]["text"], frames[-1]


async def test_message_to_another_users_thread_is_thread_not_found() -> None:
    async with (
        running_server() as server,
        server.connect(server.token("alice")) as alice,
        server.connect(server.token("bob")) as bob,
    ):
        await established(alice)
        await established(bob)
        thread_id = (await chat(alice, "what is 6*7?"))[0]["payload"]["thread_id"]
        for unknown in (thread_id, "th_does_not_exist"):
            await send_json(
                bob,
                {
                    "type": "user_message",
                    "id": "steal",
                    "thread_id": unknown,
                    "payload": {"text": "hi"},
                },
            )
            error = await recv_json(bob)
            assert error["type"] == "error", error
            assert error["payload"]["code"] == "thread_not_found"
            assert error["payload"]["id"] == "steal"
            assert error["thread_id"] is None
            await _ping(bob, "still-usable")
        _assert_run(await chat(bob, "what is 6*7?"), first_event_id=1)


# Resume


async def _start_and_leave(server: Server, token: str) -> tuple[str, int]:
    """Start a run, disconnect right after agent_started; return the thread and last event id."""
    async with server.connect(token) as ws:
        await established(ws)
        await send_json(ws, {"type": "user_message", "id": "m1", "payload": {"text": "6*7"}})
        frames = await recv_until(ws, "agent_started")
        assert [f["type"] for f in frames] == ["message_ack", "agent_started"]
        return frames[1]["thread_id"], frames[1]["event_id"]


async def _resume(ws: Any, thread_id: str, after: int) -> list[dict[str, Any]]:
    await send_json(
        ws, {"type": "resume", "id": "r1", "thread_id": thread_id, "after_event_id": after}
    )
    return await recv_until(ws, "resume_complete")


async def test_resume_after_a_disconnect_delivers_exactly_the_missed_events() -> None:
    async with running_server(demo_delay_ms=150) as server:
        token = server.token("alice")
        async with server.connect(token) as watcher:
            await established(watcher)
            thread_id, last_seen = await _start_and_leave(server, token)
            assert last_seen == 1
            # Another socket of the user shows when the run is over, and what went out live.
            log = await recv_until(watcher, "agent_completed")
        assert [f["type"] for f in log] == AGENT_EVENTS
        async with server.connect(token) as ws:
            await established(ws)
            frames = await _resume(ws, thread_id, last_seen)
            # The three deltas of "6*7 = 42" come as one, with the id of the last.
            assert [(f["type"], f["event_id"]) for f in frames] == [
                ("agent_thinking", 2),
                ("tool_executing", 3),
                ("tool_completed", 4),
                ("agent_text_delta", 7),
                ("agent_completed", 8),
                ("resume_complete", None),
            ]
            assert_resumed(frames, log, after=last_seen)
            assert all(f["thread_id"] == thread_id for f in frames)
            assert frames[3]["payload"]["offset"] == 0
            assert frames[-2]["payload"]["status"] == "completed"
            assert answer_text(frames) == frames[-2]["payload"]["text"] == "6*7 = 42"
            assert frames[-1]["payload"]["last_event_id"] == RUN_LENGTH
            # Nothing is sent twice on a socket: the same resume again has nothing new,
            # and a resume from 0 only adds the one event this socket never got.
            again = await _resume(ws, thread_id, last_seen)
            assert [f["type"] for f in again] == ["resume_complete"]
            assert again[0]["payload"]["last_event_id"] == RUN_LENGTH
            rest = await _resume(ws, thread_id, 0)
            assert [(f["type"], f["event_id"]) for f in rest] == [
                ("agent_started", 1),
                ("resume_complete", None),
            ]
            assert rest[-1]["payload"]["last_event_id"] == RUN_LENGTH


async def test_resume_from_0_on_a_fresh_socket_returns_every_event_once_in_order() -> None:
    async with running_server() as server:
        token = server.token("alice")
        async with server.connect(token) as ws:
            await established(ws)
            live = await chat(ws, "what is 6*7?")
        thread_id = live[0]["payload"]["thread_id"]
        async with server.connect(token) as ws:
            await established(ws)
            frames = await _resume(ws, thread_id, 0)
        assert [(f["type"], f["event_id"]) for f in frames] == [
            ("agent_started", 1),
            ("agent_thinking", 2),
            ("tool_executing", 3),
            ("tool_completed", 4),
            ("agent_text_delta", 7),
            ("agent_completed", 8),
            ("resume_complete", None),
        ]
        # Resumed events are the very events that went out live, the deltas merged.
        assert_resumed(frames, live[1:])
        assert_answers_assemble(frames)
        assert frames[-1]["payload"]["last_event_id"] == RUN_LENGTH
        assert frames[-1]["thread_id"] == thread_id


async def _collect_run_and_resume(ws: Any) -> list[dict[str, Any]]:
    """Frames until both the run's agent_completed and resume_complete have arrived."""
    frames: list[dict[str, Any]] = []
    while not {"agent_completed", "resume_complete"} <= {f["type"] for f in frames}:
        frames.append(await recv_json(ws))
    return frames


def _assert_resume_complete_follows(frames: list[dict[str, Any]]) -> None:
    """``resume_complete`` names the highest event id the socket had when it was sent."""
    at = next(i for i, f in enumerate(frames) if f["type"] == "resume_complete")
    before = [f["event_id"] for f in frames[:at] if f["event_id"] is not None]
    assert frames[at]["payload"]["last_event_id"] == max(before), frames


async def test_resume_while_the_run_is_live_sends_no_duplicate() -> None:
    async with running_server(demo_delay_ms=150) as server:
        async with server.connect(server.token("alice")) as ws:
            await established(ws)
            await send_json(ws, {"type": "user_message", "id": "m1", "payload": {"text": "6*7"}})
            frames = await recv_until(ws, "agent_started")
            thread_id = frames[0]["payload"]["thread_id"]
            await send_json(ws, {"type": "resume", "thread_id": thread_id, "after_event_id": 0})
            after_resume = await _collect_run_and_resume(ws)
            await _ping(ws, "flush")
        log = await stored_log(server, thread_id)
    # The socket had agent_started; the resume and the live run share the rest.
    assert frames[-1]["event_id"] == 1
    assert_resumed(after_resume, log, after=0, had={1})
    assert_answers_assemble(frames + after_resume)
    _assert_resume_complete_follows(after_resume)


async def test_reconnect_and_resume_while_the_run_is_live_sends_no_duplicate() -> None:
    async with running_server(demo_delay_ms=150) as server:
        token = server.token("alice")
        thread_id, last_seen = await _start_and_leave(server, token)
        async with server.connect(token) as ws:
            await established(ws)
            await send_json(
                ws, {"type": "resume", "thread_id": thread_id, "after_event_id": last_seen}
            )
            frames = await _collect_run_and_resume(ws)
            await _ping(ws, "flush")
        log = await stored_log(server, thread_id)
    assert_resumed(frames, log, after=last_seen)
    # The deltas came, live or merged, from the very start of the answer.
    assert_answers_assemble(frames)
    _assert_resume_complete_follows(frames)
    assert frames[-1]["type"] in {"agent_completed", "resume_complete"}


async def test_resume_of_another_users_thread_is_thread_not_found() -> None:
    async with running_server() as server:
        async with server.connect(server.token("alice")) as ws:
            await established(ws)
            thread_id = (await chat(ws, "what is 6*7?"))[0]["payload"]["thread_id"]
        async with server.connect(server.token("bob")) as ws:
            await established(ws)
            await send_json(
                ws, {"type": "resume", "id": "r1", "thread_id": thread_id, "after_event_id": 0}
            )
            error = await recv_json(ws)
            assert error["type"] == "error"
            assert error["payload"]["code"] == "thread_not_found"
            assert error["payload"]["id"] == "r1"
            await _ping(ws, "still-usable")


# Cancel


async def test_cancel_ends_the_run_with_status_cancelled() -> None:
    async with (
        running_server(demo_delay_ms=300) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        await send_json(ws, {"type": "user_message", "id": "m1", "payload": {"text": "6*7"}})
        ack = await recv_json(ws)
        assert ack["type"] == "message_ack"
        run_id = ack["payload"]["run_id"]
        await send_json(ws, {"type": "cancel", "id": "c1", "run_id": run_id})
        frames = await recv_until(ws, "agent_completed", "agent_error")
        assert frames[-1]["type"] == "agent_completed"
        assert frames[-1]["payload"]["status"] == "cancelled"
        assert frames[-1]["run_id"] == run_id
        ids = [f["event_id"] for f in frames]
        assert ids == list(range(1, len(ids) + 1))
        # The run is over: cancelling it again finds nothing.
        await send_json(ws, {"type": "cancel", "id": "c2", "run_id": run_id})
        error = await recv_json(ws)
        assert error["type"] == "error", error
        assert error["payload"]["code"] == "run_not_found"


async def test_cancel_of_an_unknown_run_is_run_not_found() -> None:
    async with running_server() as server, server.connect(server.token("alice")) as ws:
        await established(ws)
        await send_json(ws, {"type": "cancel", "id": "c1", "run_id": "run_nope"})
        error = await recv_json(ws)
        assert error["type"] == "error"
        assert error["payload"]["code"] == "run_not_found"
        assert error["payload"]["id"] == "c1"
        await _ping(ws, "still-usable")


async def test_cancel_of_another_users_run_is_run_not_found() -> None:
    async with (
        running_server(demo_delay_ms=300) as server,
        server.connect(server.token("alice")) as alice,
        server.connect(server.token("bob")) as bob,
    ):
        await established(alice)
        await established(bob)
        await send_json(alice, {"type": "user_message", "id": "m1", "payload": {"text": "6*7"}})
        run_id = (await recv_json(alice))["payload"]["run_id"]
        await send_json(bob, {"type": "cancel", "id": "c1", "run_id": run_id})
        error = await recv_json(bob)
        assert error["payload"]["code"] == "run_not_found"
        frames = await recv_until(alice, "agent_completed", "agent_error")
        assert frames[-1]["type"] == "agent_completed"
        assert frames[-1]["payload"]["status"] == "completed"


# Agents that fail


@pytest.mark.parametrize(
    ("agent", "code"),
    # The contract names the code of an agent that raised; one that just stops
    # early only has to end in some agent_error.
    [("Boom", "agent_failed"), ("Incomplete", None)],
)
async def test_failing_agent_gives_agent_error_and_the_socket_stays_usable(
    agent: str, code: str | None
) -> None:
    async with (
        running_server(agent=f"agents_for_tests:{agent}") as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        frames = await chat(ws, "anything")
        assert [f["type"] for f in frames] == [
            "message_ack",
            "agent_started",
            "agent_thinking",
            "agent_error",
        ]
        error = frames[-1]
        assert error["payload"]["code"] == code if code else error["payload"]["code"]
        assert error["payload"]["correlation_id"]
        assert error["payload"]["message"]
        assert "on purpose" not in error["payload"]["message"]
        assert error["run_id"] == frames[0]["payload"]["run_id"]
        assert error["event_id"] == 3
        await _ping(ws, "after-failure")
        again = await chat(ws, "once more", thread_id=error["thread_id"])
        assert again[-1]["type"] == "agent_error"
        assert again[-1]["event_id"] == 6
        assert again[-1]["payload"]["correlation_id"] != error["payload"]["correlation_id"]
        assert ws.close_code is None
