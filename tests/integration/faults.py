"""Fault injection for the probe, check and client tests: real sockets that misbehave on purpose.

- ``TcpProxy``: a TCP proxy in front of a real server (or PostgreSQL) that can
  refuse the upgrade with an HTTP status, strip a request header, drop every
  connection after N seconds or on demand, switch upstream, or cut everything.
- ``drainable_server``: ``support.running_server`` plus a ``drain()`` that
  shuts uvicorn down the way SIGTERM does, so open sockets get a real 1012.
- ``silent_listener`` accepts TCP and never answers; ``closed_port`` has nothing listening.
- ``StallingAgent`` signals when a run starts and then waits forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from chatgate.bootstrap import boot
from chatgate.settings import load_settings
from chatgate.store.memory import MemoryStore
from chatgate.transport.server import uvicorn_config

from support import SECRET, Server, free_socket

_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    426: "Upgrade Required",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def closed_port() -> int:
    """A port nothing listens on."""
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@dataclass
class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream``; every fault is a switch."""

    upstream: tuple[str, int]
    status: int | None = None
    """Answer every request with this HTTP status instead of forwarding it."""
    strip_header: str | None = None
    """Remove this header from the first request of each connection."""
    drop_after_s: float | None = None
    """Abort each connection (no close frame, no FIN handshake) this long after it opened."""
    port: int = 0
    connections: int = 0
    _server: asyncio.Server | None = None
    _live: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_all()
        for task in list(self._live):
            task.cancel()
        await asyncio.gather(*self._live, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def drop_all(self) -> None:
        """Abort every open connection now: the peers see a drop, not a close."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def cut(self) -> None:
        """Drop every connection and stop listening: the upstream is gone."""
        assert self._server is not None
        self._server.close()
        self.drop_all()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._live.add(task)
        self._writers.add(writer)
        try:
            if self.status is not None:
                await self._refuse(reader, writer, self.status)
            else:
                await self._forward(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._live.discard(task)
            writer.close()

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = f"refused by the fault proxy with {status}\n".encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Server: fault-proxy\r\nVia: 1.1 fault-proxy\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers.add(up_writer)
        try:
            if self.strip_header is not None:
                head = await reader.readuntil(b"\r\n\r\n")
                up_writer.write(_without_header(head, self.strip_header))
            pipes = [
                asyncio.create_task(_pipe(reader, up_writer)),
                asyncio.create_task(_pipe(up_reader, writer)),
            ]
            try:
                async with asyncio.timeout(self.drop_after_s):
                    await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                # The fault: both sides lose the connection without a close frame.
                writer.transport.abort()
                up_writer.transport.abort()
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._writers.discard(up_writer)
            up_writer.close()


def _without_header(head: bytes, name: str) -> bytes:
    lines = head.split(b"\r\n")
    prefix = name.lower().encode() + b":"
    return b"\r\n".join(line for line in lines if not line.lower().startswith(prefix))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def tcp_proxy(upstream: tuple[str, int], **faults: Any) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(upstream, **faults)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@contextlib.asynccontextmanager
async def silent_listener() -> AsyncIterator[int]:
    """A port that accepts TCP connections and never sends a byte."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.transport.abort()
        await server.wait_closed()


@dataclass
class DrainableServer(Server):
    """A running gateway whose uvicorn can be told to drain, as SIGTERM would."""

    uvicorn_server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    async def drain(self) -> None:
        """Shut down like SIGTERM: stop accepting, close open sockets with 1012, exit."""
        assert self.uvicorn_server is not None
        assert self.task is not None
        self.uvicorn_server.should_exit = True
        await self.task


@contextlib.asynccontextmanager
async def drainable_server(**overrides: Any) -> AsyncIterator[DrainableServer]:
    """``support.running_server``, keeping a handle on uvicorn for :meth:`DrainableServer.drain`."""
    overrides.setdefault("jwt_secret", SECRET)
    overrides.setdefault("database_url", "memory://")
    booted = boot(load_settings(**overrides))
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(booted.app, booted.settings, port=port))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield DrainableServer(booted, port, uvicorn_server=server, task=task)
    finally:
        server.should_exit = True
        await task
        sock.close()


class StallingAgent:
    """Announces each run through ``started``, then waits until it is cancelled."""

    name = "stalling"

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def run(self, _history: Sequence[Any], _text: str) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "agent_thinking", "payload": {"text": "thinking forever"}}
        self.started.set()
        await asyncio.Event().wait()
        yield {"type": "agent_completed", "payload": {"text": "never"}}


def agent_of(server: Server) -> Any:
    """The agent object a running server instantiated."""
    return server.booted.gateway.agent.agent


class BuggyStore(MemoryStore):
    """A store with a bug: creating a thread raises, so the server must close 1011 with a cid."""

    async def create_thread(self, owner: str, title: str) -> Any:
        raise RuntimeError(f"a bug in the store, on purpose ({owner}, {title[:10]})")

    def queue_thread(self, owner: str, title: str) -> Any:
        raise RuntimeError(f"a bug in the store, on purpose ({owner}, {title[:10]})")
