"""One suite over every broker: what a gateway instance may rely on, whichever backend.

Two ``Broker`` objects on the same Redis (and the same key prefix) are two gateway
instances. The in-process broker is a single instance: both "instances" are the same
object, and every cross-instance promise must still hold for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from chatgate.broker import redis_publisher
from chatgate.broker.base import Broker, BrokerOptions, open_broker
from chatgate.models import Delivery

from redis_service import require_redis

WAIT_S = 5.0


@pytest.fixture
def redis_url() -> str:
    return require_redis()


class Cluster:
    """Gateway instances sharing one broker backend, under a key prefix of their own."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.prefix = f"test-{secrets.token_hex(6)}"
        self.brokers: list[Broker] = []

    async def instance(self, presence_ttl_s: float = 30.0) -> Broker:
        if self.kind == "memory" and self.brokers:
            return self.brokers[0]
        options = BrokerOptions(key_prefix=self.prefix, presence_ttl_s=presence_ttl_s)
        broker = open_broker(self.url, options)
        await broker.start()
        self.brokers.append(broker)
        return broker

    async def close(self) -> None:
        for broker in self.brokers:
            await broker.close()


@pytest.fixture(
    params=["memory", pytest.param("redis", marks=pytest.mark.integration)],
)
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    nodes = Cluster(request.param, url)
    try:
        yield nodes
    finally:
        await nodes.close()


class Inbox:
    """A sink that records what a socket would have been sent."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()

    def __call__(self, delivery: Delivery) -> None:
        self.queue.put_nowait(delivery)

    async def take(self, count: int) -> list[Delivery]:
        async with asyncio.timeout(WAIT_S):
            return [await self.queue.get() for _ in range(count)]

    def pending(self) -> list[Delivery]:
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items


def event(thread_id: str, event_id: int, text: str = "") -> Delivery:
    frame = f'{{"type":"agent_thinking","thread_id":"{thread_id}","event_id":{event_id},'
    frame += f'"payload":{{"text":"{text or event_id}"}}}}'
    return Delivery(thread_id, event_id, frame.encode())


async def test_events_reach_every_socket_of_the_user_on_every_instance_in_order(
    cluster: Cluster,
) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    on_a, on_b1, on_b2 = Inbox(), Inbox(), Inbox()
    await a.subscribe("alice", on_a)
    await b.subscribe("alice", on_b1)
    await b.subscribe("alice", on_b2)
    sent = [event("th_1", n, f"step {n}") for n in range(1, 201)]
    for delivery in sent:
        await a.publish("alice", delivery)
    for inbox in (on_a, on_b1, on_b2):
        got = await inbox.take(len(sent))
        assert [(d.thread_id, d.event_id) for d in got] == [(d.thread_id, d.event_id) for d in sent]
        assert [d.frame for d in got] == [d.frame for d in sent]


async def test_concurrent_publishes_arrive_in_the_order_they_were_made(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    inbox = Inbox()
    await b.subscribe("alice", inbox)
    sent = [event(f"th_{n % 3}", n) for n in range(1, 301)]
    # gather starts the publishes in list order; many share one round trip to Redis.
    await asyncio.gather(*(a.publish("alice", delivery) for delivery in sent))
    got = await inbox.take(len(sent))
    assert [d.event_id for d in got] == [d.event_id for d in sent]


async def test_queued_publishes_arrive_in_order_with_the_awaited_ones(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    here, there = Inbox(), Inbox()
    await a.subscribe("alice", here)
    await b.subscribe("alice", there)
    sent = [event("th_1", n) for n in range(1, 302)]
    # publish_soon returns before a remote broker has the delivery; an awaited
    # publish made after it still arrives after it.
    for delivery in sent[:150]:
        await a.publish_soon("alice", delivery)
    await a.publish("alice", sent[150])
    for delivery in sent[151:]:
        await a.publish_soon("alice", delivery)
    for inbox in (here, there):
        got = await inbox.take(len(sent))
        assert [d.event_id for d in got] == [d.event_id for d in sent]
        assert [d.frame for d in got] == [d.frame for d in sent]


async def test_no_event_reaches_another_user(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    alice, bob = Inbox(), Inbox()
    await b.subscribe("alice", alice)
    await b.subscribe("bob", bob)
    await a.publish("bob", event("th_bob", 1, "for bob only"))
    await a.publish("alice", event("th_alice", 1, "marker"))
    # One ordered stream per instance: had bob's event gone to alice, it would be first.
    assert [(d.thread_id, d.event_id) for d in await alice.take(1)] == [("th_alice", 1)]
    assert [(d.thread_id, d.event_id) for d in await bob.take(1)] == [("th_bob", 1)]
    assert alice.pending() == []
    assert bob.pending() == []


async def test_a_user_id_that_looks_like_a_key_does_not_reach_other_users(
    cluster: Cluster,
) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    plain, tricky = Inbox(), Inbox()
    await b.subscribe("control", plain)
    await b.subscribe("e2e:user:control", tricky)
    handled: list[dict[str, Any]] = []
    await b.on_control(handled.append)
    await a.publish("e2e:user:control", event("th_t", 1))
    await a.publish("control", event("th_p", 1))
    assert [d.thread_id for d in await plain.take(1)] == ["th_p"]
    assert [d.thread_id for d in await tricky.take(1)] == ["th_t"]
    assert handled == []
    assert plain.pending() == []


async def test_an_unsubscribed_sink_gets_nothing_more(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    leaving, staying = Inbox(), Inbox()
    unsubscribe = await b.subscribe("alice", leaving)
    await b.subscribe("alice", staying)
    await a.publish("alice", event("th_1", 1))
    assert len(await leaving.take(1)) == 1
    await unsubscribe()
    await unsubscribe()  # twice is harmless
    await a.publish("alice", event("th_1", 2))
    assert [d.event_id for d in await staying.take(2)] == [1, 2]
    assert leaving.pending() == []


async def test_the_last_sink_can_leave_and_a_new_one_subscribe_at_once(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    first, second = Inbox(), Inbox()
    unsubscribe = await b.subscribe("alice", first)
    await unsubscribe()
    await b.subscribe("alice", second)
    await a.publish("alice", event("th_1", 1))
    assert [d.event_id for d in await second.take(1)] == [1]
    assert first.pending() == []


async def test_the_connection_limit_counts_sockets_on_every_instance(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    assert await a.acquire_connection("alice", "c1", 3)
    assert await a.acquire_connection("alice", "c2", 3)
    assert await b.acquire_connection("alice", "c3", 3)
    assert not await b.acquire_connection("alice", "c4", 3)
    assert not await a.acquire_connection("alice", "c5", 3)
    assert await a.acquire_connection("alice", "c1", 3), "counting a connection twice is harmless"
    assert await b.acquire_connection("bob", "c6", 3), "each user has a limit of their own"
    await a.release_connection("alice", "c1")
    assert await b.acquire_connection("alice", "c4", 3)
    assert not await a.acquire_connection("alice", "c7", 3)


async def test_control_messages_reach_every_instance(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    on_a: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    on_b: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await a.on_control(on_a.put_nowait)
    await b.on_control(on_b.put_nowait)
    message = {"op": "cancel", "run_id": "run_1", "user_id": "alice"}
    await a.publish_control(message)
    await a.publish_control({"op": "cancel", "run_id": "run_2", "user_id": "bob"})
    async with asyncio.timeout(WAIT_S):
        got_b = [await on_b.get(), await on_b.get()]
        got_a = [await on_a.get(), await on_a.get()]
    assert [m["run_id"] for m in got_b] == ["run_1", "run_2"]
    assert got_b[0] == message
    assert [m["run_id"] for m in got_a] == ["run_1", "run_2"]


async def test_a_failing_sink_does_not_starve_the_others(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    inbox = Inbox()

    def broken(_: Delivery) -> None:
        raise RuntimeError("a broken socket")

    await b.subscribe("alice", broken)
    await b.subscribe("alice", inbox)
    await a.publish("alice", event("th_1", 1))
    await a.publish("alice", event("th_1", 2))
    assert [d.event_id for d in await inbox.take(2)] == [1, 2]


async def test_the_broker_answers_ping(cluster: Cluster) -> None:
    broker = await cluster.instance()
    await broker.ping()


# Redis only: an in-process broker cannot outlive its own crash.

_HOLDER = """
import asyncio, sys
from chatgate.broker.base import BrokerOptions, open_broker

async def main():
    url, prefix, ttl, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    broker = open_broker(url, BrokerOptions(key_prefix=prefix, presence_ttl_s=ttl))
    await broker.start()
    for n in range(count):
        assert await broker.acquire_connection("alice", f"held-{n}", count)
    print("holding", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def _until_acquired(broker: Broker, seconds: float) -> bool:
    """Poll (bounded) for a free slot: expiry is a deadline in Redis, nothing to await."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await broker.acquire_connection("alice", "newcomer", 2):
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.mark.integration
async def test_connections_of_a_killed_instance_stop_counting_within_the_ttl(
    redis_url: str,
) -> None:
    ttl = 1.0
    nodes = Cluster("redis", redis_url)
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        redis_url,
        nodes.prefix,
        str(ttl),
        "2",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        async with asyncio.timeout(15):
            assert await holder.stdout.readline() == b"holding\n"
        survivor = await nodes.instance(presence_ttl_s=ttl)
        # A live instance keeps its connections counted well past the TTL.
        assert not await _until_acquired(survivor, 2.5 * ttl)
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
        assert await _until_acquired(survivor, 10 * ttl)
    finally:
        with contextlib.suppress(ProcessLookupError):
            holder.kill()
        await holder.wait()
        await nodes.close()


@pytest.mark.integration
async def test_closing_an_instance_stops_counting_its_connections(redis_url: str) -> None:
    nodes = Cluster("redis", redis_url)
    try:
        a, b = await nodes.instance(), await nodes.instance()
        assert await a.acquire_connection("alice", "c1", 1)
        assert not await b.acquire_connection("alice", "c2", 1)
        await a.close()
        nodes.brokers.remove(a)
        assert await b.acquire_connection("alice", "c2", 1)
    finally:
        await nodes.close()


@pytest.mark.integration
async def test_redis_holds_one_subscription_per_user_while_a_local_sink_wants_it(
    redis_url: str,
) -> None:
    nodes = Cluster("redis", redis_url)
    observer = Redis.from_url(redis_url)
    channel = f"{nodes.prefix}:user:alice"
    try:
        broker = await nodes.instance()
        leave_first = await broker.subscribe("alice", Inbox())
        leave_second = await broker.subscribe("alice", Inbox())
        assert await observer.pubsub_numsub(channel) == [(channel.encode(), 1)]
        await leave_first()
        await leave_second()
        # Redis confirms in order: once a later subscription is confirmed, so is the leaving.
        await broker.subscribe("marker", Inbox())
        assert await observer.pubsub_numsub(channel) == [(channel.encode(), 0)]
    finally:
        await observer.aclose()
        await nodes.close()


@pytest.mark.integration
async def test_queued_publishes_past_the_bound_wait_and_keep_their_order(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_publisher, "QUEUED_MAX", 3)
    nodes = Cluster("redis", redis_url)
    try:
        a = await nodes.instance()
        inbox = Inbox()
        await a.subscribe("alice", inbox)
        sent = [event("th_1", n) for n in range(1, 41)]
        waited = 0
        for delivery in sent:
            queued = asyncio.ensure_future(a.publish_soon("alice", delivery))
            await asyncio.sleep(0)
            # Past three queued and not taken, the publisher waits for a pipeline.
            waited += not queued.done()
            await queued
        got = await inbox.take(len(sent))
        assert [d.event_id for d in got] == [d.event_id for d in sent]
        assert waited > 0
    finally:
        await nodes.close()


@pytest.mark.integration
async def test_a_users_queued_deliveries_share_messages_and_arrive_in_order(
    redis_url: str,
) -> None:
    nodes = Cluster("redis", redis_url)
    observer = Redis.from_url(redis_url)
    pubsub = observer.pubsub()
    try:
        a = await nodes.instance()
        b = await nodes.instance()
        alice, bob = Inbox(), Inbox()
        await b.subscribe("alice", alice)
        await b.subscribe("bob", bob)
        await pubsub.subscribe(f"{nodes.prefix}:user:alice")
        assert (await pubsub.get_message(timeout=WAIT_S) or {}).get("type") == "subscribe"
        to_alice = [event("th_a", n) for n in range(1, 21)]
        to_bob = [event("th_b", n) for n in range(1, 21)]
        for mine, theirs in zip(to_alice, to_bob, strict=True):
            await a.publish_soon("alice", mine)
            await a.publish_soon("bob", theirs)
        assert await alice.take(len(to_alice)) == to_alice
        assert await bob.take(len(to_bob)) == to_bob
        messages = []
        while (message := await pubsub.get_message(timeout=0.5)) is not None:
            messages.append(message)
        # Twenty deliveries queued together cross Redis in fewer messages than twenty.
        assert 1 <= len(messages) < len(to_alice), len(messages)
        assert alice.pending() == []
        assert bob.pending() == []
    finally:
        await pubsub.aclose()
        await observer.aclose()
        await nodes.close()
