"""A load-generator process: runs the harness's jobs on uvloop, one job at a time.

The harness talks to it over a pipe. Every job answers ``{"ready": ...}`` once
its sockets are open, waits for ``{"go": <wall-clock start of the window>}``
(or, for ``idle``, ``{"next": ...}``), then answers ``{"result": ...}``.
Every loop is bounded in time and count, and every socket is closed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import resource
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import jwt
import orjson
import uvloop
from picows import WSError, WSTransport, ws_connect

from bench.clients import FLAVORS, JSON, Client, Flavor, Recorder, Tally, Window
from bench.frames import json_request

CONNECT_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 10.0
MAX_HANDSHAKES_PER_WORKER = 1_000_000
ANSWER_TIMEOUT_S = 120.0
"""How long the resume scenario waits for its answer to be produced, or replayed."""
_CONNECT_CONCURRENCY = 200
FD_LIMIT = 200_000
"""Open files the harness asks for: 50,000 sockets on each side, and room to spare."""
_ACK = b'{"type":"message_ack"'
_COMPLETED = b'{"type":"agent_completed"'
_RESUME_COMPLETE = b'{"type":"resume_complete"'
_DELTA = b'{"type":"agent_text_delta"'
_L = TypeVar("_L", Client, Recorder)


def raise_fd_limit(wanted: int = FD_LIMIT) -> int:
    """Raise the limit on open files to ``wanted`` where allowed, else to the hard limit.

    Only a privileged process may raise the hard limit (up to ``fs.nr_open``); children
    inherit the limits, so the servers the harness starts can hold as many sockets.
    Returns the soft limit now in force.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, ceiling),) * 2)
        except (OSError, ValueError):
            pass  # not privileged: the hard limit is what there is
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def source_address(index: int, sources: int) -> str | None:
    """The loopback address socket ``index`` binds to when ``sources`` addresses share the load.

    One source address has about 28,000 ephemeral ports toward one server port
    (``net.ipv4.ip_local_port_range``); all of 127.0.0.0/8 is loopback, so
    127.0.0.2, 127.0.0.3, ... each bring as many again. None: the kernel chooses.
    """
    return f"127.0.0.{2 + index % sources}" if sources > 0 else None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a job connects and how it speaks."""

    host: str
    port: int
    flavor: Flavor
    secret: str | None

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> Target:
        """Read the ``target`` of a job."""
        spec = job["target"]
        return cls("127.0.0.1", spec["port"], FLAVORS[spec["flavor"]], spec.get("secret"))

    @property
    def url(self) -> str:
        """The socket URL."""
        return f"ws://{self.host}:{self.port}{self.flavor.path}"

    def token(self, user: str) -> str | None:
        """A one-hour token for ``user`` when the server checks tokens.

        Minted once per user and reused, as a client reuses its token when it
        reconnects: the handshake loop measures the server, not PyJWT's encode.
        """
        if self.secret is None:
            return None
        return _token(user, self.secret)


@functools.lru_cache(maxsize=65_536)
def _token(user: str, secret: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, secret, "HS256")


class Channel:
    """The worker's end of the pipe, read without blocking the loop."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def send(self, message: dict[str, Any]) -> None:
        """Send one message to the harness."""
        self._conn.send(message)

    async def recv(self, within_s: float | None = None) -> Any:
        """The next message from the harness; TimeoutError after ``within_s`` seconds."""
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, self._conn.poll, within_s)
        if not ready:
            raise TimeoutError("the harness sent nothing")
        return self._conn.recv()


async def open_client(
    target: Target, mode: str, tally: Tally, user: str, source: str | None = None
) -> Client:
    """Connect and authenticate one load socket, from ``source`` when given.

    Raises:
        WSError, OSError, ConnectionError, TimeoutError: the socket did not get established.
    """
    return await connect(
        target, user, lambda token: Client(target.flavor, mode, tally, token), source
    )


async def connect(
    target: Target, user: str, factory: Callable[[str | None], _L], source: str | None = None
) -> _L:
    """Connect one socket made by ``factory(token)`` and wait until it is established.

    ``source`` is the local address to bind (see :func:`source_address`).

    Raises:
        WSError, OSError, ConnectionError, TimeoutError: the socket did not get established.
    """
    token = target.token(user)
    headers = {"Authorization": f"Bearer {token}"} if token and target.flavor is JSON else None
    transport, listener = await ws_connect(
        lambda: factory(token),
        target.url,
        extra_headers=headers,
        websocket_handshake_timeout=CONNECT_TIMEOUT_S,
        local_addr=(source, 0) if source is not None else None,
    )
    if listener is None:
        # picows hands back no listener when the server drops the connection mid-upgrade.
        transport.disconnect(graceful=False)
        raise ConnectionError("closed during the upgrade")
    client = cast("_L", listener)  # what ``factory`` made
    try:
        await asyncio.wait_for(client.established, CONNECT_TIMEOUT_S)
    except BaseException:
        transport.disconnect(graceful=False)
        raise
    return client


async def open_many(
    target: Target, mode: str, tally: Tally, users: list[str], sources: int = 0
) -> tuple[list[Client], int]:
    """Open one socket per user, a few hundred at a time; return them and the failure count.

    ``sources``: how many loopback source addresses the sockets spread over (see
    :func:`source_address`); 0 lets the kernel choose.
    """
    gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)

    async def one(index: int, user: str) -> Client | None:
        async with gate:
            try:
                source = source_address(index, sources)
                return await open_client(target, mode, tally, user, source)
            except (WSError, OSError, ConnectionError, TimeoutError):
                return None

    opened = await asyncio.gather(*(one(i, user) for i, user in enumerate(users)))
    clients = [client for client in opened if client is not None]
    return clients, len(users) - len(clients)


class Closable(Protocol):
    """A picows listener the harness can close: a load client or a listener."""

    transport: WSTransport | None

    def close(self) -> None:
        """Start the closing handshake."""


async def close_all(clients: Sequence[Closable]) -> None:
    """Close every socket, waiting a bounded time for the server's close."""
    for client in clients:
        client.close()
    waits = [c.transport.wait_disconnected() for c in clients if c.transport is not None]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), DRAIN_TIMEOUT_S)
    for client in clients:
        if client.transport is not None and not client.transport.is_disconnected:
            client.transport.disconnect(graceful=False)


def _window(go: dict[str, Any], duration: float) -> Window:
    start = time.perf_counter() + (go["go"] - time.time())
    return Window(start, start + duration)


async def _cpu_in(window: Window) -> float:
    """CPU seconds this generator process spends inside ``window``.

    Beside the window's length it tells whether the generator, not the server,
    set the pace: a generator near one CPU second per second was the limit.
    """
    await asyncio.sleep(max(window.start - time.perf_counter(), 0))
    before = time.process_time()
    await asyncio.sleep(max(window.end - time.perf_counter(), 0))
    return time.process_time() - before


async def _handshakes(job: dict[str, Any], channel: Channel) -> None:
    target, tally = Target.from_job(job), Tally()
    prefix = job["user_prefix"]
    channel.send({"ready": {}})
    tally.window = _window(await channel.recv(60), job["duration"])
    end = tally.window.end
    cpu = asyncio.create_task(_cpu_in(tally.window))

    async def loop_(worker: int) -> None:
        user = f"{prefix}-{worker}"
        for _ in range(MAX_HANDSHAKES_PER_WORKER):
            if time.perf_counter() >= end:
                return
            try:
                client = await open_client(target, "idle", tally, user)
                assert client.transport is not None
                client.close()
                await asyncio.wait_for(client.transport.wait_disconnected(), CONNECT_TIMEOUT_S)
            except (WSError, OSError, ConnectionError, TimeoutError):
                tally.errors += 1
                continue
            if tally.window.holds(time.perf_counter()):
                tally.completed += 1

    await asyncio.gather(*(loop_(i) for i in range(job["concurrency"])))
    channel.send({"result": {**_summary(tally, job["duration"]), "cpu_s": await cpu}})


async def _load(job: dict[str, Any], channel: Channel) -> None:
    target, tally = Target.from_job(job), Tally()
    users = [f"{job['user_prefix']}-{i}" for i in range(job["sockets"])]
    clients, failed = await open_many(target, job["mode"], tally, users)
    channel.send({"ready": {"open": len(clients), "failed": failed}})
    try:
        tally.window = _window(await channel.recv(60), job["duration"])
        cpu = asyncio.create_task(_cpu_in(tally.window))
        idle = [client.start() for client in clients]
        await asyncio.sleep(max(tally.window.end - time.perf_counter(), 0))
        tally.sending = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*idle), DRAIN_TIMEOUT_S)
    finally:
        await close_all(clients)
    summary = _summary(tally, job["duration"])
    summary["failed_connects"] = failed
    summary["cpu_s"] = await cpu
    channel.send({"result": summary})


async def _idle(job: dict[str, Any], channel: Channel) -> None:
    target, tally = Target.from_job(job), Tally()
    clients: list[Client] = []
    failed = 0
    try:
        for step in job["steps"]:
            users = [f"{job['user_prefix']}-{i}" for i in range(len(clients), step)]
            more, lost = await open_many(target, "idle", tally, users, job.get("sources", 0))
            clients += more
            failed += lost
            alive = sum(1 for c in clients if c.transport and not c.transport.is_disconnected)
            channel.send({"ready": {"open": alive, "failed": failed}})
            await channel.recv(120)
    finally:
        await close_all(clients)
    channel.send({"result": {"open": len(clients), "failed": failed, "closes": tally.closes}})


async def _resume(job: dict[str, Any], channel: Channel) -> None:
    """Produce one answer of ``job["deltas"]`` deltas; on go, replay it on fresh sockets.

    Each of ``job["repeats"]`` fresh sockets of the same user sends ``resume``
    after event 0 and reads until ``resume_complete``; the result holds, for each,
    the milliseconds from the send to ``resume_complete`` and the frames received.
    """
    target = Target.from_job(job)
    user = f"{job['user_prefix']}-0"
    text = f"deltas {job['deltas']}"
    producer = await connect(target, user, lambda _token: Recorder())
    try:
        completed = producer.expect(_COMPLETED)
        producer.send(json_request("user_message", {"id": "1", "payload": {"text": text}}))
        await asyncio.wait_for(completed, ANSWER_TIMEOUT_S)
    finally:
        await close_all([producer])
    (ack,) = [frame for frame in producer.frames if frame.startswith(_ACK)]
    thread_id = orjson.loads(ack)["thread_id"]
    # Deltas, not frames: the store may have merged some while they waited for a commit.
    channel.send({"ready": {"live_deltas": producer.words(_DELTA)}})
    await channel.recv(60)
    replays = [await _replay(target, user, thread_id) for _ in range(job["repeats"])]
    channel.send({"result": {"replays": replays}})


async def _replay(target: Target, user: str, thread_id: str) -> dict[str, float]:
    reader = await connect(target, user, lambda _token: Recorder())
    try:
        done = reader.expect(_RESUME_COMPLETE)
        request = json_request("resume", {"thread_id": thread_id, "after_event_id": 0})
        sent_at = time.perf_counter()
        reader.send(request)
        arrived = await asyncio.wait_for(done, ANSWER_TIMEOUT_S)
    finally:
        await close_all([reader])
    return {
        "ms": (arrived - sent_at) * 1000,
        "frames": len(reader.frames),
        "deltas": reader.count(_DELTA),
    }


def _summary(tally: Tally, duration: float) -> dict[str, Any]:
    return {
        "completed": tally.completed,
        "frames": tally.frames,
        "deltas": tally.deltas,
        "errors": tally.errors,
        "duration": duration,
        "closes": tally.closes,
        "to_started": tally.to_started.tolist(),
        "to_completed": tally.to_completed.tolist(),
    }


_JOBS: dict[str, Callable[[dict[str, Any], Channel], Awaitable[None]]] = {
    "handshakes": _handshakes,
    "load": _load,
    "idle": _idle,
    "resume": _resume,
}


async def _serve(conn: Connection) -> None:
    channel = Channel(conn)
    while True:
        job = await channel.recv()
        if job is None:
            return
        try:
            await _JOBS[job["kind"]](job, channel)
        except Exception as exc:  # noqa: BLE001 - the process edge: the harness reports it
            channel.send({"error": f"{type(exc).__name__}: {exc}"})


def worker_main(conn: Connection) -> None:
    """Entry point of a generator process: serve jobs until the harness sends None."""
    raise_fd_limit()
    uvloop.run(_serve(conn))
