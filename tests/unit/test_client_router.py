"""Routing frames to runs and requests, without a socket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatgate.client.errors import (
    ConnectionLost,
    Interrupted,
    MessageNotConfirmed,
    RequestFailed,
    ServerClosed,
)
from chatgate.client.events import Event
from chatgate.client.router import Router
from chatgate.client.runs import Pending, RequestKind

FIVE = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


def frame(kind: str, event_id: int | None = None, **payload: Any) -> Event:
    return Event(kind, event_id, "th_1", "run_1" if event_id else None, None, payload)


def ack() -> Event:
    return frame(
        "message_ack", client_message_id="c1", message_id="m", thread_id="th_1", run_id="run_1"
    )


async def pending(
    router: Router, kind: RequestKind, request_id: str, thread: str | None = None
) -> Pending:
    waiting = Pending(kind, asyncio.get_running_loop().create_future(), thread)
    router.pending[request_id] = waiting
    return waiting


async def test_a_run_gets_its_events_in_order_whatever_the_arrival_order() -> None:
    released: list[Event] = []
    router = Router(on_event=released.append)
    message = await pending(router, RequestKind.MESSAGE, "c1")
    router.dispatch(ack())
    run = message.run
    assert run is not None
    for event_id in (1, 2, 4, 5, 3, 2):
        router.dispatch(frame(FIVE[event_id - 1], event_id))
    events = [event async for event in run]
    assert [e.event_id for e in events] == [1, 2, 3, 4, 5]
    assert [e.event_id for e in released] == [1, 2, 3, 4, 5]
    assert router.runs == {}


async def test_a_resume_collects_its_thread_and_completes_on_resume_complete() -> None:
    router = Router()
    router.cursor("th_1", 2)
    resume = await pending(router, RequestKind.RESUME, "c2", "th_1")
    router.dispatch(frame("tool_completed", 4))
    router.dispatch(frame("tool_executing", 3))
    router.dispatch(frame("resume_complete"))
    assert resume.future.done()
    assert [e.event_id for e in resume.events] == [3, 4]


async def test_resume_complete_flushes_a_gap_that_will_not_fill() -> None:
    router = Router()
    router.cursor("th_1", 1)
    resume = await pending(router, RequestKind.RESUME, "c2", "th_1")
    router.dispatch(frame("agent_completed", 5))
    assert resume.events == []
    router.dispatch(frame("resume_complete"))
    assert [e.event_id for e in resume.events] == [5]


async def test_an_error_fails_the_request_that_named_it() -> None:
    router = Router()
    ping = await pending(router, RequestKind.PING, "c3")
    router.dispatch(
        Event("error", None, None, None, None, {"code": "rate_limited", "message": "m", "id": "c3"})
    )
    with pytest.raises(RequestFailed) as caught:
        ping.future.result()
    assert caught.value.code == "rate_limited"


async def test_a_lost_socket_fails_unconfirmed_messages_and_keeps_resumes() -> None:
    router = Router()
    message = await pending(router, RequestKind.MESSAGE, "c1")
    ping = await pending(router, RequestKind.PING, "c2")
    resume = await pending(router, RequestKind.RESUME, "c3", "th_1")
    router.interrupt(ConnectionLost())
    assert isinstance(message.future.exception(), MessageNotConfirmed)
    assert isinstance(ping.future.exception(), Interrupted)
    assert not resume.future.done()
    resume.future.cancel()


async def test_the_end_of_the_session_reaches_every_run_and_request() -> None:
    router = Router()
    message = await pending(router, RequestKind.MESSAGE, "c1")
    router.dispatch(ack())
    run = message.run
    assert run is not None
    closed = ServerClosed(4003, "auth_invalid: token of another user")
    router.stop(closed)
    with pytest.raises(ServerClosed):
        await run.collect()


async def test_token_expiring_calls_back_and_resume_frames_cover_every_thread() -> None:
    warned: list[bool] = []
    router = Router(on_expiring=lambda: warned.append(True))
    router.dispatch(Event("token_expiring", None, None, None, None, {"expires_in_s": 5}))
    assert warned == [True]
    router.cursor("th_1", 4)
    router.cursor("th_2")
    ids = iter(["r1", "r2"])
    assert router.resume_frames(lambda: next(ids)) == [
        {"type": "resume", "id": "r1", "thread_id": "th_1", "after_event_id": 4},
        {"type": "resume", "id": "r2", "thread_id": "th_2", "after_event_id": 0},
    ]
