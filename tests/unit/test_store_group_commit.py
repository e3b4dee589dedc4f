"""Group commit: batching, caps, lingering, errors and cancellation, without a database."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.group_commit import GroupCommit, GroupCommitClosed


class Recorder:
    """A writer that records each batch; ``gate`` holds a write open while set."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.writing = asyncio.Event()

    async def write(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.writing.set()
        if self.gate is not None:
            await self.gate.wait()
        return [ValueError(item) if item < 0 else item * 10 for item in items]


def batcher(
    recorder: Recorder, linger_s: float = 0.0, max_items: int = 100
) -> GroupCommit[int, int]:
    return GroupCommit(recorder.write, linger_s=linger_s, max_items=max_items)


async def test_concurrent_submissions_share_one_write() -> None:
    recorder = Recorder()
    commit = batcher(recorder)
    results = await asyncio.gather(*(commit.submit(i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert recorder.batches == [list(range(10))]


async def test_a_batch_never_holds_more_than_max_items() -> None:
    recorder = Recorder()
    commit = batcher(recorder, max_items=3)
    await asyncio.gather(*(commit.submit(i) for i in range(10)))
    assert recorder.batches == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


async def test_items_arriving_during_a_write_form_the_next_batch() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    commit = batcher(recorder)
    first = asyncio.create_task(commit.submit(1))
    await recorder.writing.wait()
    later = [asyncio.create_task(commit.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    assert commit.pending == 3
    recorder.gate.set()
    assert await first == 10
    assert [await t for t in later] == [20, 30, 40]
    assert recorder.batches == [[1], [2, 3, 4]]


async def test_a_next_batch_lingers_until_it_is_full() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    commit = batcher(recorder, linger_s=3600, max_items=3)
    first = asyncio.create_task(commit.submit(1))
    await recorder.writing.wait()
    second = asyncio.create_task(commit.submit(2))
    await asyncio.sleep(0)
    recorder.gate.set()
    await first
    # The next batch waits (its linger is an hour) until it holds max_items.
    assert recorder.batches == [[1]]
    rest = [asyncio.create_task(commit.submit(i)) for i in (3, 4)]
    assert [await second, *[await t for t in rest]] == [20, 30, 40]
    assert recorder.batches == [[1], [2, 3, 4]]


async def test_an_idle_batcher_writes_at_once_whatever_the_linger() -> None:
    recorder = Recorder()
    commit = batcher(recorder, linger_s=3600)
    async with asyncio.timeout(10):
        assert await commit.submit(7) == 70


async def test_an_item_error_reaches_its_caller_only() -> None:
    recorder = Recorder()
    commit = batcher(recorder)
    results = await asyncio.gather(
        commit.submit(1), commit.submit(-1), commit.submit(2), return_exceptions=True
    )
    assert results[0] == 10
    assert isinstance(results[1], ValueError)
    assert results[2] == 20


async def test_a_failed_write_fails_every_caller_of_that_batch_only() -> None:
    calls = 0

    async def write(items: list[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database gone")
        return list(items)

    commit: GroupCommit[int, int] = GroupCommit(write, linger_s=0, max_items=2)
    results = await asyncio.gather(*(commit.submit(i) for i in range(4)), return_exceptions=True)
    assert [type(r) for r in results[:2]] == [ConnectionError, ConnectionError]
    assert results[2:] == [2, 3]


async def test_a_caller_that_gave_up_before_the_write_is_left_out() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    commit = batcher(recorder)
    first = asyncio.create_task(commit.submit(1))
    await recorder.writing.wait()
    quitter = asyncio.create_task(commit.submit(2))
    stayer = asyncio.create_task(commit.submit(3))
    await asyncio.sleep(0)
    quitter.cancel()
    recorder.gate.set()
    assert (await first, await stayer) == (10, 30)
    assert quitter.cancelled()
    assert recorder.batches == [[1], [3]]


async def test_close_writes_what_is_pending_then_refuses() -> None:
    recorder = Recorder()
    commit = batcher(recorder)
    pending = [asyncio.create_task(commit.submit(i)) for i in range(3)]
    await asyncio.sleep(0)
    await commit.close()
    assert [t.result() for t in pending] == [0, 10, 20]
    with pytest.raises(GroupCommitClosed):
        await commit.submit(9)


def test_max_items_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_items"):
        GroupCommit(Recorder().write, linger_s=0, max_items=0)
