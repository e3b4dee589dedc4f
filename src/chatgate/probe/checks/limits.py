"""Checks P1-18 to P1-21: malformed frames, unknown types, oversize frames, rate limits."""

from __future__ import annotations

import json
from typing import Any

from chatgate.closecodes import CloseCode
from chatgate.probe import dialogue
from chatgate.probe.checks.base import CheckRun, expect_close
from chatgate.probe.context import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_RATE_LIMIT
from chatgate.probe.outcome import Problem, fail, failure_for
from chatgate.probe.wire import Wire


def _error_code(frame: dict[str, Any]) -> str | None:
    payload = frame.get("payload")
    if frame.get("type") != "error" or not isinstance(payload, dict):
        return None
    return str(payload.get("code"))


async def _next_error(wire: Wire, doing: str) -> dict[str, Any]:
    while True:
        frame = await wire.recv(doing)
        if frame.get("type") == "error":
            return frame


async def _still_answers(wire: Wire) -> None:
    answer = await dialogue.ping(wire, "check-alive")
    if answer.get("type") != "pong":
        raise fail("wrong_error", f"after the error, ping got {answer}")


async def malformed_json(run: CheckRun) -> str:
    """P1-18: a frame that is not JSON gets ``error invalid_json``; the socket still answers."""
    async with await run.open() as wire:
        await wire.send_text("{this is not json", "sending a malformed frame")
        error = await _next_error(wire, "waiting for error invalid_json")
        if _error_code(error) != "invalid_json":
            raise fail("wrong_error", f"a malformed frame got {error.get('payload')}")
        await _still_answers(wire)
    return "error invalid_json, then pong"


async def unknown_type(run: CheckRun) -> str:
    """P1-19: an unknown type gets ``error unknown_type`` with the id; the socket still answers."""
    async with await run.open() as wire:
        await wire.send({"type": "no_such_type", "id": "check-unknown"}, "sending an unknown type")
        error = await _next_error(wire, "waiting for error unknown_type")
        payload = error.get("payload") or {}
        if _error_code(error) != "unknown_type" or payload.get("id") != "check-unknown":
            raise fail("wrong_error", f"an unknown type got {payload}")
        await _still_answers(wire)
    return "error unknown_type, then pong"


async def oversize(run: CheckRun) -> str:
    """P1-20: a frame over ``max_message_bytes`` closes 1009."""
    async with await run.open() as wire:
        limit = wire.established.get("max_message_bytes")
        size = int(limit) if isinstance(limit, int) else DEFAULT_MAX_MESSAGE_BYTES
        frame = json.dumps({"type": "ping", "pad": "x" * size})
        await wire.send_text(frame, f"sending a {len(frame)}-byte frame")
        ended = await wire.closed(
            f"waiting for the close of a frame over {size} bytes", run.ctx.timeout
        )
    return expect_close(ended, CloseCode.MESSAGE_TOO_BIG, f"a {len(frame)}-byte frame", 0.0)


async def rate_limit(run: CheckRun) -> str:
    """P1-21: a burst past the rate limit gets ``error rate_limited``."""
    limit = int(await run.ctx.limit("rate_limit_messages", DEFAULT_RATE_LIMIT))
    burst = limit + 2
    async with await run.open() as wire:
        for i in range(burst):
            await wire.send({"type": "ping", "id": f"check-burst-{i}"}, "sending a burst")
        pongs = 0
        while pongs < burst:
            event = await wire.next_event("reading the answers to the burst")
            if not isinstance(event, dict):
                doing = "reading the answers to a burst, expecting error rate_limited first"
                raise Problem(failure_for(event, doing=doing))
            if _error_code(event) == "rate_limited":
                return f"error rate_limited after {pongs} pongs (limit {limit})"
            pongs += event.get("type") == "pong"
    raise fail("limit_not_enforced", f"{burst} pings in a burst all got pong (limit {limit})")
