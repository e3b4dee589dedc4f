"""Checks P1-10 to P1-15: heartbeat, acknowledgement, agent events, numbering, threads, resume."""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any

from chatgate.probe import dialogue, verify
from chatgate.probe.checks.base import CheckRun
from chatgate.probe.outcome import fail

SECOND_QUESTION = "what is 2+3?"


async def heartbeat(run: CheckRun) -> str:
    """P1-10: ``ping`` is answered by ``pong`` within the budget (1 s)."""
    async with await run.open() as wire:
        started = time.monotonic()
        answer = await dialogue.ping(wire, "check-ping")
        took_ms = (time.monotonic() - started) * 1000
    if answer.get("type") != "pong":
        raise fail("wrong_error", f"ping was answered by {answer}")
    if took_ms > run.budgets.pong_ms:
        raise fail("too_slow", f"pong after {took_ms:.0f} ms (budget {run.budgets.pong_ms:g} ms)")
    return f"pong in {took_ms:.0f} ms"


async def message_ack(run: CheckRun) -> str:
    """P1-11: ``message_ack`` carries the client's id and the message, thread and run ids."""
    async with await run.open() as wire:
        ack = await dialogue.send_message(wire, "check-ack")
        payload = ack.get("payload") or {}
        missing = [
            key
            for key in ("message_id", "thread_id", "run_id")
            if not isinstance(payload.get(key), str) or not payload.get(key)
        ]
        if missing or payload.get("client_message_id") != "check-ack":
            raise fail("missing_ids", f"message_ack payload {payload} lacks {missing or 'the id'}")
        await dialogue.run_events(wire, str(payload["run_id"]))
    return (
        f"message {payload['message_id']}, thread {payload['thread_id']}, run {payload['run_id']}"
    )


async def agent_events(run: CheckRun) -> str:
    """P1-12: the five agent events, in order."""
    async with await run.open() as wire:
        _, events = await dialogue.round_trip(wire, "check-events")
    verify.five_events(events)
    verify.streamed_text(events)
    return " ".join(str(event.get("type")) for event in events)


async def event_ids(run: CheckRun) -> str:
    """P1-13: ``event_id`` rises by one from 1 in a new thread; every event has both ids."""
    async with await run.open() as wire:
        ack, events = await dialogue.round_trip(wire, "check-ids")
    thread_id, run_id = dialogue.ack_ids(ack)
    verify.numbered(events, thread_id, run_id)
    if events and events[0].get("event_id") != 1:
        raise fail("events_out_of_order", f"a new thread's first event is {events[0]['event_id']}")
    return f"event ids 1..{len(events)} in {thread_id}"


def _messages(body: Any) -> list[dict[str, Any]]:
    """The messages of a history answer: a list, or an object holding one."""
    if isinstance(body, dict):
        for key in ("messages", "items", "data"):
            if isinstance(body.get(key), list):
                body = body[key]
                break
    return [m for m in body if isinstance(m, dict)] if isinstance(body, list) else []


async def _listed(run: CheckRun, token: str, thread_id: str) -> None:
    answer = await run.ctx.http.get("/api/threads", token=token)
    body = answer.json_object.get("threads", answer.json)
    listed = (
        [t.get("thread_id", t.get("id")) for t in body if isinstance(t, dict)]
        if isinstance(body, list)
        else []
    )
    if answer.status != HTTPStatus.OK or thread_id not in listed:
        raise fail(
            "history_missing",
            f"GET /api/threads answered {answer.status} without {thread_id}",
            http_status=answer.status,
        )


async def _history_shows(run: CheckRun, token: str, thread_id: str, texts: list[str]) -> None:
    await _listed(run, token, thread_id)
    answer = await run.ctx.http.get(f"/api/threads/{thread_id}/messages", token=token)
    if answer.status != HTTPStatus.OK:
        raise fail(
            "history_missing",
            f"GET /api/threads/{thread_id}/messages answered {answer.status}",
            http_status=answer.status,
        )
    messages = _messages(answer.json)
    roles = [str(m.get("role")) for m in messages]
    said = [str(m.get("content", m.get("text"))) for m in messages if m.get("role") == "user"]
    if roles != ["user", "assistant"] * len(texts) or said != texts:
        raise fail("history_missing", f"the history shows roles {roles} and user texts {said}")


async def thread_continuity(run: CheckRun) -> str:
    """P1-14: a second message continues the thread; the history API shows both exchanges."""
    token = run.token()
    async with await run.open(token) as wire:
        ack, first = await dialogue.round_trip(wire, "check-turn-1")
        thread_id, _ = dialogue.ack_ids(ack)
        second_ack = await dialogue.send_message(wire, "check-turn-2", SECOND_QUESTION, thread_id)
        second_thread, second_run = dialogue.ack_ids(second_ack)
        second = await dialogue.run_events(wire, second_run)
    verify.five_events(second)
    verify.streamed_text(second)
    if second_thread != thread_id:
        raise fail("missing_ids", f"the second message went to {second_thread}, not {thread_id}")
    ids = [event.get("event_id") for event in first + second]
    if ids != list(range(1, len(ids) + 1)):
        raise fail("events_out_of_order", f"the thread's event ids are {ids}")
    await _history_shows(run, token, thread_id, [dialogue.QUESTION, SECOND_QUESTION])
    return f"two runs in {thread_id}, event ids 1..{len(ids)}; the history shows both exchanges"


async def resume(run: CheckRun) -> str:
    """P1-15: disconnected after ``agent_started``, a resume returns every missed event once."""
    thread_id, after, events = await dialogue.leave_and_resume(run.ctx, run.token())
    verify.resumed(events, after)
    # The socket left at agent_started, before any text: the resume carries the whole answer.
    verify.streamed_text(events)
    return f"left {thread_id} after event {after}; resumed {verify.id_span(events)}"
