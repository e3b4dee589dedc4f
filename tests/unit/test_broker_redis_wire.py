"""The pure parts of the Redis broker: message codec, safe URL, backoff; no Redis needed."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import DefaultParser
from redis.utils import HIREDIS_AVAILABLE

from chatgate.broker.redis import RedisBroker
from chatgate.broker.redis_wire import (
    backoff_delay,
    decode_delivery,
    describe_url,
    encode_delivery,
)
from chatgate.errors import ConfigError
from chatgate.models import Delivery


def test_delivery_round_trips_with_the_frame_untouched() -> None:
    frame = '{"type":"agent_thinking","payload":{"text":"two\\nlines \u00e9\u2603"}}\n'.encode()
    delivery = Delivery("th_abc", 42, frame)
    decoded = decode_delivery(encode_delivery(delivery))
    assert decoded == delivery
    assert decoded.frame == frame


def test_the_frame_is_carried_verbatim_after_a_two_line_header() -> None:
    encoded = encode_delivery(Delivery("th_1", 7, b'{"a":1}'))
    assert encoded == b'th_1\n7\n{"a":1}'


def test_a_thread_id_with_a_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="newline"):
        encode_delivery(Delivery("th\n1", 1, b"{}"))


@pytest.mark.parametrize("data", [b"", b"th_1", b"th_1\nseven\n{}", b"th_1\n1\n\xff"])
def test_malformed_messages_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError: the listener drops it
        decode_delivery(data)


@pytest.mark.parametrize(
    ("url", "described"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://localhost", "redis://localhost:6379/0"),
        ("rediss://user:s3cr3t-pw@cache.internal:6380/2", "rediss://cache.internal:6380/2"),
        ("redis://:s3cr3t-pw@[::1]:6379/1", "redis://[::1]:6379/1"),
    ],
)
def test_described_urls_never_hold_credentials(url: str, described: str) -> None:
    assert describe_url(url) == described
    assert "s3cr3t" not in describe_url(url)


def test_a_malformed_url_is_a_config_error_naming_the_variable_not_the_url() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisBroker("redis://:s3cr3t-pw@host:notaport/0")
    assert caught.value.variable == "CHATGATE_BROKER_URL"
    assert "s3cr3t" not in str(caught.value)


def test_constructing_the_broker_does_not_connect() -> None:
    broker = RedisBroker("redis://:s3cr3t-pw@203.0.113.1:6379/3")
    assert broker.kind == "redis"
    assert broker.url == "redis://203.0.113.1:6379/3"


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 10, 100, 10_000])
def test_backoff_is_full_jitter_under_an_exponential_ceiling_and_a_cap(attempt: int) -> None:
    ceiling = min(5.0, 0.1 * 2.0 ** min(attempt, 16))
    delays = [backoff_delay(attempt) for _ in range(200)]
    assert all(0.0 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 1


def test_the_redis_extra_gives_redis_py_its_c_reply_parser() -> None:
    # redis-py picks hiredis by itself when it can import it; the broker's
    # pub/sub reader parses one reply per event delivered.
    assert HIREDIS_AVAILABLE
    assert DefaultParser.__name__ == "_AsyncHiredisParser"
