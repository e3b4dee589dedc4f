"""Transport limits (docs/protocol.md section 6): the request head, slow heads, open sockets.

Raw sockets speak HTTP here, byte by byte where it matters, to a real uvicorn
running the gateway's protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from chatgate.transport.server import file_limit_warning

from processes import server_process
from support import RECV_TIMEOUT_S, Server, established, running_server

_EOF_WAIT_S = 30.0


@contextlib.asynccontextmanager
async def raw(server: Server) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def head(server: Server, path: str = "/healthz", *extra: str, host: str | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{server.port}'}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def upgrade_lines() -> tuple[str, ...]:
    return (
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    )


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), _EOF_WAIT_S)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# CHATGATE_MAX_HEADER_BYTES


@pytest.mark.parametrize("path", ["/healthz", "/ws"])
async def test_a_200_kb_header_gets_431_while_healthz_answers(path: str) -> None:
    async with running_server() as server, server.http() as http, raw(server) as (reader, writer):
        extra = upgrade_lines() if path == "/ws" else ()
        request = head(server, path, *extra, "X-Padding: " + "a" * 200_000)
        # The first 10 KB: under the limit, the request is still being read.
        writer.write(request[:10_000])
        await writer.drain()
        assert (await http.get("/healthz")).status_code == 200
        writer.write(request[10_000:])
        with contextlib.suppress(ConnectionResetError):
            await writer.drain()
        response = await read_to_eof(reader)
        assert status_of(response) == 431, response[:200]
        assert b"connection: close" in response.lower()
        assert (await http.get("/healthz")).status_code == 200


async def test_many_headers_past_the_limit_get_431() -> None:
    async with running_server(max_header_bytes=4096) as server, raw(server) as (reader, writer):
        writer.write(head(server, "/healthz", *(f"X-H{i}: v" for i in range(1000))))
        with contextlib.suppress(ConnectionResetError):
            await writer.drain()
        assert status_of(await read_to_eof(reader)) == 431


async def test_a_head_under_the_limit_is_served_even_byte_by_byte() -> None:
    async with running_server() as server, raw(server) as (reader, writer):
        request = head(server, "/healthz", "X-Padding: " + "a" * 12_000, "Connection: close")
        for offset in range(0, len(request), 997):
            writer.write(request[offset : offset + 997])
            await writer.drain()
        response = await read_to_eof(reader)
        assert status_of(response) == 200, response[:200]
        assert response.endswith(b'{"status":"ok"}')


async def test_keep_alive_requests_each_get_their_own_header_budget() -> None:
    async with running_server(max_header_bytes=4096) as server, raw(server) as (reader, writer):
        padding = "X-Padding: " + "a" * 3000
        writer.write(head(server, "/healthz", padding))
        writer.write(head(server, "/healthz", padding, "Connection: close"))
        await writer.drain()
        response = await read_to_eof(reader)
        assert response.count(b"HTTP/1.1 200 OK") == 2, response


# CHATGATE_HANDSHAKE_TIMEOUT_S


async def test_unfinished_request_heads_are_closed_at_the_timeout() -> None:
    async with running_server(handshake_timeout_s=0.5) as server, server.http() as http:
        sockets = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(50)]
        try:
            for number, (_, writer) in enumerate(sockets):
                if number % 2:
                    writer.write(head(server)[:-4])  # the head never ends
                else:
                    writer.write(b"GET /healthz HTTP/1.1\r\nHo")
                await writer.drain()
            assert (await http.get("/healthz")).status_code == 200
            received = await asyncio.gather(*(read_to_eof(reader) for reader, _ in sockets))
        finally:
            for _, writer in sockets:
                writer.close()
    # Closed without an answer: the request never came.
    assert received == [b""] * 50


async def test_a_silent_connection_is_closed_at_the_timeout() -> None:
    async with running_server(handshake_timeout_s=0.5) as server, raw(server) as (reader, _):
        assert await read_to_eof(reader) == b""


async def test_a_socket_that_completed_its_head_outlives_the_handshake_timeout() -> None:
    async with (
        running_server(handshake_timeout_s=0.5) as server,
        server.connect(server.token("slow-reader")) as ws,
    ):
        await established(ws)
        # Past the handshake timeout, the socket is alive: a pong comes back.
        await asyncio.sleep(1.0)
        await asyncio.wait_for(await ws.ping(), RECV_TIMEOUT_S)


# CHATGATE_MAX_CONNECTIONS


async def test_past_max_connections_an_upgrade_gets_503_with_retry_after() -> None:
    async with running_server(max_connections=3) as server, contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(server.connect(server.token(f"user-{i}")))
            for i in range(3)
        ]
        for ws in sockets:
            await established(ws)
        with pytest.raises(InvalidStatus) as refused:
            await server.connect(server.token("user-4")).__aenter__()
        response = refused.value.response
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        async with server.http() as http:
            assert (await http.get("/healthz")).status_code == 200
        await sockets[0].close()
        accepted = await _connect_when_a_slot_frees(server)
        await established(accepted)
        await accepted.close()


async def _connect_when_a_slot_frees(server: Server) -> Any:
    # The server counts a socket out once its TCP connection is gone: a few
    # loop turns after the client's close returns.
    statuses = []
    async with asyncio.timeout(RECV_TIMEOUT_S):
        while True:
            try:
                return await server.connect(server.token("user-5")).__aenter__()
            except InvalidStatus as exc:
                statuses.append(exc.response.status_code)
                assert set(statuses) == {503}
                await asyncio.sleep(0.05)


def test_file_limit_warning() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        warning = file_limit_warning(soft * 2)
        assert warning is not None
        assert "CHATGATE_MAX_CONNECTIONS" in warning
        assert str(soft) in warning
    assert file_limit_warning(1) is None or soft < 257


def test_serve_warns_once_when_the_file_limit_is_too_low(tmp_path: Path) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no open-file limit in this environment")
    with server_process(tmp_path, CHATGATE_MAX_CONNECTIONS=str(soft * 2)) as server:
        pass
    lines = [line for line in server.output().splitlines() if "open-file limit" in line]
    assert len(lines) == 1, server.output()
    assert "CHATGATE_MAX_CONNECTIONS" in lines[0]


# CHATGATE_ALLOWED_HOSTS


@pytest.mark.parametrize("path", ["/healthz", "/diagnostics", "/ws"])
async def test_a_rebound_host_name_is_refused_with_421(path: str) -> None:
    async with running_server() as server, raw(server) as (reader, writer):
        evil = f"rebind.evil.example:{server.port}"
        extra = (*upgrade_lines(), f"Origin: http://{evil}") if path == "/ws" else ()
        writer.write(head(server, path, *extra, host=evil))
        await writer.drain()
        response = await read_to_eof(reader)
        assert status_of(response) == 421, response[:200]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.2", "[::1]"])
async def test_loopback_names_are_served(host: str) -> None:
    async with running_server() as server, raw(server) as (reader, writer):
        writer.write(head(server, host=f"{host}:{server.port}")[:-2] + b"Connection: close\r\n\r\n")
        await writer.drain()
        assert status_of(await read_to_eof(reader)) == 200


@pytest.mark.parametrize(
    ("allowed_hosts", "host", "status"),
    [
        ("*", "anything.example", 200),
        ("chat.example", "chat.example", 200),
        ("chat.example", "CHAT.example:443", 200),
        ("chat.example", "localhost", 421),
        ("chat.example", "evil.example", 421),
    ],
)
async def test_configured_hosts(allowed_hosts: str, host: str, status: int) -> None:
    async with running_server(allowed_hosts=allowed_hosts) as server, raw(server) as (reader, w):
        w.write(head(server, host=host)[:-2] + b"Connection: close\r\n\r\n")
        await w.drain()
        assert status_of(await read_to_eof(reader)) == status
