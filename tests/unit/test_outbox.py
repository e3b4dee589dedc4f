"""The send queue: order, a close after the frames, 4102 on overflow, and waking the sender."""

from __future__ import annotations

from chatgate.closecodes import CloseCode
from chatgate.transport.outbox import CloseFrame, Outbox


class Wakes:
    """Counts the outbox's calls to wake its sender."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def outbox_of(limit: int) -> Outbox:
    return Outbox(limit, Wakes())


def drain(outbox: Outbox) -> list[bytes | CloseFrame]:
    """Everything queued, up to and including a close, batches flattened."""
    items: list[bytes | CloseFrame] = []
    while (item := outbox.pop()) is not None:
        if isinstance(item, CloseFrame):
            items.append(item)
        else:
            assert item, "a batch is never empty"
            items.extend(item)
    return items


def batches(outbox: Outbox) -> list[list[bytes] | CloseFrame]:
    """Everything queued, as the sender takes it."""
    taken: list[list[bytes] | CloseFrame] = []
    while (item := outbox.pop()) is not None:
        taken.append(item)
    return taken


def test_frames_come_out_in_order() -> None:
    outbox = outbox_of(1024)
    for n in range(10):
        outbox.put(f"frame-{n}".encode())
    assert drain(outbox) == [f"frame-{n}".encode() for n in range(10)]


def test_an_empty_outbox_pops_nothing() -> None:
    outbox = outbox_of(1024)
    assert outbox.pop() is None
    outbox.put(b"a")
    assert outbox.pop() == [b"a"]
    assert outbox.pop() is None


def test_every_queued_item_wakes_the_sender() -> None:
    wakes = Wakes()
    outbox = Outbox(1024, wakes)
    outbox.put(b"a")
    outbox.put(b"b")
    outbox.close(CloseCode.NORMAL)
    outbox.put(b"dropped")
    outbox.close(CloseCode.SLOW_CONSUMER)
    assert wakes.count == 3


def test_close_comes_after_the_frames_queued_before_it() -> None:
    outbox = outbox_of(1024)
    outbox.put(b"a")
    outbox.put(b"b")
    outbox.close(CloseCode.SERVICE_RESTART, "draining")
    assert outbox.closing is True
    assert drain(outbox) == [b"a", b"b", CloseFrame(CloseCode.SERVICE_RESTART, "draining")]


def test_frames_after_the_close_are_dropped() -> None:
    outbox = outbox_of(1024)
    outbox.put(b"a")
    outbox.close(CloseCode.NORMAL)
    outbox.put(b"late")
    assert drain(outbox) == [b"a", CloseFrame(CloseCode.NORMAL, "")]
    assert outbox.pop() is None


def test_first_close_wins() -> None:
    outbox = outbox_of(1024)
    outbox.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong")
    outbox.close(CloseCode.NORMAL, "bye")
    outbox.close(CloseCode.SLOW_CONSUMER, "x")
    assert drain(outbox) == [CloseFrame(CloseCode.HEARTBEAT_TIMEOUT, "no pong")]


def test_overflow_replaces_the_queue_with_a_4102_close() -> None:
    outbox = outbox_of(10)
    outbox.put(b"12345")
    outbox.put(b"6789")
    outbox.put(b"ab")
    assert outbox.closing is True
    items = drain(outbox)
    assert len(items) == 1
    close = items[0]
    assert isinstance(close, CloseFrame)
    assert close.code is CloseCode.SLOW_CONSUMER
    assert "10" in close.detail


def test_filling_exactly_to_the_limit_is_allowed() -> None:
    outbox = outbox_of(10)
    outbox.put(b"12345")
    outbox.put(b"67890")
    assert outbox.closing is False
    assert drain(outbox) == [b"12345", b"67890"]


def test_a_single_frame_over_the_limit_closes() -> None:
    outbox = outbox_of(10)
    outbox.put(b"x" * 11)
    assert drain(outbox) == [CloseFrame(CloseCode.SLOW_CONSUMER, "send queue over 10 bytes")]


def test_the_budget_counts_utf8_bytes_not_characters() -> None:
    # Frames are UTF-8: 5 two-byte characters are 10 bytes.
    outbox = outbox_of(8)
    outbox.put("é".encode() * 5)
    assert outbox.closing is True
    assert [type(item) for item in drain(outbox)] == [CloseFrame]


def test_overflow_after_an_earlier_close_keeps_the_first_close() -> None:
    outbox = outbox_of(4)
    outbox.put(b"ab")
    outbox.close(CloseCode.NORMAL, "bye")
    outbox.put(b"cdefgh")
    assert drain(outbox) == [b"ab", CloseFrame(CloseCode.NORMAL, "bye")]


def test_reading_frees_the_budget() -> None:
    outbox = outbox_of(6)
    for _ in range(20):
        outbox.put(b"abc")
        outbox.put(b"def")
        assert drain(outbox) == [b"abc", b"def"]
    assert outbox.closing is False


def test_everything_queued_comes_out_as_one_batch() -> None:
    outbox = outbox_of(1024)
    for n in range(5):
        outbox.put(f"event-{n}".encode())
    assert batches(outbox) == [[f"event-{n}".encode() for n in range(5)]]


def test_the_close_is_never_part_of_a_batch() -> None:
    outbox = outbox_of(1024)
    outbox.put(b"a")
    outbox.put(b"b")
    outbox.close(CloseCode.NORMAL, "bye")
    assert batches(outbox) == [[b"a", b"b"], CloseFrame(CloseCode.NORMAL, "bye")]


def test_a_batch_stops_at_its_byte_budget() -> None:
    outbox = Outbox(1024, Wakes(), batch_bytes=10)
    for frame in (b"1234", b"5678", b"90ab", b"cd"):
        outbox.put(frame)
    assert batches(outbox) == [[b"1234", b"5678"], [b"90ab", b"cd"]]


def test_a_frame_larger_than_the_batch_budget_goes_alone() -> None:
    outbox = Outbox(1024, Wakes(), batch_bytes=4)
    outbox.put(b"a")
    outbox.put(b"x" * 50)
    outbox.put(b"b")
    assert batches(outbox) == [[b"a"], [b"x" * 50], [b"b"]]


def test_frames_put_after_a_pop_form_the_next_batch() -> None:
    outbox = outbox_of(1024)
    outbox.put(b"a")
    assert outbox.pop() == [b"a"]
    outbox.put(b"b")
    outbox.put(b"c")
    assert outbox.pop() == [b"b", b"c"]
    assert outbox.pop() is None


def test_popping_a_batch_frees_its_bytes() -> None:
    outbox = outbox_of(8)
    outbox.put(b"abcd")
    outbox.put(b"efgh")
    assert outbox.pop() == [b"abcd", b"efgh"]
    outbox.put(b"ijklmnop")
    assert outbox.closing is False
