"""Redis for the tests: the machine's server, or a throw-away one a test starts and stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator

import pytest

REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "outage-test-password-6c1f"
START_S = 5.0


def redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def require_redis() -> str:
    """The machine's Redis URL; skip without it, except under CI, where its absence fails."""
    if not redis_answers():
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is required at 127.0.0.1:6379 when CI=true")
        pytest.skip("no Redis at 127.0.0.1:6379")
    return REDIS_URL


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_with_password(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"AUTH %s\r\nPING\r\n" % PASSWORD.encode())
            received = b""
            while not received.endswith(b"\r\n+PONG\r\n"):
                chunk = sock.recv(64)
                if not chunk or len(received) > 64:
                    return False
                received += chunk
            return received == b"+OK\r\n+PONG\r\n"
    except OSError:
        return False


class RedisServer:
    """A throw-away, password-protected redis-server on a port of its own, without persistence."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--requirepass", PASSWORD),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        # Nothing to await but the port answering; poll, bounded.
        async with asyncio.timeout(START_S):
            while not _answers_with_password(self.port):
                assert self.process.returncode is None, "redis-server exited at start"
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self.process = None


@contextlib.asynccontextmanager
async def own_redis_server() -> AsyncIterator[RedisServer]:
    """A redis-server started for one test and killed after it."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required on PATH when CI=true")
        pytest.skip("no redis-server on PATH")
    server = RedisServer(binary, _free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
