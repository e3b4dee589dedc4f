"""The protocol's small queue and writable flag behave as the asyncio objects they replace."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.transport.inbox import Inbox, Writable


async def test_messages_come_out_in_order_and_the_storage_goes_with_the_last() -> None:
    inbox = Inbox()
    assert inbox.empty()
    inbox.put_nowait({"n": 1})
    inbox.put_nowait({"n": 2})
    assert not inbox.empty()
    assert await inbox.get() == {"n": 1}
    assert inbox.get_nowait() == {"n": 2}
    assert inbox.empty()
    assert inbox._items is None
    with pytest.raises(IndexError):
        inbox.get_nowait()


async def test_a_waiting_receiver_is_woken_by_the_next_message() -> None:
    inbox = Inbox()
    receiver = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not receiver.done()
    inbox.put_nowait("hello")
    assert await asyncio.wait_for(receiver, 1) == "hello"
    # The inbox holds no future once its receiver is woken.
    assert inbox._waiter is None


async def test_a_cancelled_receive_loses_no_message() -> None:
    inbox = Inbox()
    receiver = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    receiver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receiver
    inbox.put_nowait("kept")
    assert await asyncio.wait_for(inbox.get(), 1) == "kept"


async def test_a_second_receive_while_one_waits_is_refused() -> None:
    inbox = Inbox()
    first = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already waiting"):
        await inbox.get()
    inbox.put_nowait("one")
    assert await asyncio.wait_for(first, 1) == "one"


async def test_arrival_is_done_at_once_when_a_message_waits() -> None:
    inbox = Inbox()
    inbox.put_nowait("queued")
    assert inbox.arrival().done()


async def test_writers_pass_while_set_and_wait_while_cleared() -> None:
    writable = Writable()
    assert writable.is_set()
    assert await writable.wait() is True
    writable.clear()
    assert not writable.is_set()
    writers = [asyncio.ensure_future(writable.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in writers)
    writable.set()
    assert await asyncio.wait_for(asyncio.gather(*writers), 1) == [True, True, True]
    assert writable._waiters is None


async def test_a_cancelled_writer_leaves_no_waiter_behind() -> None:
    writable = Writable()
    writable.clear()
    writer = asyncio.ensure_future(writable.wait())
    await asyncio.sleep(0)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert not writable._waiters
    writable.set()
