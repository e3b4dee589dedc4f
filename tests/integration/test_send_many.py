"""Several frames in one write: the server's ``chatgate.transport.send_many`` extension, and the
gateway's fallback to one ``websocket.send`` per frame under a server without it.

Real uvicorn, real websockets clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import connect

from chatgate.transport.send_many import SEND_MANY, offers_send_many
from chatgate.transport.uvicorn_ws import GatewayWebSocketProtocol

from support import (
    DEMO_RUN,
    RECV_TIMEOUT_S,
    answer_text,
    chat,
    established,
    free_socket,
    recv_json,
    running_server,
    send_json,
)

_EXPECTED_RUN = ["message_ack", *DEMO_RUN]


class _App:
    """Sends one batch of texts on connect, then a second batch once the client has gone."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.offered: bool | None = None
        self.after_close: BaseException | None = None
        self.done = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self.offered = offers_send_many(scope)
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            await send({"type": SEND_MANY, "frames": [t.encode() for t in self.texts]})
            assert (await receive())["type"] == "websocket.disconnect"
            try:
                await send({"type": SEND_MANY, "frames": [b"too late"]})
            except BaseException as exc:  # noqa: BLE001 - the test reads what was raised
                self.after_close = exc
        finally:
            self.done.set()


@contextlib.asynccontextmanager
async def _serving(app: _App) -> AsyncIterator[str]:
    sock = free_socket()
    config = uvicorn.Config(app, ws=GatewayWebSocketProtocol, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_the_server_offers_the_extension_and_writes_a_batch_in_order() -> None:
    texts = [f"frame {n} " + "é" * n for n in range(50)]
    app = _App(texts)
    async with _serving(app) as url, connect(url, open_timeout=RECV_TIMEOUT_S) as ws:
        received = [await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S) for _ in texts]
    assert app.offered is True
    assert received == texts


async def test_a_batch_after_the_client_left_raises_an_os_error() -> None:
    # uvicorn's ClientDisconnected is an OSError: the gateway's sender stops on it.
    app = _App(["hello"])
    async with _serving(app) as url:
        async with connect(url, open_timeout=RECV_TIMEOUT_S) as ws:
            assert await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S) == "hello"
        await asyncio.wait_for(app.done.wait(), RECV_TIMEOUT_S)
    assert isinstance(app.after_close, OSError), app.after_close


async def test_an_empty_batch_sends_nothing_and_keeps_the_socket() -> None:
    app = _App([])
    async with _serving(app) as url, connect(url, open_timeout=RECV_TIMEOUT_S) as ws:
        await ws.ping()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.2)
    assert app.offered is True


@pytest.mark.parametrize(
    ("ws_protocol", "compression"),
    [
        (GatewayWebSocketProtocol, False),
        (GatewayWebSocketProtocol, True),
        ("websockets-sansio", False),
    ],
    ids=["chatgate-protocol", "chatgate-protocol-deflate", "plain-uvicorn"],
)
async def test_runs_and_pongs_arrive_whole_and_in_order_with_and_without_the_extension(
    ws_protocol: Any, compression: bool
) -> None:
    async with (
        running_server(uvicorn_options={"ws": ws_protocol}, ws_compression=compression) as server,
        server.connect(server.token("batch-user")) as ws,
    ):
        # The client offers permessage-deflate; the server takes it only when configured.
        assert bool(ws.protocol.extensions) is compression
        await established(ws)
        thread_id = None
        for turn in range(3):
            frames = await chat(ws, f"what is {turn}+2?", thread_id, msg_id=f"m{turn}")
            assert [f["type"] for f in frames] == _EXPECTED_RUN
            assert frames[-1]["payload"]["text"] == f"{turn}+2 = {turn + 2}"
            assert answer_text(frames) == f"{turn}+2 = {turn + 2}"
            ids = [f["event_id"] for f in frames[1:]]
            assert ids == list(range(turn * len(DEMO_RUN) + 1, (turn + 1) * len(DEMO_RUN) + 1))
            thread_id = frames[0]["thread_id"]
        # Pings sent at once (within the rate limit) are answered in order.
        for n in range(10):
            await send_json(ws, {"type": "ping", "id": n})
        pongs = [await recv_json(ws) for _ in range(10)]
        assert [(p["type"], p["payload"]["id"]) for p in pongs] == [("pong", n) for n in range(10)]
