"""Checks P1-16, P1-17 and P1-22: several users at once, many sockets at once, latency."""

from __future__ import annotations

import asyncio
import math
import time
from http import HTTPStatus

from chatgate.probe import dialogue, verify
from chatgate.probe.checks.base import CheckRun
from chatgate.probe.outcome import fail
from chatgate.probe.wire import Wire

ISOLATION_USERS = 5
CONCURRENT_SOCKETS = 20
ROUND_TRIPS_PER_SOCKET = 5
"""Few enough frames per socket to stay far below any sane rate limit."""


async def _open_all(run: CheckRun, tokens: list[str]) -> list[Wire]:
    opened = await asyncio.gather(
        *(
            run.open(token, doing=f"opening socket {i + 1} of {len(tokens)}")
            for i, token in enumerate(tokens)
        ),
        return_exceptions=True,
    )
    wires = [w for w in opened if isinstance(w, Wire)]
    failed = [e for e in opened if isinstance(e, BaseException)]
    if failed:
        await _close_all(wires)
        raise failed[0]
    return wires


async def _close_all(wires: list[Wire]) -> None:
    await asyncio.gather(*(wire.close() for wire in wires))


def _foreign(wire: Wire, own_thread: str) -> list[str]:
    return [
        f"{frame.get('type')} of {frame.get('thread_id')}"
        for frame in wire.received
        if frame.get("thread_id") not in {None, own_thread}
    ]


async def _other_thread_refused(
    run: CheckRun, wire: Wire, token: str, own: str, other: str
) -> None:
    await wire.send(
        {
            "type": "user_message",
            "id": "check-foreign",
            "thread_id": other,
            "payload": {"text": "hi"},
        },
        "writing to another user's thread",
    )
    answer = await dialogue.answer_to(wire, "check-foreign", "message_ack")
    code = (answer.get("payload") or {}).get("code")
    if answer.get("type") != "error" or code != "thread_not_found":
        raise fail("isolation_breach", f"another user's thread got {answer.get('type')} {code}")
    # A 404 means something only where the caller's own thread answers 200.
    mine = await run.ctx.http.get(f"/api/threads/{own}/messages", token=token)
    if mine.status != HTTPStatus.OK:
        raise fail(
            "history_missing",
            f"GET /api/threads/{own}/messages (the caller's own) answered {mine.status}",
            http_status=mine.status,
        )
    theirs = await run.ctx.http.get(f"/api/threads/{other}/messages", token=token)
    if theirs.status != HTTPStatus.NOT_FOUND:
        raise fail(
            "isolation_breach",
            f"GET another user's thread answered {theirs.status}, not 404",
            http_status=theirs.status,
        )


async def isolation(run: CheckRun) -> str:
    """P1-16: five users at once see no foreign frame; another's thread is not found."""
    tokens = [run.user_token(f"iso{i}") for i in range(ISOLATION_USERS)]
    wires = await _open_all(run, tokens)
    try:
        trips = await asyncio.gather(
            *(dialogue.round_trip(wire, f"check-iso-{i}") for i, wire in enumerate(wires))
        )
        threads = [dialogue.ack_ids(ack)[0] for ack, _ in trips]
        for i, wire in enumerate(wires):
            foreign = _foreign(wire, threads[i])
            if foreign:
                raise fail("isolation_breach", f"user {i + 1} received {foreign}")
        await _other_thread_refused(run, wires[0], tokens[0], threads[0], threads[1])
    finally:
        await _close_all(wires)
    return (
        f"{ISOLATION_USERS} users, no foreign frame; another user's thread: thread_not_found, 404"
    )


async def concurrency(run: CheckRun) -> str:
    """P1-17: twenty sockets at once all complete a round trip."""
    tokens = [run.user_token(f"conc{i}") for i in range(CONCURRENT_SOCKETS)]
    wires = await _open_all(run, tokens)
    started = time.monotonic()
    try:
        trips = await asyncio.gather(
            *(dialogue.round_trip(wire, f"check-conc-{i}") for i, wire in enumerate(wires))
        )
    finally:
        await _close_all(wires)
    for _, events in trips:
        verify.five_events(events)
        verify.streamed_text(events)
    took = time.monotonic() - started
    return f"{CONCURRENT_SOCKETS} sockets completed a round trip in {took * 1000:.0f} ms"


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


async def _timed_round_trip(wire: Wire, msg_id: str) -> tuple[float, float]:
    started = time.monotonic()
    ack = await dialogue.send_message(wire, msg_id)
    _, run_id = dialogue.ack_ids(ack)
    first = await dialogue.run_events(wire, run_id, until=frozenset({"agent_started"}))
    to_started = time.monotonic() - started
    rest = await dialogue.run_events(wire, run_id)
    verify.five_events(first + rest)
    return to_started * 1000, (time.monotonic() - started) * 1000


async def latency(run: CheckRun) -> str:
    """P1-22: over 20 round trips, p95 to ``agent_started`` and ``agent_completed`` in budget."""
    budgets = run.budgets
    started_ms: list[float] = []
    completed_ms: list[float] = []
    while len(started_ms) < budgets.round_trips:
        async with await run.open() as wire:
            for _ in range(min(ROUND_TRIPS_PER_SOCKET, budgets.round_trips - len(started_ms))):
                to_started, to_completed = await _timed_round_trip(
                    wire, f"check-lat-{len(started_ms)}"
                )
                started_ms.append(to_started)
                completed_ms.append(to_completed)
    to_started, to_completed = p95(started_ms), p95(completed_ms)
    measured = f"p95 {to_started:.0f} ms to agent_started, {to_completed:.0f} ms to agent_completed"
    if to_started > budgets.started_ms or to_completed > budgets.completed_ms:
        raise fail(
            "too_slow",
            f"{measured} (budgets {budgets.started_ms:g} / {budgets.completed_ms:g} ms)",
        )
    return f"{measured} over {len(started_ms)} round trips"
