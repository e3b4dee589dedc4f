"""One socket of the probe: frames in and out, with the timing a diagnosis needs.

Every way the socket can end (a close code, a drop, silence) becomes a
:class:`~chatgate.probe.outcome.Problem` whose failure says what the probe was
doing, how long after the upgrade, and how long after the last frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, Self

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from chatgate.client.errors import ClientError, ConnectionLost, ServerClosed, UnexpectedFrame
from chatgate.client.transport import (
    AuthMethod,
    close_error,
    decode_frame,
    open_socket,
    upgrade,
)
from chatgate.probe.context import ProbeContext
from chatgate.probe.outcome import Problem, fail, failure_for


def _connect_options(ctx: ProbeContext) -> dict[str, Any]:
    return {"origin": ctx.origin, "open_timeout": ctx.timeout, "ssl_context": ctx.ssl_context}


@contextlib.contextmanager
def _as_problem(doing: str, started: float) -> Iterator[None]:
    """Turn a client error while opening into a Problem that says what the probe was doing."""
    try:
        yield
    except ClientError as exc:
        raise Problem(failure_for(exc, doing=doing, elapsed_s=time.monotonic() - started)) from None


class Wire:
    """A socket under observation."""

    def __init__(
        self,
        ctx: ProbeContext,
        ws: ClientConnection,
        *,
        started_at: float,
        established: dict[str, Any] | None = None,
    ) -> None:
        self.ctx = ctx
        self.ws = ws
        self.started_at = started_at
        self.opened_at = time.monotonic()
        self.last_frame_at = self.opened_at
        self.established = established or {}
        self.received: list[dict[str, Any]] = []
        found = self.established.get("connection_id")
        self.connection_id = found if isinstance(found, str) else None
        if self.connection_id is not None:
            ctx.connections.append(self.connection_id)

    @classmethod
    async def open(
        cls,
        ctx: ProbeContext,
        token: str | None,
        *,
        auth: AuthMethod = AuthMethod.HEADER,
        headers: Mapping[str, str] | None = None,
        doing: str = "opening an authenticated socket",
    ) -> Wire:
        """Open, authenticate and wait for ``connection_established``.

        Raises:
            Problem: the socket could not be opened, or the server closed it.
        """
        started = time.monotonic()
        with _as_problem(doing, started):
            opened = await open_socket(
                ctx.target.url, token, auth=auth, headers=headers, **_connect_options(ctx)
            )
        return cls(ctx, opened.ws, started_at=started, established=opened.established)

    @classmethod
    async def upgrade(
        cls,
        ctx: ProbeContext,
        token: str | None = None,
        *,
        auth: AuthMethod = AuthMethod.HEADER,
        headers: Mapping[str, str] | None = None,
        doing: str = "upgrading to a WebSocket",
    ) -> Wire:
        """Complete the upgrade only; no frame is awaited.

        Raises:
            Problem: the socket could not be opened.
        """
        started = time.monotonic()
        with _as_problem(doing, started):
            ws = await upgrade(
                ctx.target.url, token, auth=auth, headers=headers, **_connect_options(ctx)
            )
        return cls(ctx, ws, started_at=started)

    @property
    def upgrade_s(self) -> float:
        """Seconds from the start of the connection to the end of the upgrade."""
        return self.opened_at - self.started_at

    def _ended(self, error: ClientError, doing: str) -> Problem:
        now = time.monotonic()
        failure = failure_for(
            error, doing=doing, elapsed_s=now - self.opened_at, idle_s=now - self.last_frame_at
        )
        return Problem(replace(failure, connection_id=self.connection_id))

    async def send(self, frame: dict[str, Any], doing: str = "sending a frame") -> None:
        """Send one JSON frame.

        Raises:
            Problem: the socket had already closed.
        """
        await self.send_text(json.dumps(frame), doing)

    async def send_text(self, text: str, doing: str = "sending a frame") -> None:
        """Send one text frame as given.

        Raises:
            Problem: the socket had already closed.
        """
        try:
            await self.ws.send(text)
        except ConnectionClosed as exc:
            raise self._ended(close_error(exc), doing) from None
        self.last_frame_at = time.monotonic()

    async def recv(self, doing: str) -> dict[str, Any]:
        """Receive one frame within the probe's timeout.

        Raises:
            Problem: the socket closed or dropped, nothing came in time, or the frame is not JSON.
        """
        event = await self.next_event(doing)
        if not isinstance(event, dict):
            raise self._ended(event, doing)
        return event

    async def until(self, doing: str, *types: str) -> list[dict[str, Any]]:
        """Receive frames up to and including the first whose type is in ``types``.

        Raises:
            Problem: as :meth:`recv`.
        """
        frames = []
        while True:
            frame = await self.recv(doing)
            frames.append(frame)
            if frame.get("type") in types:
                return frames

    async def next_event(
        self, doing: str, within_s: float | None = None
    ) -> dict[str, Any] | ServerClosed | ConnectionLost:
        """The next frame, or how the socket ended if it ended first.

        Raises:
            Problem: nothing came within ``within_s`` (default: the probe's timeout).
        """
        wait_s = self.ctx.timeout if within_s is None else within_s
        try:
            async with asyncio.timeout(wait_s):
                raw = await self.ws.recv()
        except ConnectionClosed as exc:
            return close_error(exc)
        except TimeoutError:
            raise fail(
                "timeout",
                f"{doing}: nothing came within {wait_s:g} s",
                elapsed_s=time.monotonic() - self.opened_at,
            ) from None
        self.last_frame_at = time.monotonic()
        try:
            frame = decode_frame(raw)
        except UnexpectedFrame as exc:
            raise self._ended(exc, doing) from None
        self.received.append(frame)
        return frame

    async def closed(self, doing: str, within_s: float) -> ServerClosed | ConnectionLost:
        """Read until the server closes; return how (frames read meanwhile stay in ``received``).

        Raises:
            Problem: the socket was still open after ``within_s`` seconds.
        """
        deadline = time.monotonic() + within_s
        while True:
            event = await self.next_event(doing, max(0.0, deadline - time.monotonic()))
            if not isinstance(event, dict):
                return event

    async def close(self) -> None:
        """Close the socket (1000) without waiting long for the server's answer."""
        with contextlib.suppress(OSError, ConnectionClosed):
            await self.ws.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
