"""One rate limit per socket for every frame the client sends, pings included.

The server protocol sees WebSocket ping frames, which never reach the ASGI
app; the connection sees messages. Under chatgate's own server the protocol
offers a :class:`SharedLimiter` as the ASGI extension :data:`FRAME_LIMIT`, and
both count into the one :class:`~chatgate.transport.ratelimit.RateLimiter` it
holds, so 20,000 pings are rate-limited like 20,000 messages.
"""

from __future__ import annotations

from starlette.types import Scope

from chatgate.transport.ratelimit import RateLimiter

FRAME_LIMIT = "chatgate.frame_limit"
"""The ASGI extension: its value is the socket's :class:`SharedLimiter` itself."""


class SharedLimiter:
    """A socket's rate limiter, made at its first use: many sockets never send a frame."""

    __slots__ = ("_limit", "_limiter", "_window_s")

    def __init__(self, limit: int, window_s: float) -> None:
        self._limit = limit
        self._window_s = window_s
        self._limiter: RateLimiter | None = None

    def get(self) -> RateLimiter:
        """The socket's one limiter."""
        limiter = self._limiter
        if limiter is None:
            limiter = self._limiter = RateLimiter(self._limit, self._window_s)
        return limiter


def shared_limiter(scope: Scope) -> SharedLimiter | None:
    """The limiter the server shares with the app for this socket, if it offers one."""
    found = (scope.get("extensions") or {}).get(FRAME_LIMIT)
    return found if isinstance(found, SharedLimiter) else None
