"""Runs on the in-process store: published from the run's task, in order, once stored."""

from __future__ import annotations

import asyncio

import orjson
from hypothesis import given
from hypothesis import strategies as st

from chatgate.agents.demo import DemoAgent
from chatgate.agents.loader import LoadedAgent
from chatgate.broker.memory import MemoryBroker
from chatgate.chat.publisher import ThreadPublisher, settled
from chatgate.chat.runs import Run, RunManager
from chatgate.models import Delivery, StoredEvent
from chatgate.protocol import encode, event_frame
from chatgate.store.memory import MemoryStore

from support import DEMO_RUN


def stored_count(store: MemoryStore, thread_id: str) -> int:
    """How many events the store holds for the thread, read without giving up the loop."""
    reading = store.events_after(thread_id, 0, 10_000)
    try:
        reading.send(None)
    except StopIteration as done:
        return len(done.value)
    raise AssertionError("the in-process store suspended")


class SlowFirstBroker(MemoryBroker):
    """An in-process broker slow to publish a thread's first event, as a remote one may be."""

    def __init__(self) -> None:
        super().__init__()
        self.slowed: set[str] = set()

    async def publish_soon(self, user_id: str, delivery: Delivery) -> None:
        if delivery.thread_id not in self.slowed:
            self.slowed.add(delivery.thread_id)
            await asyncio.sleep(0.05)
        await super().publish_soon(user_id, delivery)


async def start(runs: RunManager, thread_id: str, run_id: str) -> Run:
    return runs.start(
        run_id=run_id,
        thread_id=thread_id,
        user_id="alice",
        connection_id="conn_1",
        history=[],
        text="what is 6*7?",
    )


async def test_each_event_is_stored_before_it_is_published_with_dense_ids() -> None:
    store, broker = MemoryStore(), MemoryBroker()
    runs = RunManager(store, broker, LoadedAgent("demo", DemoAgent()), instance_id="i")
    thread = await store.create_thread("alice", "t")
    seen: list[tuple[int, str, int]] = []

    def sink(delivery: Delivery) -> None:
        frame = orjson.loads(delivery.frame)
        seen.append((delivery.event_id, frame["type"], stored_count(store, thread.id)))

    await broker.subscribe("alice", sink)
    run = await start(runs, thread.id, "run_1")
    assert run.task is not None
    await run.task
    assert [event_id for event_id, _, _ in seen] == list(range(1, 9))
    assert [kind for _, kind, _ in seen] == DEMO_RUN
    assert all(held >= event_id for event_id, _, held in seen)
    record = await store.get_run("alice", "run_1")
    assert record is not None
    assert record.status == "completed"
    assert [m.role for m in await store.list_messages(thread.id)] == ["assistant"]
    assert runs.running() == 0
    assert runs.in_flight("conn_1") == 0


async def test_a_slow_publish_holds_back_the_threads_later_events() -> None:
    store, broker = MemoryStore(), SlowFirstBroker()
    runs = RunManager(store, broker, LoadedAgent("demo", DemoAgent()), instance_id="i")
    thread = await store.create_thread("alice", "t")
    seen: list[int] = []
    await broker.subscribe("alice", lambda delivery: seen.append(delivery.event_id))
    # Two runs of one thread: the second one's events are stored while the
    # first one's first event is still being published.
    first = await start(runs, thread.id, "run_1")
    second = await start(runs, thread.id, "run_2")
    assert first.task is not None
    assert second.task is not None
    await asyncio.gather(first.task, second.task)
    assert seen == list(range(1, 17))


async def test_a_write_the_store_refuses_is_never_published() -> None:
    store, broker = MemoryStore(), MemoryBroker()
    runs = RunManager(store, broker, LoadedAgent("demo", DemoAgent()), instance_id="i")
    seen: list[int] = []
    await broker.subscribe("alice", lambda delivery: seen.append(delivery.event_id))
    run = Run("run_1", "th_missing", "alice", "conn_1")
    await runs.emit(run, "agent_thinking", {"text": "x"})
    assert isinstance(run.failure, LookupError)
    assert seen == []


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children),
    max_leaves=8,
)


_EVENTS = st.builds(
    StoredEvent,
    thread_id=st.text(min_size=1),
    event_id=st.integers(1, 2**63 - 1),
    type=st.text(min_size=1),
    run_id=st.none() | st.text(min_size=1),
    payload=st.dictionaries(st.text(), _JSON, max_size=4),
    ts=st.text(min_size=1),
)


@given(_EVENTS)
def test_an_event_frame_is_the_protocols_envelope(event: StoredEvent) -> None:
    assert event_frame(event) == encode(
        event.type,
        event.payload,
        thread_id=event.thread_id,
        run_id=event.run_id,
        event_id=event.event_id,
        ts=event.ts,
    )


async def test_a_write_folded_into_the_one_before_is_published_once() -> None:
    published: list[object] = []

    async def publish(_run: object, stored: object) -> None:
        published.append(stored)

    run = Run("run_1", "th_1", "alice", "conn_1")
    publisher = ThreadPublisher("th_1", publish, lambda _: None)
    loop = asyncio.get_running_loop()
    first, other = loop.create_future(), loop.create_future()
    publisher.push(run, first, publish=True)
    publisher.push(run, first, publish=True)  # the store merged it into the first
    publisher.push(run, other, publish=True)
    first.set_result("merged")
    other.set_result("next")
    await settled(run)
    assert published == ["merged", "next"]
    assert run.queued == 0
