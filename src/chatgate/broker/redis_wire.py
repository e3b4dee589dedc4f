"""The Redis broker's wire: its Lua scripts, the delivery message formats, URL and backoff helpers.

Pure functions and constants, apart from :mod:`chatgate.broker.redis` so they read and test alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from urllib.parse import urlsplit

from chatgate.errors import ConfigError
from chatgate.models import Delivery

_BACKOFF_BASE_S = 0.1
_BACKOFF_CAP_S = 5.0
_jitter = random.SystemRandom()


# Both scripts read the clock of the Redis server, so instances with skewed clocks agree.
# Millisecond timestamps have 13 digits: Lua's number-to-string conversion keeps them exact.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
"""
"""KEYS: the user's connections. ARGV: TTL ms, limit, connection id. 1 when counted."""

REFRESH = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return #ARGV - 1
"""
"""KEYS: the user's connections. ARGV: TTL ms, then this instance's live connection ids.

Re-adds members that are missing, so that counts come back after Redis lost its data.
"""


MANY = b"*\nmany\n"
"""How a message of several deliveries starts: a header no single delivery has.

Its second line is not a number, so that a decoder that knows only single
deliveries refuses the message (and drops it with a warning) rather than
taking the rest for one frame.
"""
MANY_MAX_BYTES = 256 * 1024
"""Frame bytes past which a message of several deliveries takes no more."""


def check_delivery(delivery: Delivery) -> None:
    """Refuse a delivery that no message could carry.

    Raises:
        ValueError: the thread id holds a newline (ids are generated; never the case).
    """
    if "\n" in delivery.thread_id:
        raise ValueError("a thread id cannot hold a newline")


def encode_delivery(delivery: Delivery) -> bytes:
    """The pub/sub message carrying ``delivery``: a two-line header, then the frame as is.

    Raises:
        ValueError: the thread id holds a newline (ids are generated; never the case).
    """
    check_delivery(delivery)
    return b"%s\n%d\n%s" % (delivery.thread_id.encode(), delivery.event_id, delivery.frame)


def encode_deliveries(deliveries: Sequence[Delivery]) -> bytes:
    r"""One pub/sub message carrying ``deliveries`` in order; one alone as :func:`encode_delivery`.

    Several: :data:`MANY`, then for each ``<thread_id>\n<event_id>\n<frame length>\n<frame>``.

    Raises:
        ValueError: none given, or a thread id holds a newline.
    """
    if len(deliveries) == 1:
        return encode_delivery(deliveries[0])
    if not deliveries:
        raise ValueError("no delivery to encode")
    parts = [MANY]
    for delivery in deliveries:
        check_delivery(delivery)
        frame = delivery.frame
        parts.append(b"%s\n%d\n%d\n" % (delivery.thread_id.encode(), delivery.event_id, len(frame)))
        parts.append(frame)
    return b"".join(parts)


def decode_delivery(data: bytes) -> Delivery:
    """The delivery carried by a message of one.

    Raises:
        ValueError: ``data`` was not made by :func:`encode_delivery`.
    """
    thread_id, event_id, frame = data.split(b"\n", 2)
    return Delivery(thread_id.decode(), int(event_id), _text(frame))


def decode_deliveries(data: bytes) -> list[Delivery]:
    """The deliveries carried by a message of :func:`encode_deliveries`, in order.

    Raises:
        ValueError: ``data`` was not made by :func:`encode_deliveries`.
    """
    if not data.startswith(MANY):
        return [decode_delivery(data)]
    deliveries = []
    at, end = len(MANY), len(data)
    while at < end:
        # index() raises ValueError for a missing line: the whole message is refused.
        thread_end = data.index(b"\n", at)
        id_end = data.index(b"\n", thread_end + 1)
        size_end = data.index(b"\n", id_end + 1)
        size = int(data[id_end + 1 : size_end])
        frame_end = size_end + 1 + size
        if size < 0 or frame_end > end:
            raise ValueError("a frame runs past the end of the message")
        frame = _text(data[size_end + 1 : frame_end])
        event_id = int(data[thread_end + 1 : id_end])
        deliveries.append(Delivery(data[at:thread_end].decode(), event_id, frame))
        at = frame_end
    if not deliveries:
        raise ValueError("a message of several deliveries holds none")
    return deliveries


def _text(frame: bytes) -> bytes:
    """``frame``, once known to be UTF-8: it is written to sockets as a text frame as it is."""
    if not frame.isascii():
        frame.decode()  # UnicodeDecodeError is a ValueError
    return frame


def describe_url(url: str) -> str:
    """``scheme://host:port/db`` of a Redis URL: safe to log, it never holds credentials.

    Raises:
        ConfigError: the URL is malformed.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        raise ConfigError("CHATGATE_BROKER_URL", "malformed Redis URL") from None
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    db = parts.path.strip("/") or "0"
    return f"{parts.scheme.lower()}://{host}:{port}/{db}"


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before reconnection ``attempt`` (0-based): full-jitter exponential."""
    return _jitter.uniform(0.0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2.0 ** min(attempt, 16)))
