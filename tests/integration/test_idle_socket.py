"""What an open, idle, authenticated socket holds on the server: little, and no copy of its token.

Tens of thousands of sockets sit idle at once. Past the handshake, the upgrade
request (its headers, the credential among them), its response and uvicorn's
asyncio queue are dropped; the socket waits in few coroutines. Real uvicorn,
real clients.
"""

from __future__ import annotations

import asyncio
import gc

from chatgate.chat.service import ChatService
from chatgate.transport.inbox import Inbox, Writable
from chatgate.transport.socket import Connection
from chatgate.transport.uvicorn_ws import GatewayWebSocketProtocol

from support import established, running_server

_SETTLE_S = 0.05


def _the_one(kind: type) -> object:
    found = [o for o in gc.get_objects() if type(o) is kind]
    assert len(found) == 1, found
    return found[0]


async def test_an_idle_socket_keeps_neither_the_request_nor_the_token() -> None:
    async with running_server() as server:
        token = server.token("idle-user")
        async with server.connect(token) as ws:
            await established(ws)
            await asyncio.sleep(_SETTLE_S)
            protocol = _the_one(GatewayWebSocketProtocol)
            assert isinstance(protocol, GatewayWebSocketProtocol)
            assert not hasattr(protocol, "request")
            assert not hasattr(protocol, "response")
            assert isinstance(protocol.queue, Inbox)
            assert isinstance(protocol.writable, Writable)
            assert protocol.queue._items is None
            scope = protocol.scope
            assert scope["headers"] == ()
            assert "state" not in scope
            # websockets' parser keeps the request it parsed in its frame: emptied.
            frame = protocol.conn.parser.gi_frame
            assert frame is not None
            request = frame.f_locals.get("request")
            assert request is None or len(request.headers) == 0
            connection = _the_one(Connection)
            assert isinstance(connection, Connection)
            assert connection.scope is scope
            service = _the_one(ChatService)
            assert service._seen is None
            assert service._resuming is None
            token_bytes = token.encode()
            for holder in (scope, vars(protocol), vars(protocol.conn)):
                for value in holder.values():
                    assert value not in (token, token_bytes)


def _coroutine_of(task: asyncio.Task[object]) -> tuple[str, str]:
    coro = task.get_coro()
    return coro.__qualname__, coro.cr_code.co_filename  # type: ignore[union-attr]


async def test_an_idle_socket_waits_in_one_task() -> None:
    async with running_server() as server, server.connect(server.token("one-task")) as ws:
        await established(ws)
        await asyncio.sleep(_SETTLE_S)
        coroutines = [_coroutine_of(task) for task in asyncio.all_tasks()]
        # uvicorn's task running the app, and no sender of the socket's own.
        assert [name for name, _ in coroutines].count("WebSocketsSansIOProtocol.run_asgi") == 1
        assert [name for name, path in coroutines if "/chatgate/transport/" in path] == []
