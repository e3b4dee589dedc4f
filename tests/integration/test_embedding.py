"""The gateway mounted inside another Starlette application, served by plain uvicorn.

This is how an existing FastAPI or Starlette app adds chat (docs/embedding.md):
the host runs the gateway's lifespan and mounts its ASGI app under a prefix.
Under a server other than chatgate's own, frames go one ``websocket.send`` each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from websockets.asyncio.client import connect

from chatgate.auth.minting import mint_token
from chatgate.bootstrap import boot
from chatgate.closecodes import CloseCode
from chatgate.settings import load_settings

from support import SECRET, expect_close, free_socket, recv_json, recv_until, send_json


async def hello(_: Request) -> PlainTextResponse:
    return PlainTextResponse("the host app")


@contextlib.asynccontextmanager
async def host_app() -> AsyncIterator[int]:
    booted = boot(load_settings(jwt_secret=SECRET, database_url="memory://"))
    gateway = booted.app
    host = Starlette(
        routes=[Route("/hello", hello), Mount("/chat", app=gateway)],
        lifespan=gateway.lifespan,
    )
    sock = free_socket()
    config = uvicorn.Config(host, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_a_mounted_gateway_chats_beside_the_host_routes() -> None:
    async with host_app() as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/hello")).text == "the host app"
        assert (await http.get("/chat/healthz")).json() == {"status": "ok"}
        assert (await http.get("/chat/readyz")).status_code == 200
        token = mint_token(SECRET, "alice")
        async with connect(
            f"ws://127.0.0.1:{port}/chat/ws", subprotocols=["chatgate.v1", f"bearer.{token}"]
        ) as ws:
            assert ws.subprotocol == "chatgate.v1"
            established = await recv_json(ws)
            assert established["type"] == "connection_established"
            assert established["payload"]["user_id"] == "alice"
            await send_json(
                ws, {"type": "user_message", "id": "1", "payload": {"text": "what is 6*7?"}}
            )
            frames = await recv_until(ws, "agent_completed", "agent_error")
        assert frames[0]["type"] == "message_ack"
        assert frames[-1]["type"] == "agent_completed"
        assert "42" in frames[-1]["payload"]["text"]


async def test_a_mounted_gateway_still_closes_with_the_table() -> None:
    async with host_app() as port:
        async with connect(
            f"ws://127.0.0.1:{port}/chat/ws", subprotocols=["chatgate.v1", "bearer.not-a-jwt"]
        ) as ws:
            reason = await expect_close(ws, CloseCode.AUTH_INVALID)
        assert "not-a-jwt" not in reason
