"""The pure parts of the Redis broker: message codec, safe URL, backoff; no Redis needed."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import DefaultParser
from redis.utils import HIREDIS_AVAILABLE

from chatgate.broker.redis import RedisBroker
from chatgate.broker.redis_publisher import pipeline_messages
from chatgate.broker.redis_wire import (
    MANY,
    MANY_MAX_BYTES,
    backoff_delay,
    decode_deliveries,
    decode_delivery,
    describe_url,
    encode_deliveries,
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


# Frames as a socket would get them: any text, newlines and the header of many included.
_frames = st.text(max_size=60).map(str.encode) | st.just(MANY) | st.just(b"1\n2\n3\n")
_deliveries = st.builds(
    Delivery,
    st.text(alphabet=st.characters(blacklist_characters="\n"), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=2**63),
    _frames,
)


@given(st.lists(_deliveries, min_size=1, max_size=8))
def test_deliveries_round_trip_in_order_with_their_frames_untouched(
    deliveries: list[Delivery],
) -> None:
    assert decode_deliveries(encode_deliveries(deliveries)) == deliveries


def test_one_delivery_alone_keeps_the_single_format() -> None:
    delivery = Delivery("th_1", 7, b'{"a":1}')
    assert encode_deliveries([delivery]) == encode_delivery(delivery) == b'th_1\n7\n{"a":1}'
    assert decode_deliveries(b'th_1\n7\n{"a":1}') == [delivery]


def test_several_deliveries_are_framed_by_length_after_a_header() -> None:
    encoded = encode_deliveries([Delivery("th_1", 7, b"a\nb"), Delivery("th_2", 8, b"{}")])
    assert encoded == b"*\nmany\nth_1\n7\n3\na\nbth_2\n8\n2\n{}"


def test_a_decoder_of_single_deliveries_refuses_a_message_of_several() -> None:
    # An instance that knows one delivery per message drops it with a warning
    # instead of sending the rest to its sockets as one frame.
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError: the listener drops it
        decode_delivery(encode_deliveries([event_of("th_1", 1), event_of("th_1", 2)]))


@pytest.mark.parametrize(
    "data",
    [
        MANY,
        MANY + b"th_1\n1\n5\n{}",
        MANY + b"th_1\n1\n-1\n{}",
        MANY + b"th_1\n1\nfive\n{}",
        MANY + b"th_1\none\n2\n{}",
        MANY + b"th_1\n1\n2\n{}th_2\n2",
        MANY + b"th_1\n1\n1\n\xff",
        MANY + b"\xff\n1\n2\n{}",
    ],
)
def test_malformed_messages_of_several_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError: the listener drops it
        decode_deliveries(data)


def test_a_thread_id_with_a_newline_is_refused_among_several() -> None:
    with pytest.raises(ValueError, match="newline"):
        encode_deliveries([Delivery("th_1", 1, b"{}"), Delivery("th\n2", 2, b"{}")])


def event_of(thread_id: str, event_id: int, size: int = 2) -> Delivery:
    return Delivery(thread_id, event_id, b"{" + b"x" * (size - 2) + b"}")


def _carried(messages: list[tuple[bytes, bytes]], channel: bytes) -> list[Delivery]:
    return [d for name, data in messages if name == channel for d in decode_deliveries(data)]


def test_a_pipeline_carries_each_channels_deliveries_in_one_message_in_order() -> None:
    a = [event_of("th_a", n) for n in range(1, 6)]
    b = [event_of("th_b", n) for n in range(1, 4)]
    batch = [(b"u:a", a[0], None), (b"u:b", b[0], None), (b"u:a", a[1], None)]
    batch += [(b"u:b", d, None) for d in b[1:]] + [(b"u:a", d, None) for d in a[2:]]
    messages = pipeline_messages(batch)  # type: ignore[arg-type]
    assert [name for name, _ in messages] == [b"u:a", b"u:b"]
    assert _carried(messages, b"u:a") == a
    assert _carried(messages, b"u:b") == b


def test_a_control_message_keeps_its_place_between_deliveries() -> None:
    first, second = event_of("th_a", 1), event_of("th_a", 2)
    future: asyncio.Future[None] | None = None
    batch = [(b"u:a", first, future), (b"ctl", b'{"x":1}', future), (b"u:a", second, future)]
    assert pipeline_messages(batch) == [  # type: ignore[arg-type]
        (b"u:a", encode_delivery(first)),
        (b"ctl", b'{"x":1}'),
        (b"u:a", encode_delivery(second)),
    ]


def test_a_message_of_several_takes_a_bounded_share_of_frames() -> None:
    size = MANY_MAX_BYTES // 4
    sent = [event_of("th_a", n, size) for n in range(1, 11)]
    messages = pipeline_messages([(b"u:a", d, None) for d in sent])  # type: ignore[misc]
    assert len(messages) == 3
    assert all(len(data) < MANY_MAX_BYTES + 1024 for _, data in messages)
    assert _carried(messages, b"u:a") == sent


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
