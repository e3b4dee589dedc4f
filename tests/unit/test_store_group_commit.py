"""Group commit, without a database: batching, caps, lingering, errors, cancellation.

Also the SQL stores' batch plan: a batch of writes sorted into rows per statement.
"""

from __future__ import annotations

import asyncio

import pytest

from chatgate.models import Message, RunRecord, Thread
from chatgate.store.batch import (
    BatchPlan,
    EndedRun,
    NewEvent,
    NewMessage,
    NewRun,
    NewThread,
    ThreadChange,
)
from chatgate.store.group_commit import GroupCommit, GroupCommitClosed


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


# A batch of the SQL stores, sorted into rows per statement (no database either)


def event(thread_id: str, n: int) -> NewEvent:
    payload = {"n": n}
    return NewEvent(thread_id, "run_1", "agent_thinking", payload, f'{{"n":{n}}}', f"ts{n}")


def message(thread_id: str, content: str, created_at: str) -> Message:
    return Message(f"msg_{content}", thread_id, "user", content, None, created_at)


def test_a_plan_counts_each_threads_events_and_keeps_its_newest_message_time() -> None:
    plan = BatchPlan.of(
        [
            event("th_a", 1),
            NewMessage(message("th_b", "one", "2026-01-01T00:00:01.000Z")),
            event("th_a", 2),
            NewMessage(message("th_b", "two", "2026-01-01T00:00:02.000Z")),
            NewThread(Thread("th_c", "alice", "t", "c", "c")),
        ]
    )
    assert plan.changes == {
        "th_a": ThreadChange(events=2, updated_at=None),
        "th_b": ThreadChange(events=0, updated_at="2026-01-01T00:00:02.000Z"),
    }
    assert [row["id"] for row in plan.new_threads] == ["th_c"]


def test_placing_numbers_events_after_each_threads_new_last_id_in_submission_order() -> None:
    plan = BatchPlan.of([event("th_a", 1), event("th_b", 2), event("th_a", 3)])
    # th_a had 5 events: this batch raised its last id to 7, so it holds 6 and 7.
    results = plan.place({"th_a": 7, "th_b": 1})
    assert [(r.thread_id, r.event_id, r.payload) for r in results] == [  # type: ignore[union-attr]
        ("th_a", 6, {"n": 1}),
        ("th_b", 1, {"n": 2}),
        ("th_a", 7, {"n": 3}),
    ]
    assert [(row["thread_id"], row["event_id"], row["payload"]) for row in plan.events] == [
        ("th_a", 6, '{"n":1}'),
        ("th_b", 1, '{"n":2}'),
        ("th_a", 7, '{"n":3}'),
    ]


def test_placing_fails_only_the_writes_for_threads_that_do_not_exist() -> None:
    kept = message("th_a", "kept", "t1")
    thread = Thread("th_new", "alice", "t", "t2", "t2")
    plan = BatchPlan.of(
        [
            NewMessage(message("th_gone", "lost", "t0")),
            NewMessage(kept),
            event("th_gone", 1),
            NewThread(thread),
            NewRun(RunRecord("run_1", "th_a", "alice", "host:1"), "t3"),
            EndedRun("run_0", "completed", "t4"),
        ]
    )
    results = plan.place({"th_a": 0})
    assert [type(r).__name__ for r in results] == [
        "LookupError",
        "Message",
        "LookupError",
        "Thread",
        "NoneType",
        "NoneType",
    ]
    assert results[1] is kept
    assert results[3] is thread
    assert [row["id"] for row in plan.messages] == ["msg_kept"]
    assert plan.events == []


def test_a_plan_ends_runs_in_id_order_so_that_two_writers_lock_them_alike() -> None:
    plan = BatchPlan.of(
        [EndedRun(run_id, "completed", "t") for run_id in ("run_c", "run_a", "run_b")]
    )
    assert [row["run"] for row in plan.ended_runs] == ["run_a", "run_b", "run_c"]


async def test_writes_that_keep_coming_turn_after_turn_join_one_batch() -> None:
    recorder = Recorder()
    commit = batcher(recorder)

    async def trickle(items: range) -> list[asyncio.Future[int]]:
        queued = []
        for item in items:
            queued.append(commit.enqueue(item))
            await asyncio.sleep(0)
        return queued

    queued = await trickle(range(4))
    assert await asyncio.gather(*queued) == [0, 10, 20, 30]
    assert recorder.batches == [[0, 1, 2, 3]]


async def test_a_batch_does_not_wait_for_writes_that_stop_coming() -> None:
    recorder = Recorder()
    commit = batcher(recorder)
    first = commit.enqueue(1)
    for _ in range(3):
        await asyncio.sleep(0)
    assert recorder.batches == [[1]]
    assert await first == 10


async def test_a_folded_write_shares_the_pending_one_s_future() -> None:
    recorder = Recorder()
    commit = GroupCommit(
        recorder.write, linger_s=0.0, max_items=100, merge=lambda last, new: last + new == 5
    )
    first = commit.enqueue(2)
    assert commit.enqueue(3) is first
    other = commit.enqueue(4)
    assert other is not first
    assert await first == 20
    assert recorder.batches == [[2, 4]]
