"""A reconnect storm: many clients reconnecting with the client's own backoff after a drain.

``python -m bench.storm [--clients 1000]`` starts ``chatgate serve``, connects
the clients (``chatgate.client.Client``, one user each, full-jitter backoff),
sends the server SIGTERM (every socket gets 1012), starts a new server on the
same port once the old one has drained, and reports how long until every client
is connected again, and how each reconnection attempt had failed (never a 1011).
It runs twice: with room to spare, and with ``CHATGATE_MAX_CONNECTIONS`` exactly
at the number of clients, where a few more clients must be refused with 503.
Bounded: every wait has a deadline, and both servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from bench.processes import free_port
from chatgate.auth.minting import mint_token
from chatgate.client import Client, ReconnectAttempt, ReconnectPolicy
from chatgate.client.errors import ClientError, ConnectFailed, HandshakeRejected, ServerClosed

SECRET = "storm-secret-0123456789abcdef-0123456789"  # noqa: S105 - a local bench key
CHATGATE = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "chatgate"
DEADLINE_S = 120.0
CONNECT_AT_ONCE = 100


def _env(max_connections: int) -> dict[str, str]:
    return {
        **os.environ,
        "ENVIRONMENT": "development",
        "CHATGATE_JWT_SECRET": SECRET,
        "CHATGATE_DATABASE_URL": "memory://",
        "CHATGATE_LOG_LEVEL": "WARNING",
        "CHATGATE_MAX_CONNECTIONS": str(max_connections),
        "CHATGATE_DRAIN_TIMEOUT_S": "5",
    }


@contextlib.asynccontextmanager
async def _server(port: int, max_connections: int) -> AsyncIterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(  # noqa: ASYNC220, S603 - our own server, fixed arguments
        [str(CHATGATE), "serve", "--port", str(port)],
        env=_env(max_connections),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _cause(error: ClientError) -> str:
    if isinstance(error, ServerClosed):
        return f"close {error.code}"
    if isinstance(error, HandshakeRejected):
        return f"http {error.status}"
    if isinstance(error, ConnectFailed):
        return "refused"
    return type(error).__name__


async def _connect_all(url: str, count: int, causes: Counter[str], start: int = 0) -> list[Client]:
    def record(attempt: ReconnectAttempt) -> None:
        causes[_cause(attempt.cause)] += 1

    policy = ReconnectPolicy(base_s=0.2, cap_s=5.0, max_attempts=None)
    clients = [
        Client(url, mint_token(SECRET, f"u{start + i}"), policy=policy, on_reconnect=record)
        for i in range(count)
    ]
    for first in range(0, count, CONNECT_AT_ONCE):
        await asyncio.gather(*(c.connect() for c in clients[first : first + CONNECT_AT_ONCE]))
    return clients


async def storm(count: int, *, at_limit: bool) -> dict[str, object]:
    """One storm; returns its figures."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    limit = count if at_limit else count * 4
    causes: Counter[str] = Counter()
    async with _server(port, limit) as first:
        clients = await _connect_all(url, count, causes)
        started = time.perf_counter()
        first.send_signal(signal.SIGTERM)
        await asyncio.to_thread(first.wait, 30)
        drained_s = time.perf_counter() - started
    async with _server(port, limit):
        async with asyncio.timeout(DEADLINE_S):
            # The client reports no event when a reconnection completes: poll its count.
            while sum(c.reconnects >= 1 for c in clients) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        back_s = time.perf_counter() - started
        refused = Counter[str]()
        if at_limit:
            extra = [Client(url, mint_token(SECRET, f"extra{i}")) for i in range(20)]
            for client in extra:
                try:
                    await client.connect()
                except ClientError as exc:
                    refused[_cause(exc)] += 1
                await client.close()
        twice = sum(c.reconnects > 1 for c in clients)
        await asyncio.gather(*(c.close() for c in clients))
    return {
        "clients": count,
        "max_connections": limit,
        "drain_s": round(drained_s, 2),
        "all_reconnected_s": round(back_s, 2),
        "attempt_causes": dict(causes),
        "closes_1011": causes["close 1011"],
        "clients_reconnected_more_than_once": twice,
        "extra_clients_refused": dict(refused),
    }


def _raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def main() -> None:
    """Run both storms and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    args = parser.parse_args()
    _raise_file_limit(args.clients * 3 + 256)
    for at_limit in (False, True):
        figures = asyncio.run(storm(args.clients, at_limit=at_limit))
        print(figures)


if __name__ == "__main__":
    main()
