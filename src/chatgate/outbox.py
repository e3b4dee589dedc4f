"""A connection's send queue, bounded in bytes.

Producers (the broker's sink, timers, the receive loop) never block: they
append a frame, and one sender task writes frames in order. A client that
reads too slowly overflows the budget and is closed with 4102.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from chatgate.closecodes import CloseCode


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """The last item of an outbox: close the socket with this code; ``detail`` follows the slug."""

    code: CloseCode
    detail: str


class Outbox:
    """Frames waiting to be written, in order, then at most one close."""

    __slots__ = ("_bytes", "_closing", "_frames", "_limit", "_ready")

    def __init__(self, limit_bytes: int) -> None:
        self._frames: deque[str | CloseFrame] = deque()
        self._bytes = 0
        self._limit = limit_bytes
        self._ready = asyncio.Event()
        self._closing = False

    @property
    def closing(self) -> bool:
        """Whether a close has been queued; later frames are dropped."""
        return self._closing

    def put(self, frame: str) -> None:
        """Queue a frame; past the byte budget the queue is replaced by a 4102 close."""
        if self._closing:
            return
        size = _utf8_size(frame)
        if self._bytes + size > self._limit:
            self._frames.clear()
            self._bytes = 0
            self.close(CloseCode.SLOW_CONSUMER, f"send queue over {self._limit} bytes")
            return
        self._frames.append(frame)
        self._bytes += size
        self._ready.set()

    def close(self, code: CloseCode, detail: str = "") -> None:
        """Queue the close after the frames already queued; the first close wins."""
        if self._closing:
            return
        self._closing = True
        self._frames.append(CloseFrame(code, detail))
        self._ready.set()

    async def get(self) -> str | CloseFrame:
        """The next frame or close, waiting for one."""
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        item = self._frames.popleft()
        if isinstance(item, str):
            self._bytes -= _utf8_size(item)
        return item


def _utf8_size(frame: str) -> int:
    # Most frames are ASCII (orjson escapes nothing, but payloads are mostly
    # ASCII): isascii() is a scan without a copy, encode() only when needed.
    return len(frame) if frame.isascii() else len(frame.encode())
