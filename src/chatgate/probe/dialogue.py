"""Conversations the probe and the checks hold on a socket: a message, its run, a resume."""

from __future__ import annotations

from typing import Any

from chatgate.client.events import RUN_END_TYPES
from chatgate.probe.context import ProbeContext
from chatgate.probe.outcome import fail
from chatgate.probe.wire import Wire

QUESTION = "what is 6*7?"
"""The demo agent answers it with a calculator call: all five agent events."""

Frame = dict[str, Any]


def _payload(frame: Frame) -> dict[str, Any]:
    payload = frame.get("payload")
    return payload if isinstance(payload, dict) else {}


async def answer_to(wire: Wire, request_id: str, *kinds: str) -> Frame:
    """Read until the frame of type in ``kinds`` that answers ``request_id``, or its ``error``.

    Raises:
        Problem: the socket ended or went silent first.
    """
    while True:
        frame = await wire.recv(f"waiting for the answer to {request_id}")
        payload = _payload(frame)
        kind = frame.get("type")
        answers = payload.get("client_message_id", payload.get("id")) == request_id
        if answers and (kind in kinds or kind == "error"):
            return frame


async def send_message(
    wire: Wire, msg_id: str, text: str = QUESTION, thread_id: str | None = None
) -> Frame:
    """Send a user message and return its ``message_ack``.

    Raises:
        Problem: an ``error`` answered it (``wrong_error``), or the socket ended.
    """
    frame: Frame = {"type": "user_message", "id": msg_id, "payload": {"text": text}}
    if thread_id is not None:
        frame["thread_id"] = thread_id
    await wire.send(frame, "sending a user message")
    answer = await answer_to(wire, msg_id, "message_ack")
    if answer.get("type") == "error":
        payload = _payload(answer)
        raise fail("wrong_error", f"the user message got error {payload.get('code')}: {payload}")
    return answer


def ack_ids(ack: Frame) -> tuple[str, str]:
    """The thread and run ids a ``message_ack`` announced."""
    payload = _payload(ack)
    return str(payload.get("thread_id")), str(payload.get("run_id"))


async def run_events(
    wire: Wire, run_id: str, *, until: frozenset[str] = RUN_END_TYPES
) -> list[Frame]:
    """The run's events, up to and including the first whose type is in ``until``.

    Raises:
        Problem: the socket ended or went silent first.
    """
    events = []
    while True:
        frame = await wire.recv(f"waiting for the events of run {run_id}")
        if frame.get("run_id") != run_id or frame.get("event_id") is None:
            continue
        events.append(frame)
        if frame.get("type") in until:
            return events


async def round_trip(
    wire: Wire, msg_id: str, thread_id: str | None = None
) -> tuple[Frame, list[Frame]]:
    """Send the question and return its ack and every event of its run.

    Raises:
        Problem: as :func:`send_message` and :func:`run_events`.
    """
    ack = await send_message(wire, msg_id, thread_id=thread_id)
    _, run_id = ack_ids(ack)
    return ack, await run_events(wire, run_id)


async def ping(wire: Wire, ping_id: str) -> Frame:
    """Send ``ping`` and return the answer (``pong`` or ``error``).

    Raises:
        Problem: the socket ended or went silent first.
    """
    await wire.send({"type": "ping", "id": ping_id}, "sending ping")
    return await answer_to(wire, ping_id, "pong")


async def resume_thread(wire: Wire, thread_id: str, after_event_id: int) -> list[Frame]:
    """Resume ``thread_id`` after ``after_event_id``; return its events through the run's end.

    Live events that arrive before, during or after the resume all count,
    since the contract promises each event once whichever way it comes.

    Raises:
        Problem: the socket ended or went silent before both the ``resume_complete``
            and the end of the run.
    """
    request_id = "probe-resume"
    await wire.send(
        {
            "type": "resume",
            "id": request_id,
            "thread_id": thread_id,
            "after_event_id": after_event_id,
        },
        "sending resume",
    )
    events: list[Frame] = []
    completed = ended = False
    while not (completed and ended):
        frame = await wire.recv(f"waiting for the events of thread {thread_id} after a resume")
        if frame.get("thread_id") != thread_id and _payload(frame).get("id") != request_id:
            continue
        kind = frame.get("type")
        if kind == "error":
            raise fail("resume_incomplete", f"the resume got error {_payload(frame)}")
        if kind == "resume_complete":
            completed = True
        elif frame.get("event_id") is not None:
            events.append(frame)
            ended = ended or kind in RUN_END_TYPES
    return events


async def leave_and_resume(ctx: ProbeContext, token: str) -> tuple[str, int, list[Frame]]:
    """Start a run, disconnect after ``agent_started``, reconnect and resume the thread.

    Returns the thread id, the last event id seen before leaving, and the
    thread's events that came after it on the new socket.

    Raises:
        Problem: a socket failed, or the resume got an error.
    """
    async with await Wire.open(ctx, token, doing="opening the socket to leave") as first:
        ack = await send_message(first, "probe-resume-message")
        thread_id, run_id = ack_ids(ack)
        started = await run_events(first, run_id, until=frozenset({"agent_started"}))
    after = int(started[-1]["event_id"])
    async with await Wire.open(ctx, token, doing="reconnecting to resume") as second:
        events = await resume_thread(second, thread_id, after)
    return thread_id, after, events
