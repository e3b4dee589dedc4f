"""The send queue: order, a close after the frames, and 4102 on overflow."""

from __future__ import annotations

import asyncio

from chatgate.closecodes import CloseCode
from chatgate.outbox import CloseFrame, Outbox


async def drain(outbox: Outbox) -> list[str | CloseFrame]:
    """Everything queued up to and including the close."""
    items: list[str | CloseFrame] = []
    while True:
        item = await outbox.get()
        items.append(item)
        if isinstance(item, CloseFrame):
            return items


async def test_frames_come_out_in_order() -> None:
    outbox = Outbox(1024)
    for n in range(10):
        outbox.put(f"frame-{n}")
    assert [await outbox.get() for _ in range(10)] == [f"frame-{n}" for n in range(10)]


async def test_close_comes_after_the_frames_queued_before_it() -> None:
    outbox = Outbox(1024)
    outbox.put("a")
    outbox.put("b")
    outbox.close(CloseCode.SERVICE_RESTART, "draining")
    assert outbox.closing is True
    assert await drain(outbox) == ["a", "b", CloseFrame(CloseCode.SERVICE_RESTART, "draining")]


async def test_frames_after_the_close_are_dropped() -> None:
    outbox = Outbox(1024)
    outbox.put("a")
    outbox.close(CloseCode.NORMAL)
    outbox.put("late")
    assert await drain(outbox) == ["a", CloseFrame(CloseCode.NORMAL, "")]
    # Nothing behind the close: a further get would wait forever.
    waiter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()


async def test_first_close_wins() -> None:
    outbox = Outbox(1024)
    outbox.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong")
    outbox.close(CloseCode.NORMAL, "bye")
    outbox.close(CloseCode.SLOW_CONSUMER, "x")
    assert await drain(outbox) == [CloseFrame(CloseCode.HEARTBEAT_TIMEOUT, "no pong")]


async def test_overflow_replaces_the_queue_with_a_4102_close() -> None:
    outbox = Outbox(10)
    outbox.put("12345")
    outbox.put("6789")
    outbox.put("ab")
    assert outbox.closing is True
    items = await drain(outbox)
    assert len(items) == 1
    close = items[0]
    assert isinstance(close, CloseFrame)
    assert close.code is CloseCode.SLOW_CONSUMER
    assert "10" in close.detail


async def test_filling_exactly_to_the_limit_is_allowed() -> None:
    outbox = Outbox(10)
    outbox.put("12345")
    outbox.put("67890")
    assert outbox.closing is False
    assert [await outbox.get(), await outbox.get()] == ["12345", "67890"]


async def test_a_single_frame_over_the_limit_closes() -> None:
    outbox = Outbox(10)
    outbox.put("x" * 11)
    assert await drain(outbox) == [
        CloseFrame(CloseCode.SLOW_CONSUMER, "send queue over 10 bytes"),
    ]


async def test_the_budget_counts_utf8_bytes_not_characters() -> None:
    # Frames go out as UTF-8: 5 two-byte characters are 10 bytes.
    outbox = Outbox(8)
    outbox.put("é" * 5)
    assert outbox.closing is True
    items = await drain(outbox)
    assert [type(item) for item in items] == [CloseFrame]


async def test_overflow_after_an_earlier_close_keeps_the_first_close() -> None:
    outbox = Outbox(4)
    outbox.put("ab")
    outbox.close(CloseCode.NORMAL, "bye")
    outbox.put("cdefgh")
    assert await drain(outbox) == ["ab", CloseFrame(CloseCode.NORMAL, "bye")]


async def test_reading_frees_the_budget() -> None:
    outbox = Outbox(6)
    for _ in range(20):
        outbox.put("abc")
        outbox.put("def")
        assert [await outbox.get(), await outbox.get()] == ["abc", "def"]
    assert outbox.closing is False


async def test_get_waits_for_a_frame() -> None:
    outbox = Outbox(1024)
    waiter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    outbox.put("hello")
    assert await asyncio.wait_for(waiter, timeout=5) == "hello"


async def test_get_waits_for_a_close() -> None:
    outbox = Outbox(1024)
    waiter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    outbox.close(CloseCode.TRY_AGAIN_LATER, "store down")
    assert await asyncio.wait_for(waiter, timeout=5) == CloseFrame(
        CloseCode.TRY_AGAIN_LATER, "store down"
    )
