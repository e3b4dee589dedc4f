"""Limits of docs/protocol.md section 6: invalid frames, connections per user, rate, frame size."""

from __future__ import annotations

import contextlib
from typing import Any

from websockets.exceptions import ConnectionClosed

from chatgate.closecodes import CloseCode

from support import (
    Server,
    established,
    expect_close,
    frames_until_close,
    recv_json,
    running_server,
    send_json,
)

RECONNECT_ATTEMPTS = 50


async def _ping(ws: Any, ping_id: str) -> None:
    await send_json(ws, {"type": "ping", "id": ping_id})
    pong = await recv_json(ws)
    assert pong["type"] == "pong", pong
    assert pong["payload"] == {"id": ping_id}


# Invalid frames: error events, then 4009


INVALID_FRAMES = [
    ("this is not json", "invalid_json", None),
    ('{"type": "user_message", "id": "u1"}', "invalid_message", "u1"),
    ('{"type": "frobnicate", "id": "x9"}', "unknown_type", "x9"),
    (
        '{"type": "resume", "id": 7, "thread_id": "th_x", "after_event_id": -1}',
        "invalid_message",
        7,
    ),
    ("[1, 2, 3]", "invalid_message", None),
]


async def test_a_few_invalid_frames_get_error_events_and_the_socket_keeps_working() -> None:
    async with running_server() as server, server.connect(server.token("alice")) as ws:
        await established(ws)
        for raw, code, client_id in INVALID_FRAMES:
            await ws.send(raw)
            error = await recv_json(ws)
            assert error["type"] == "error", error
            assert error["event_id"] is None
            assert error["payload"]["code"] == code, (raw, error)
            assert error["payload"]["correlation_id"]
            assert error["payload"].get("id") == client_id, (raw, error)
            await _ping(ws, f"after-{code}")


async def test_repeated_invalid_frames_close_4009() -> None:
    limit = 3
    async with (
        running_server(max_invalid_frames=limit) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        errors = 0
        with contextlib.suppress(ConnectionClosed):
            for n in range(limit + 1):
                await ws.send(f'{{"type": "nope", "id": "bad{n}"}}')
                frame = await recv_json(ws)
                assert frame["type"] == "error", frame
                assert frame["payload"]["code"] == "unknown_type"
                errors += 1
        await expect_close(ws, CloseCode.TOO_MANY_ERRORS)
        # "limit invalid frames per minute": the socket closes at the limit or just past it.
        assert limit - 1 <= errors <= limit, errors


async def test_valid_frames_between_invalid_ones_do_not_reset_the_count() -> None:
    limit = 3
    async with (
        running_server(max_invalid_frames=limit) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        with contextlib.suppress(ConnectionClosed):
            for n in range(limit + 1):
                await _ping(ws, f"ok{n}")
                await ws.send("{broken")
                frame = await recv_json(ws)
                assert frame["payload"]["code"] == "invalid_json", frame
        await expect_close(ws, CloseCode.TOO_MANY_ERRORS)


# Connections per user: 4010


async def _connect_established(server: Server, token: str) -> tuple[contextlib.AsyncExitStack, Any]:
    stack = contextlib.AsyncExitStack()
    ws = await stack.enter_async_context(server.connect(token))
    await established(ws)
    return stack, ws


async def _accepted(server: Server, token: str) -> bool:
    """Connect once: True when established (and usable), False when refused with 4010."""
    async with server.connect(token) as ws:
        try:
            hello = await recv_json(ws)
        except ConnectionClosed:
            await expect_close(ws, CloseCode.CONNECTION_LIMIT)
            return False
        assert hello["type"] == "connection_established", hello
        await _ping(ws, "fresh")
        return True


async def test_third_socket_of_a_user_closes_4010_and_a_freed_slot_is_reusable() -> None:
    async with running_server(max_connections_per_user=2) as server:
        token = server.token("alice")
        first, _ = await _connect_established(server, token)
        second, ws2 = await _connect_established(server, token)
        async with server.connect(token) as third:
            await expect_close(third, CloseCode.CONNECTION_LIMIT)
        # Another user is not affected by alice's count.
        bob, _ = await _connect_established(server, server.token("bob"))
        await bob.aclose()
        await first.aclose()
        # The server releases the slot once it has finished with the closed socket;
        # reconnecting is how a client finds out, so retry, a bounded number of times.
        for _ in range(RECONNECT_ATTEMPTS):
            if await _accepted(server, token):
                break
        else:
            raise AssertionError("the freed slot was never given back")
        # The second socket lived through all of it.
        await _ping(ws2, "still-here")
        await second.aclose()


# Rate limit: error rate_limited, then 4100


async def test_burst_gets_rate_limited_error_then_4100() -> None:
    limit = 5
    async with (
        running_server(rate_limit_messages=limit, rate_limit_window_s=60) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        with contextlib.suppress(ConnectionClosed):
            for n in range(limit * 4):
                await send_json(ws, {"type": "ping", "id": f"p{n}"})
        frames = await frames_until_close(ws, CloseCode.RATE_LIMITED)
        types = [f["type"] for f in frames]
        assert types[:limit] == ["pong"] * limit, types
        assert types[limit] == "error", types
        assert frames[limit]["payload"]["code"] == "rate_limited"
        assert frames[limit]["payload"]["id"] == f"p{limit}"
        assert set(types[limit:]) == {"error"}, types


async def test_a_paced_client_only_gets_the_error_and_stays_connected() -> None:
    limit = 5
    async with (
        running_server(rate_limit_messages=limit, rate_limit_window_s=60) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        for n in range(limit):
            await _ping(ws, f"p{n}")
        await send_json(ws, {"type": "ping", "id": "over"})
        error = await recv_json(ws)
        assert error["type"] == "error"
        assert error["payload"]["code"] == "rate_limited"
        assert ws.close_code is None


# Frame size: 1009


async def test_frame_over_max_message_bytes_closes_1009_and_the_client_sees_it() -> None:
    async with (
        running_server(max_message_bytes=1024) as server,
        server.connect(server.token("alice"), max_size=None) as ws,
    ):
        await established(ws)
        text = "x" * 2000
        await send_json(ws, {"type": "user_message", "id": "big", "payload": {"text": text}})
        await expect_close(ws, CloseCode.MESSAGE_TOO_BIG)
        assert ws.close_code == 1009


async def test_frame_at_max_message_bytes_is_accepted() -> None:
    limit = 1024
    async with (
        running_server(max_message_bytes=limit) as server,
        server.connect(server.token("alice")) as ws,
    ):
        await established(ws)
        frame = '{"type": "ping", "id": "fits", "pad": ""}'
        frame = frame.replace('""', '"' + "y" * (limit - len(frame)) + '"')
        assert len(frame.encode()) == limit
        await ws.send(frame)
        pong = await recv_json(ws)
        assert pong["type"] == "pong"
