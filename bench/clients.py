"""The load generator's WebSocket clients: picows listeners driven by callbacks.

Two wire flavours: ``json`` (chatgate, and the picows and uvicorn baselines,
which speak chatgate's frames) and ``socketio`` (Engine.IO 4 / Socket.IO 5
packets over a plain WebSocket, so the client side costs the same for every
server). Frames are recognised by their prefix, never parsed: the client must
stay cheaper than any server it measures.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from dataclasses import dataclass, field

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from bench import frames

_TEXT = WSMsgType.TEXT
ROUND_TRIPS = frozenset({"chat", "thread", "parity"})
"""Modes whose request is a chat message completed by ``agent_completed``, timed per request."""
MAX_REQUESTS_PER_SOCKET = 10_000_000
"""A bound on every socket's request loop, besides the measurement window."""


@dataclass(frozen=True, slots=True)
class Flavor:
    """How one server family frames the chat protocol."""

    name: str
    path: str
    chat: bytes
    parity: bytes
    stream: bytes
    deltas: bytes
    ping: bytes
    started: bytes
    delta: bytes
    completed: bytes
    failure: tuple[bytes, ...]


JSON = Flavor(
    "json",
    "/ws",
    frames.JSON_CHAT,
    frames.JSON_PARITY,
    frames.JSON_STREAM,
    frames.JSON_DELTAS,
    frames.JSON_PING,
    b'{"type":"agent_started"',
    b'{"type":"agent_text_delta"',
    b'{"type":"agent_completed"',
    (b'{"type":"error"', b'{"type":"agent_error"'),
)
SOCKETIO = Flavor(
    "socketio",
    "/socket.io/?EIO=4&transport=websocket",
    frames.SIO_CHAT,
    frames.SIO_PARITY,
    frames.SIO_STREAM,
    frames.SIO_DELTAS,
    frames.SIO_PING,
    b'42["agent_started"',
    b'42["agent_text_delta"',
    b'42["agent_completed"',
    (b'42["error"', b'42["agent_error"'),
)
FLAVORS = {flavor.name: flavor for flavor in (JSON, SOCKETIO)}


@dataclass(slots=True)
class Window:
    """The measurement window, in this process's ``perf_counter`` time."""

    start: float = float("inf")
    end: float = float("inf")

    def holds(self, moment: float) -> bool:
        """Whether ``moment`` falls inside the window."""
        return self.start <= moment < self.end


@dataclass(slots=True)
class Tally:
    """What the clients of one generator process saw."""

    window: Window = field(default_factory=Window)
    sending: bool = True
    completed: int = 0
    frames: int = 0
    deltas: int = 0
    errors: int = 0
    closes: dict[int, int] = field(default_factory=dict)
    to_started: array[float] = field(default_factory=lambda: array("d"))
    to_completed: array[float] = field(default_factory=lambda: array("d"))


class Client(WSListener):  # type: ignore[misc]
    """One socket: authenticates, then runs closed-loop requests while ``tally.sending``.

    ``mode`` is ``idle`` (authenticate and wait), ``echo`` (a ping, any reply
    completes it), ``chat`` (a chat message, completed by ``agent_completed``: each
    opens a thread), ``thread`` (the same, each after the first in the thread the
    first opened; chatgate only), ``parity``
    (the same with the parity message: the lean server's five events from chatgate too),
    ``stream`` (a ``stream N`` message; every frame counts as an event) or
    ``deltas`` (a ``deltas N`` message; ``agent_text_delta`` frames are counted apart).
    """

    def __init__(self, flavor: Flavor, mode: str, tally: Tally, token: str | None) -> None:
        self.flavor = flavor
        self.mode = mode
        self.tally = tally
        self.token = token
        self.transport: WSTransport | None = None
        self.established: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.idle: asyncio.Future[None] | None = None
        self.sent_at = 0.0
        self.sent = 0
        self.closing = False
        requests = {
            "chat": flavor.chat,
            "thread": flavor.chat,
            "parity": flavor.parity,
            "stream": flavor.stream,
            "deltas": flavor.deltas,
            "echo": flavor.ping,
        }
        self._request = requests.get(mode, b"")

    # Connection life

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, _transport: WSTransport) -> None:
        if not self.established.done():
            self.established.set_exception(ConnectionError("closed before established"))
        if self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT:
            data = frame.get_payload_as_bytes()
            if self.established.done():
                self._on_text(transport, data)
            else:
                self._on_handshake(transport, data)
        elif kind is WSMsgType.CLOSE:
            if not self.closing:
                # A close the server started: worth a note in the report.
                code = frame.get_close_code().value
                self.tally.closes[code] = self.tally.closes.get(code, 0) + 1
                transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def _on_handshake(self, transport: WSTransport, data: bytes) -> None:
        if self.flavor is JSON:
            if data.startswith(b'{"type":"connection_established"'):
                self.established.set_result(None)
            else:
                self.established.set_exception(ConnectionError(f"refused: {data[:80]!r}"))
        elif data.startswith(b"0{"):
            # Engine.IO OPEN: now join the default namespace with the token.
            transport.send(_TEXT, b"40" + orjson.dumps({"token": self.token}))
        elif data.startswith(b"40"):
            self.established.set_result(None)
        else:
            self.established.set_exception(ConnectionError(f"refused: {data[:80]!r}"))

    def close(self) -> None:
        """Start the closing handshake (1000); the server's close completes it."""
        self.closing = True
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close(WSCloseCode.OK)

    # Requests

    def start(self) -> asyncio.Future[None]:
        """Send the first request; the future resolves when the socket stops sending."""
        self.idle = asyncio.get_running_loop().create_future()
        self._send()
        return self.idle

    def _send(self) -> None:
        assert self.transport is not None
        self.sent += 1
        self.sent_at = time.perf_counter()
        self.transport.send(_TEXT, self._request)

    def _next(self) -> None:
        if self.tally.sending and self.sent < MAX_REQUESTS_PER_SOCKET:
            self._send()
        elif self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    def _on_text(self, transport: WSTransport, data: bytes) -> None:
        flavor, tally = self.flavor, self.tally
        if flavor is SOCKETIO and data == b"2":
            transport.send(_TEXT, b"3")  # Engine.IO heartbeat
            return
        if data.startswith(flavor.failure):
            # Counted, and the request ends: the run fails rather than stalls.
            tally.errors += 1
            self._next()
            return
        now = time.perf_counter()
        measured = tally.window.holds(now)
        if measured:
            tally.frames += 1
            if data.startswith(flavor.delta):
                # The agent's deltas, not frames: a store may send several in one
                # (merged while they wait for one commit). Each is "w<n> ", and
                # nothing else in a compact JSON frame holds a space.
                tally.deltas += data.count(b" ")
        if self.mode == "echo":
            self._completed(now, measured)
        elif (
            self.mode == "thread"
            and self._request is flavor.chat
            and data.startswith(frames.JSON_ACK)
        ):
            # The first ack names the thread: the next messages go there.
            self._request = frames.json_chat_in(orjson.loads(data)["thread_id"])
        elif data.startswith(flavor.completed):
            if measured and self.mode in ROUND_TRIPS:
                tally.to_completed.append(now - self.sent_at)
            self._completed(now, measured)
        elif data.startswith(flavor.started) and measured and self.mode in ROUND_TRIPS:
            tally.to_started.append(now - self.sent_at)

    def _completed(self, _now: float, measured: bool) -> None:
        if measured:
            self.tally.completed += 1
        self._next()


class Recorder(WSListener):
    """A chatgate socket that keeps every text frame it receives, for scenarios about one answer.

    :meth:`expect` hands out a future for the next frame of a type; an ``error`` or
    ``agent_error`` frame fails it, so a refused request ends the wait at once.
    """

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.established: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.frames: list[bytes] = []
        self.closing = False
        self.closed_with: int | None = None
        """The close code of a close the server started."""
        self._wanted = b""
        self._arrival: asyncio.Future[float] | None = None

    def expect(self, prefix: bytes) -> asyncio.Future[float]:
        """A future of the ``perf_counter`` time when a frame starting with ``prefix`` arrives."""
        self._wanted = prefix
        self._arrival = asyncio.get_running_loop().create_future()
        return self._arrival

    def count(self, prefix: bytes) -> int:
        """How many of the frames received so far start with ``prefix``."""
        return sum(1 for frame in self.frames if frame.startswith(prefix))

    def words(self, prefix: bytes) -> int:
        """The bench agent's deltas (``w<n> ``) in the frames starting with ``prefix``."""
        return sum(frame.count(b" ") for frame in self.frames if frame.startswith(prefix))

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, _transport: WSTransport) -> None:
        lost = ConnectionError(
            f"closed by the server ({self.closed_with}) after {len(self.frames)} frames"
        )
        for waiting in (self.established, self._arrival):
            if waiting is not None and not waiting.done():
                waiting.set_exception(lost)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            if not self.closing:
                self.closed_with = frame.get_close_code().value
                transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            return
        if frame.msg_type is not _TEXT:
            return
        data = frame.get_payload_as_bytes()
        if not self.established.done():
            if data.startswith(b'{"type":"connection_established"'):
                self.established.set_result(None)
            else:
                self.established.set_exception(ConnectionError(f"refused: {data[:80]!r}"))
            return
        self.frames.append(data)
        arrival = self._arrival
        if arrival is None or arrival.done():
            return
        if data.startswith(self._wanted):
            arrival.set_result(time.perf_counter())
        elif data.startswith(JSON.failure):
            arrival.set_exception(RuntimeError(f"refused: {data[:200]!r}"))

    def send(self, data: bytes) -> None:
        """Send one text frame."""
        assert self.transport is not None
        self.transport.send(_TEXT, data)

    def close(self) -> None:
        """Start the closing handshake (1000); the server's close completes it."""
        self.closing = True
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close(WSCloseCode.OK)
