"""The sockets of ``bench.instances``: drivers that ask for runs, listeners that count events.

Each is a picows listener on its own socket; ``open_socket`` authenticates it
and waits for ``connection_established``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.clients import Window
from bench.loadgen import CONNECT_TIMEOUT_S
from chatgate.auth.minting import mint_token

_TEXT = WSMsgType.TEXT
_AGENT = b'{"type":"agent_'
_COMPLETED = b'{"type":"agent_completed"'
_FAILURES = (b'{"type":"agent_error"', b'{"type":"error"')
_ESTABLISHED = b'{"type":"connection_established"'
L = TypeVar("L", bound="Listener")
MAX_RUNS_PER_DRIVER = 1_000_000
"""A bound on each driver's request loop, besides the measurement window."""


@dataclass(slots=True)
class Shared:
    """What every socket of one measurement reads: the window, and whether to go on."""

    window: Window = field(default_factory=Window)
    sending: bool = True


class Listener(WSListener):
    """A socket that reads a user's events and counts them; frames are recognised by prefix."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.transport: WSTransport | None = None
        self.established: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.events = 0
        self.measured = 0
        self.failures = 0
        self.closed_by_server: int | None = None
        self.closing = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, _transport: WSTransport) -> None:
        if not self.established.done():
            self.established.set_exception(ConnectionError("closed before established"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            if not self.closing:
                # A close the server started, not the answer to ours.
                self.closed_by_server = frame.get_close_code().value
                transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            return
        if frame.msg_type is not _TEXT:
            return
        data = frame.get_payload_as_bytes()
        if not self.established.done():
            if data.startswith(_ESTABLISHED):
                self.established.set_result(None)
            else:
                self.established.set_exception(ConnectionError(f"refused: {data[:80]!r}"))
            return
        if data.startswith(_AGENT):
            self.events += 1
            if self.shared.window.holds(time.perf_counter()):
                self.measured += 1
        if data.startswith(_FAILURES):
            # Counted, and the request ends: a failed run must not stall its driver.
            self.failures += 1
            self.on_completed()
        elif data.startswith(_COMPLETED):
            self.on_completed()

    def on_completed(self) -> None:
        """A run (or a refused request) ended; a listener has nothing to do about it."""

    def close(self) -> None:
        """Start the closing handshake."""
        self.closing = True
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close(WSCloseCode.OK)


class Driver(Listener):
    """A listener that also starts the runs: ``stream N``, the next when one completes."""

    def __init__(self, shared: Shared, request: bytes) -> None:
        super().__init__(shared)
        self.request = request
        self.runs = 0
        self.idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        """Send the first request."""
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.runs += 1
        self.transport.send(_TEXT, self.request)

    def on_completed(self) -> None:
        """Ask for the next run while the measurement goes on, else say this socket is done."""
        if self.shared.sending and self.runs < MAX_RUNS_PER_DRIVER:
            self._send()
        elif not self.idle.done():
            self.idle.set_result(None)


async def open_socket(port: int, secret: str, user: str, factory: Callable[[], L]) -> L:
    """Connect and authenticate one socket.

    Raises:
        OSError, ConnectionError, TimeoutError: the socket did not get established.
    """
    headers = {"Authorization": f"Bearer {mint_token(secret, user)}"}
    transport, listener = await ws_connect(
        factory,
        f"ws://127.0.0.1:{port}/ws",
        extra_headers=headers,
        websocket_handshake_timeout=CONNECT_TIMEOUT_S,
    )
    client = cast("L", listener)  # what ``factory`` made
    try:
        await asyncio.wait_for(client.established, CONNECT_TIMEOUT_S)
    except BaseException:
        transport.disconnect(graceful=False)
        raise
    return client


# Instances
