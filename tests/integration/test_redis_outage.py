"""A Redis outage and its end, against a redis-server this test starts and stops itself."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Self

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from chatgate.broker import redis as redis_broker
from chatgate.broker.base import Broker, BrokerOptions, open_broker
from chatgate.errors import BrokerUnavailable
from chatgate.models import Delivery

from redis_service import PASSWORD, RedisServer, own_redis_server

pytestmark = pytest.mark.integration

WAIT_S = 5.0
RECOVERY_S = 20.0
"""The listener's backoff is capped at 5 s: recovery comes well within this."""


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    async with own_redis_server() as server:
        yield server


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()

    def __call__(self, delivery: Delivery) -> None:
        self.queue.put_nowait(delivery)

    async def take(self) -> Delivery:
        async with asyncio.timeout(WAIT_S):
            return await self.queue.get()


def _event(event_id: int) -> Delivery:
    return Delivery("th_1", event_id, b'{"type":"agent_thinking","event_id":%d}' % event_id)


async def _until_ping_answers(broker: Broker) -> None:
    """Poll ping, bounded: the listener's reconnection is internal, nothing to await."""
    async with asyncio.timeout(RECOVERY_S):
        while True:
            try:
                await broker.ping()
            except BrokerUnavailable:
                await asyncio.sleep(0.1)
            else:
                return


async def test_the_broker_fails_fast_during_an_outage_and_recovers_by_itself(
    redis_server: RedisServer,
) -> None:
    options = BrokerOptions(key_prefix="outage", presence_ttl_s=3.0, timeout_s=1.0)
    broker = open_broker(redis_server.url, options)
    await broker.start()
    try:
        with capture_logs() as logs:
            inbox = Inbox()
            await broker.subscribe("alice", inbox)
            assert await broker.acquire_connection("alice", "c1", 5)
            await broker.publish("alice", _event(1))
            assert (await inbox.take()).event_id == 1

            await redis_server.stop()
            await _check_unavailable(broker)

            await redis_server.start()
            await _until_ping_answers(broker)
            # The subscriber from before the outage gets new events, in order,
            # through the same broker: no new subscription, no restart.
            await broker.publish("alice", _event(2))
            await broker.publish_soon("alice", _event(3))
            assert [(await inbox.take()).event_id for _ in range(2)] == [2, 3]
            assert inbox.queue.empty()
            await broker.publish_control({"op": "noop"})
    finally:
        await broker.close()
    events = [entry["event"] for entry in logs if entry.get("broker")]
    assert events == [
        "broker unavailable; reconnecting in the background",
        "broker available again",
    ]
    lost = [
        entry for entry in logs if entry["event"] == "events not delivered live: broker unavailable"
    ]
    assert [entry["events"] for entry in lost] == [1]
    assert {entry["broker"] for entry in logs if "broker" in entry} == {
        f"redis://127.0.0.1:{redis_server.port}/0"
    }
    assert PASSWORD not in repr(logs)


async def _check_unavailable(broker: Broker) -> None:
    """Every operation fails with BrokerUnavailable, in bounded time, or never raises."""
    # The guard only stops a hang from hanging the suite; it is not a timing assertion.
    async with asyncio.timeout(4 * WAIT_S):
        with pytest.raises(BrokerUnavailable):
            await broker.ping()
        with pytest.raises(BrokerUnavailable):
            await broker.publish("alice", _event(99))
        # Returns at once; the loss is logged once the pipeline fails (below).
        await broker.publish_soon("alice", _event(98))
        with pytest.raises(BrokerUnavailable):
            await broker.publish_control({"op": "noop"})
        with pytest.raises(BrokerUnavailable):
            await broker.acquire_connection("alice", "c2", 5)
        with pytest.raises(BrokerUnavailable):
            await broker.subscribe("bob", Inbox())
        await broker.release_connection("alice", "c1")


async def test_a_broker_started_while_redis_is_down_connects_once_it_is_up(
    redis_server: RedisServer,
) -> None:
    await redis_server.stop()
    broker = open_broker(redis_server.url, BrokerOptions(key_prefix="late", timeout_s=0.5))
    # Boot retries this until CHATGATE_STARTUP_TIMEOUT_S; the listener keeps trying meanwhile.
    with pytest.raises(BrokerUnavailable, match=r"^redis broker unavailable at redis://"):
        await broker.start()
    try:
        with pytest.raises(BrokerUnavailable):
            await broker.ping()
        await redis_server.start()
        await _until_ping_answers(broker)
        inbox = Inbox()
        await broker.subscribe("alice", inbox)
        await broker.publish("alice", _event(1))
        assert (await inbox.take()).event_id == 1
    finally:
        await broker.close()


async def test_counted_connections_come_back_after_redis_lost_its_data(
    redis_server: RedisServer,
) -> None:
    options = BrokerOptions(key_prefix="recount", presence_ttl_s=0.6, timeout_s=0.5)
    holder = open_broker(redis_server.url, options)
    other = open_broker(redis_server.url, options)
    await holder.start()
    try:
        assert await holder.acquire_connection("alice", "c1", 1)
        await redis_server.stop()
        await redis_server.start()  # no persistence: every count is gone
        await other.start()
        # The holder re-adds its live connection at its next refresh; poll, bounded.
        async with asyncio.timeout(RECOVERY_S):
            while await other.acquire_connection("alice", "probe", 1):
                await other.release_connection("alice", "probe")
                await asyncio.sleep(0.05)
    finally:
        with contextlib.suppress(BrokerUnavailable):
            await other.close()
        await holder.close()


async def test_a_redis_that_accepts_but_never_answers_fails_every_call_instead_of_hanging() -> None:
    # A listening socket nobody reads: the kernel completes the handshake, then silence,
    # like a Redis behind a network path that drops packets.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        options = BrokerOptions(key_prefix="silent", timeout_s=0.3)
        broker = open_broker(f"redis://127.0.0.1:{port}/0", options)
        with pytest.raises(BrokerUnavailable):
            await broker.start()
        try:
            # The guard only stops a hang from hanging the suite; it is not a timing assertion.
            async with asyncio.timeout(4 * WAIT_S):
                with pytest.raises(BrokerUnavailable):
                    await broker.ping()
                with pytest.raises(BrokerUnavailable):
                    await broker.publish("alice", _event(1))
                with pytest.raises(BrokerUnavailable):
                    await broker.acquire_connection("alice", "c1", 5)
                with pytest.raises(BrokerUnavailable):
                    await broker.subscribe("alice", Inbox())
        finally:
            await broker.close()


class _FreezingProxy:
    """A TCP proxy to a Redis whose open connections can be frozen.

    A frozen connection stays open but carries nothing either way, like a
    network path that started dropping packets; connections made later flow.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._frozen: set[int] = set()
        self._open: set[int] = set()
        self._next = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0
        self.dropped_upstream = bytearray()
        """What clients sent on frozen connections."""

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def freeze(self) -> int:
        """Freeze every connection open now; return how many."""
        self._frozen |= self._open
        return len(self._open)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self._next
        self._next += 1
        self._open.add(number)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        pumps = [
            asyncio.create_task(self._pump(number, reader, up_writer, self.dropped_upstream)),
            asyncio.create_task(self._pump(number, up_reader, writer, bytearray())),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._open.discard(number)
            for pump in pumps:
                pump.cancel()
            writer.close()
            up_writer.close()

    async def _pump(
        self,
        number: int,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        dropped: bytearray,
    ) -> None:
        while data := await source.read(65536):
            if number in self._frozen:
                dropped += data  # and lost, as on a dead path
                continue
            sink.write(data)
            await sink.drain()


async def test_a_pub_sub_connection_gone_silent_is_pinged_then_replaced(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The watchdog's pace, shortened: it looks every 50 ms and pings after 300 ms.
    monkeypatch.setattr(redis_broker, "_WATCH_EVERY_S", 0.05)
    monkeypatch.setattr(redis_broker, "_PING_AFTER_S", 0.3)
    options = BrokerOptions(key_prefix="frozen", timeout_s=0.5)
    async with _FreezingProxy(redis_server.port) as proxy:
        proxied_url = f"redis://:{PASSWORD}@127.0.0.1:{proxy.port}/0"
        listening = open_broker(proxied_url, options)
        direct = open_broker(redis_server.url, options)
        await listening.start()
        await direct.start()
        try:
            with capture_logs() as logs:
                inbox = Inbox()
                await listening.subscribe("alice", inbox)
                await direct.publish("alice", _event(1))
                assert (await inbox.take()).event_id == 1
                assert proxy.freeze() >= 1
                # Frozen, nothing arrives and nothing fails: only the watchdog can
                # tell. Publish until a delivery comes through a new connection.
                event_id = 1
                async with asyncio.timeout(RECOVERY_S):
                    while inbox.queue.empty():
                        event_id += 1
                        await direct.publish("alice", _event(event_id))
                        await asyncio.sleep(0.05)
                delivered = (await inbox.take()).event_id
                assert 1 < delivered <= event_id
                assert b"PING" in proxy.dropped_upstream
        finally:
            await direct.close()
            await listening.close()
    down = [entry for entry in logs if entry["event"].startswith("broker unavailable")]
    assert [entry["error"] for entry in down] == ["ConnectionError"]


async def test_a_publisher_connection_closed_by_redis_is_replaced_without_losing_a_publish(
    redis_server: RedisServer,
) -> None:
    options = BrokerOptions(key_prefix="killed", timeout_s=1.0)
    broker = open_broker(redis_server.url, options)
    admin = Redis.from_url(redis_server.url)
    await broker.start()
    try:
        with capture_logs() as logs:
            inbox = Inbox()
            await broker.subscribe("alice", inbox)
            await broker.publish("alice", _event(1))
            assert (await inbox.take()).event_id == 1
            # Every normal client but this one: the broker's publishing connection among
            # them (its pub/sub connection is of the pubsub type and stays).
            killed = await admin.execute_command(
                "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
            )
            assert killed >= 1
            await broker.publish("alice", _event(2))
            await broker.publish_soon("alice", _event(3))
            assert [(await inbox.take()).event_id for _ in range(2)] == [2, 3]
    finally:
        await broker.close()
        await admin.aclose()
    assert not [entry for entry in logs if entry.get("log_level") in {"warning", "error"}]
