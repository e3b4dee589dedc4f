"""A connection's send queue, bounded in bytes.

Producers (the broker's sink, timers, the receive loop) never block: they
append a frame and the queue calls ``wake``, which lets the connection start
a sender that writes frames in order until the queue is empty. An idle socket
therefore holds no sender task and no queue storage. A client that reads too
slowly overflows the budget and is closed with 4102.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from chatgate.closecodes import CloseCode


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """The last item of an outbox: close the socket with this code; ``detail`` follows the slug."""

    code: CloseCode
    detail: str


class Outbox:
    """Frames waiting to be written, in order, then at most one close."""

    __slots__ = ("_bytes", "_closing", "_frames", "_limit", "_wake")

    def __init__(self, limit_bytes: int, wake: Callable[[], None]) -> None:
        self._frames: deque[str | CloseFrame] | None = None
        self._bytes = 0
        self._limit = limit_bytes
        self._wake = wake
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
            self._frames = None
            self._bytes = 0
            self.close(CloseCode.SLOW_CONSUMER, f"send queue over {self._limit} bytes")
            return
        self._append(frame)
        self._bytes += size

    def close(self, code: CloseCode, detail: str = "") -> None:
        """Queue the close after the frames already queued; the first close wins."""
        if self._closing:
            return
        self._closing = True
        self._append(CloseFrame(code, detail))

    def pop(self) -> str | CloseFrame | None:
        """The next frame or close, or None when nothing is queued."""
        frames = self._frames
        if not frames:
            return None
        item = frames.popleft()
        if not frames:
            # Storage is released with the last frame: most sockets are idle.
            self._frames = None
        if isinstance(item, str):
            self._bytes -= _utf8_size(item)
        return item

    def _append(self, item: str | CloseFrame) -> None:
        if self._frames is None:
            self._frames = deque()
        self._frames.append(item)
        self._wake()


def _utf8_size(frame: str) -> int:
    # Most frames are ASCII: isascii() is a scan without a copy, encode() only when needed.
    return len(frame) if frame.isascii() else len(frame.encode())
