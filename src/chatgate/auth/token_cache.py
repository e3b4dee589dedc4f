"""A bounded cache of tokens already verified, keyed by the whole token string.

A client presents the same token on every reconnect and on every history API
request until it refreshes it, and PyJWT spends about 25 µs (300,000
instructions) on an HS256 token. A hit here costs a dictionary lookup.

Why a hit is as good as a verification: the key is the exact token, so a hit
means these very bytes passed every check before, against keys that have not
changed since (they are read once at startup; a JWKS key is trusted for
``max_age_s`` anyway, which also bounds an entry's life). Of the checks, only
the ones that depend on the clock can change their answer: ``exp`` is checked
again on every hit, exactly as PyJWT compares it; ``nbf`` and ``iat`` only
become truer as time passes, unless the clock steps back, so an entry is
dropped when the clock reads earlier than when it was stored. Refusals are
never cached: a bad token always pays the full verification.

Lookups hash the token with the per-process keyed SipHash of ``str`` before
any comparison, so an attacker cannot steer which stored token a guess is
compared with, and learns nothing from its timing.

Not thread-safe: use it from one thread (the event loop's).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    value: T
    stored_at: float
    expires_at: int
    """The token's ``exp`` as PyJWT reads it: ``int(exp)``; expired once ``now >= expires_at``."""


class VerifiedTokens(Generic[T]):
    """The last ``capacity`` verified tokens, each until its ``exp`` or ``max_age_s``.

    Raises ``ValueError`` at construction for a capacity below 1 or an age not above 0.
    """

    def __init__(self, capacity: int, max_age_s: float) -> None:
        if capacity < 1 or not max_age_s > 0:
            raise ValueError("capacity must be at least 1 and max_age_s above 0")
        self._capacity = capacity
        self._max_age_s = max_age_s
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, now: float) -> T | None:
        """The value stored for ``token`` if it is still valid at ``now``, else None."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if not entry.stored_at <= now < min(entry.expires_at, entry.stored_at + self._max_age_s):
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return entry.value

    def put(self, token: str, value: T, *, expires_at: int, now: float) -> None:
        """Remember that ``token`` verified to ``value`` at ``now``; evict the least recent."""
        self._entries[token] = _Entry(value, now, expires_at)
        self._entries.move_to_end(token)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every token."""
        self._entries.clear()
