"""Helpers shared by the tests: a real uvicorn on a free port, real clients, tokens."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chatgate.auth.minting import mint_test_token, mint_token
from chatgate.bootstrap import Booted, boot
from chatgate.chat.runs import event_frame
from chatgate.client.events import TextAssembly
from chatgate.closecodes import CLOSE_CODES, CloseCode
from chatgate.settings import load_settings
from chatgate.store.base import open_store
from chatgate.transport.server import uvicorn_config

SECRET = "test-secret-0123456789abcdef-0123456789"
E2E_KEY = "e2e-key-0123456789abcdef-0123456789-test"
RECV_TIMEOUT_S = 10.0

DEMO_RUN = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    # "6*7 = 42" streamed a word at a time: "6*7 ", "= ", "42".
    "agent_text_delta",
    "agent_text_delta",
    "agent_text_delta",
    "agent_completed",
]
"""The events of the demo agent's run for an arithmetic question such as "what is 6*7?"."""


def answer_runs(types: list[str]) -> list[str]:
    """``types`` with each run of consecutive ``agent_text_delta`` as one.

    A persistent store folds the deltas of one answer that wait for the same
    commit into one event (docs/storage.md): how many arrive depends on timing,
    so sequences of event types are compared through this, and the text through
    ``assert_answers_assemble``.
    """
    return [t for i, t in enumerate(types) if t != DELTA or i == 0 or types[i - 1] != DELTA]


RECORD_FIELDS = frozenset(
    {
        "connection_id",
        "user_id",
        "opened_at",
        "closed_at",
        "close_code",
        "close_reason",
        "closed_by",
        "auth_method",
        "frames_in",
        "frames_out",
        "runs",
        "remote",
        "user_agent",
    }
)
"""The fields of a connection record, as docs/protocol.md section 8 names them."""

DELTA = "agent_text_delta"


def greeting_run(text: str) -> list[str]:
    """The events of the demo agent's run that answers ``text`` to a message without arithmetic.

    The greeting streams one delta per word (with the space after it).
    """
    return ["agent_started", "agent_thinking", *[DELTA] * len(text.split()), "agent_completed"]


class LocalAddress:
    """The URLs of a gateway listening on 127.0.0.1:``port``."""

    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Server(LocalAddress):
    """A running gateway in this process: its URLs, its wiring and token helpers."""

    booted: Booted
    port: int

    def token(self, sub: str, **kwargs: Any) -> str:
        return mint_token(SECRET, sub, **kwargs)

    def test_token(self, sub: str, **kwargs: Any) -> str:
        return mint_test_token(E2E_KEY, sub, **kwargs)

    def connect(self, token: str | None = None, **kwargs: Any) -> Any:
        """A websockets client; a token goes in the Authorization header."""
        headers = dict(kwargs.pop("additional_headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("subprotocols", ["chatgate.v1"])
        kwargs.setdefault("open_timeout", RECV_TIMEOUT_S)
        return connect(self.ws_url, additional_headers=headers, **kwargs)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url, timeout=RECV_TIMEOUT_S)


def free_socket() -> socket.socket:
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted
    # connections only for such sockets, and Nagle would add ~40 ms per exchange.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    return sock


@contextlib.asynccontextmanager
async def running_server(
    uvicorn_options: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[Server]:
    """Start a real uvicorn serving the gateway on a free port, in this event loop.

    The listening socket is bound before the server starts, so clients can
    connect at once: the kernel queues them until uvicorn accepts.
    ``overrides`` are settings; ``uvicorn_options`` override uvicorn's configuration.
    """
    overrides.setdefault("jwt_secret", SECRET)
    # The settings default is a SQLite file; tests keep their state in memory unless they ask.
    overrides.setdefault("database_url", "memory://")
    settings = load_settings(**overrides)
    booted = boot(settings)
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn_config(booted.app, booted.settings, port=port, **(uvicorn_options or {}))
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield Server(booted, port)
    finally:
        server.should_exit = True
        await task
        sock.close()


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
    frame = json.loads(raw)
    assert isinstance(frame, dict)
    return frame


async def send_json(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


async def recv_until(ws: ClientConnection, *types: str) -> list[dict[str, Any]]:
    """Receive frames up to and including the first whose type is in ``types``."""
    frames = []
    while True:
        frame = await recv_json(ws)
        frames.append(frame)
        if frame["type"] in types:
            return frames


async def expect_close(ws: ClientConnection, code: CloseCode) -> str:
    """Read until the server closes; assert the code and slug, return the reason."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
    assert ws.close_code == code, (ws.close_code, ws.close_reason)
    reason = ws.close_reason or ""
    assert reason.split(":")[0] == CLOSE_CODES[code].slug, reason
    return reason


async def established(ws: ClientConnection) -> dict[str, Any]:
    frame = await recv_json(ws)
    assert frame["type"] == "connection_established", frame
    return frame


async def chat(
    ws: ClientConnection, text: str, thread_id: str | None = None, msg_id: str = "m1"
) -> list[dict[str, Any]]:
    """Send a user message; return every frame through agent_completed or agent_error."""
    frame: dict[str, Any] = {"type": "user_message", "id": msg_id, "payload": {"text": text}}
    if thread_id is not None:
        frame["thread_id"] = thread_id
    await send_json(ws, frame)
    return await recv_until(ws, "agent_completed", "agent_error")


# Hand-made tokens, for the claims and headers the minting helpers never produce.


def user_claims(sub: str, ttl_s: int = 3600, **extra: Any) -> dict[str, Any]:
    """Claims of an ordinary user token; ``extra`` adds claims, a value of None removes one."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl_s, **extra}
    return {name: value for name, value in claims.items() if value is not None}


def sign_token(
    claims: dict[str, Any],
    key: str = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """Sign ``claims`` as given: no claim is added or checked."""
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any]) -> str:
    """An ``alg: none`` token, built by hand: header, claims and an empty signature."""
    return f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(claims)}."


async def frames_until_close(ws: ClientConnection, code: CloseCode) -> list[dict[str, Any]]:
    """Every frame received until the server closes; asserts the code and slug like expect_close."""
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)))
    assert ws.close_code == code, (ws.close_code, ws.close_reason, frames)
    reason = ws.close_reason or ""
    assert reason.split(":")[0] == CLOSE_CODES[code].slug, reason
    return frames


# Streamed answers and resume (docs/protocol.md section 4, "Streamed text").

Frame = dict[str, Any]
_LOG_LIMIT = 10_000


def answer_text(frames: list[Frame], run_id: str | None = None) -> str:
    """The answer the deltas among ``frames`` (of ``run_id``, or of any run) assemble into."""
    answer = TextAssembly()
    for frame in frames:
        if frame["type"] == DELTA and run_id in (None, frame["run_id"]):
            answer.place(frame["payload"]["offset"], frame["payload"]["text"])
    return answer.text


def assert_answers_assemble(frames: list[Frame]) -> None:
    """Each run that completed among ``frames`` has deltas assembling into its final text."""
    completed = [f for f in frames if f["type"] == "agent_completed"]
    assert completed, [f["type"] for f in frames]
    for end in completed:
        assert answer_text(frames, end["run_id"]) == end["payload"]["text"], end


def _same_event(got: Frame, sent: Frame) -> None:
    keys = ("type", "event_id", "thread_id", "run_id", "ts", "payload")
    assert {k: got.get(k) for k in keys} == {k: sent.get(k) for k in keys}, (got, sent)


def _assert_merged(got: Frame, pieces: list[Frame]) -> None:
    """``got`` is the one delta a resume made of ``pieces``, consecutive deltas of one answer."""
    ids = [p["event_id"] for p in pieces]
    assert ids == list(range(ids[0], ids[-1] + 1)), f"a merge spans an id the socket had: {ids}"
    assert got["type"] == DELTA, f"ids {ids[:-1]} skipped before a {got['type']}"
    assert {p["type"] for p in pieces} == {DELTA}, [p["type"] for p in pieces]
    assert {p["run_id"] for p in pieces} == {got["run_id"]}, got
    assert {p["payload"]["message_id"] for p in pieces} == {got["payload"]["message_id"]}, got
    assert (got["thread_id"], got["event_id"], got["ts"]) == (
        pieces[-1]["thread_id"],
        pieces[-1]["event_id"],
        pieces[-1]["ts"],
    ), got
    assert got["payload"]["offset"] == pieces[0]["payload"]["offset"], got
    assert got["payload"]["text"] == "".join(p["payload"]["text"] for p in pieces), got


def assert_resumed(
    received: list[Frame], log: list[Frame], after: int = 0, had: set[int] | None = None
) -> None:
    """A socket that asked to resume after ``after`` got the rest of ``log`` exactly once.

    ``received`` is what the socket got from the resume on (live events as well,
    in arrival order; frames without an ``event_id`` are left out); ``log`` the
    thread's events as live delivery sends them, with every id; ``had`` the ids
    the socket already had. Every event of the log past ``after`` the socket had
    not had arrives once, in increasing id order; ids skip only right before an
    ``agent_text_delta`` merging the deltas skipped, which are consecutive
    deltas of one answer none of which the socket had; nothing it had comes again.
    """
    had = had or set()
    by_id = {frame["event_id"]: frame for frame in log}
    assert sorted(by_id) == list(range(1, len(log) + 1)), "the log is not every id from 1"
    expected = [by_id[i] for i in sorted(by_id) if i > after and i not in had]
    numbered = [frame for frame in received if frame.get("event_id") is not None]
    position = 0
    for got in numbered:
        ids = [frame["event_id"] for frame in expected[position:]]
        assert got["event_id"] in ids, (
            f"event {got['event_id']} repeated, out of order or unknown; expected one of {ids} next"
        )
        end = position + ids.index(got["event_id"]) + 1
        pieces = expected[position:end]
        if len(pieces) == 1:
            _same_event(got, pieces[0])
        else:
            _assert_merged(got, pieces)
        position = end
    missing = [frame["event_id"] for frame in expected[position:]]
    assert not missing, f"never arrived: {missing}"


async def stored_log(source: Server | str, thread_id: str) -> list[Frame]:
    """A thread's whole log as frames live delivery sends, every delta on its own.

    ``source`` is a server of this process (its store is read) or the database
    URL of a server in another process (a store of its own is opened on it).
    """
    if isinstance(source, Server):
        events = await source.booted.gateway.store.events_after(thread_id, 0, _LOG_LIMIT)
    else:
        store = open_store(source)
        await store.start()
        try:
            events = await store.events_after(thread_id, 0, _LOG_LIMIT)
        finally:
            await store.close()
    assert len(events) < _LOG_LIMIT, "the log is longer than a test reads"
    return [json.loads(event_frame(event)) for event in events]
