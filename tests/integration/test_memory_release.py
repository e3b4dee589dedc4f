"""A closed socket is freed by reference counting: none of chatgate's objects of a
connection, nor the server protocols under it, is left for the cycle collector,
which would otherwise run every few dozen handshakes and walk every young object
each time. Real uvicorn, real clients.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from websockets.server import ServerProtocol

from chatgate.chat.session import Session
from chatgate.transport.outbox import Outbox
from chatgate.transport.socket import Connection
from chatgate.transport.uvicorn_http import GatewayHttpProtocol
from chatgate.transport.uvicorn_ws import GatewayWebSocketProtocol

from support import chat, established, running_server

_OURS = (
    Connection,
    Outbox,
    Session,
    # The HTTP protocol hands the socket over at the upgrade; websockets' parser
    # is a generator holding its protocol.
    GatewayHttpProtocol,
    GatewayWebSocketProtocol,
    ServerProtocol,
)
_RELEASE_WAIT_S = 10.0


@contextmanager
def cycles_kept() -> Iterator[list[object]]:
    """Keep what the cycle collector would free, instead of freeing it."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def ours(garbage: list[object]) -> Counter[str]:
    return Counter(type(o).__name__ for o in garbage if isinstance(o, _OURS))


async def until_released(garbage: list[object]) -> None:
    """Wait until every connection object is gone, freed or caught in ``garbage``.

    The server's side of a socket finishes after the client's close; until it
    has, its objects are alive and neither freed nor garbage, and asserting
    then would prove nothing.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _RELEASE_WAIT_S
    while True:
        gc.collect()
        caught = {id(o) for o in garbage}
        alive = [o for o in gc.get_objects() if isinstance(o, _OURS) and id(o) not in caught]
        if not alive:
            return
        if loop.time() > deadline:
            raise AssertionError(f"still referenced: {Counter(type(o).__name__ for o in alive)}")
        del alive
        await asyncio.sleep(0.01)


async def test_sockets_that_chatted_and_closed_leave_no_cycle_behind() -> None:
    async with running_server() as server:
        token = server.token("refcounted")
        with cycles_kept() as garbage:
            for turn in range(3):
                async with server.connect(token) as ws:
                    await established(ws)
                    frames = await chat(ws, f"what is {turn}*7?")
                    assert frames[-1]["type"] == "agent_completed"
            await until_released(garbage)
            assert ours(garbage) == Counter()


async def test_sockets_refused_at_the_handshake_leave_no_cycle_behind() -> None:
    async with running_server() as server:
        with cycles_kept() as garbage:
            for _ in range(3):
                async with server.connect("not-a-token") as ws:
                    await ws.wait_closed()
                assert ws.close_code == 4003
            await until_released(garbage)
            assert ours(garbage) == Counter()
