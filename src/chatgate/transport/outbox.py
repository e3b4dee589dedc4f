"""A connection's send queue, bounded in bytes.

Producers (the broker's sink, timers, the receive loop) never block: they
append a frame and the queue calls ``wake``, which lets the connection start
a sender that writes frames in order until the queue is empty, taking what
is queued at once (up to ``BATCH_BYTES``) so that a burst of events costs one
write. An idle socket
therefore holds no sender task and no queue storage. A client that reads too
slowly overflows the budget and is closed with 4102.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from chatgate.closecodes import CloseCode

BATCH_BYTES = 64 * 1024
"""How many bytes of frames one write carries at most (a single larger frame goes alone)."""


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """The last item of an outbox: close the socket with this code; ``detail`` follows the slug."""

    code: CloseCode
    detail: str


class Outbox:
    """Frames waiting to be written, in order, then at most one close."""

    __slots__ = ("_batch_bytes", "_bytes", "_closing", "_frames", "_limit", "_room", "_wake")

    def __init__(
        self, limit_bytes: int, wake: Callable[[], None], batch_bytes: int = BATCH_BYTES
    ) -> None:
        self._frames: deque[bytes | CloseFrame] | None = None
        self._bytes = 0
        self._limit = limit_bytes
        self._batch_bytes = batch_bytes
        self._wake = wake
        self._closing = False
        # Set while a producer waits for the queue to drain (a resume being replayed).
        self._room: asyncio.Future[None] | None = None

    @property
    def queued_bytes(self) -> int:
        """Bytes of frames waiting to be written."""
        return self._bytes

    @property
    def closing(self) -> bool:
        """Whether a close has been queued; later frames are dropped."""
        return self._closing

    async def room(self) -> bool:
        """Wait until at most half the byte budget is queued; False once the socket closes.

        A producer that could fill the queue by itself (a replay) paces itself
        with this instead of overflowing into a 4102 close.
        """
        while not self._closing and self._bytes > self._limit // 2:
            if self._room is None:
                self._room = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._room)
        return not self._closing

    def _release_room(self) -> None:
        room = self._room
        if room is not None and (self._closing or self._bytes <= self._limit // 2):
            self._room = None
            if not room.done():
                room.set_result(None)

    def put(self, frame: bytes) -> None:
        """Queue a frame; past the byte budget the queue is replaced by a 4102 close."""
        if self._closing:
            return
        size = len(frame)
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
        self._release_room()

    def pop(self) -> list[bytes] | CloseFrame | None:
        """The next frames in order, else the close when it is next, else None.

        Frames come as a batch written at once: every frame queued before the
        close, as long as they fit in ``batch_bytes`` (always at least one).
        """
        frames = self._frames
        if not frames:
            return None
        if isinstance(frames[0], CloseFrame):
            close = frames.popleft()
            assert isinstance(close, CloseFrame)  # noqa: S101 - checked just above
            self._frames = None
            return close
        taken: list[bytes] = []
        size = 0
        while frames:
            item = frames[0]
            if isinstance(item, CloseFrame):
                break
            item_size = len(item)
            if taken and size + item_size > self._batch_bytes:
                break
            frames.popleft()
            taken.append(item)
            size += item_size
        self._bytes -= size
        if self._room is not None:
            self._release_room()
        if not frames:
            # Storage is released with the last frame: most sockets are idle.
            self._frames = None
        return taken

    def _append(self, item: bytes | CloseFrame) -> None:
        if self._frames is None:
            self._frames = deque()
        self._frames.append(item)
        self._wake()
