"""Deliveries per second through a broker, between two gateway instances.

Two broker objects on one backend stand for two gateway instances: every event is
published on instance A and delivered to the sockets (sinks) of its user on instance B.
For Redis, the report adds the CPU time Redis spent (``INFO cpu``), from which one can
tell how many events per second one Redis core carries.

    .venv/bin/python bench/broker.py                 # memory and redis://127.0.0.1:6379/0
    .venv/bin/python bench/broker.py --events 50000 --users 200 --sockets 2
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from chatgate.broker.base import BrokerOptions, open_broker
from chatgate.models import Delivery


@dataclass
class Result:
    backend: str
    scenario: str
    events: int
    deliveries: int
    seconds: float
    process_cpu_s: float
    redis_cpu_s: float | None

    def row(self) -> str:
        rate = self.deliveries / self.seconds
        events_rate = self.events / self.seconds
        redis = "" if self.redis_cpu_s is None else f"{self.redis_cpu_s:8.2f}"
        per_core = "" if not self.redis_cpu_s else f"{self.events / self.redis_cpu_s:,.0f}"
        return (
            f"{self.backend:7} {self.scenario:34} {self.events:8,} {self.deliveries:9,} "
            f"{events_rate:11,.0f} {rate:13,.0f} {self.process_cpu_s:8.2f} {redis:>9} "
            f"{per_core:>19}"
        )


HEADER = (
    f"{'backend':7} {'scenario':34} {'events':>8} {'delivered':>9} "
    f"{'events/s':>11} {'deliveries/s':>13} {'py cpu s':>8} {'redis cpu':>9} "
    f"{'events/redis-core-s':>19}"
)


def frame(thread_id: str, event_id: int) -> bytes:
    """A frame of the size of a typical agent event (about 230 bytes)."""
    return (
        f'{{"type":"agent_thinking","event_id":{event_id},"thread_id":"{thread_id}",'
        f'"run_id":"run_5f2b9c0e4d1a7b3c6e8f0a1b","ts":"2026-01-01T00:00:00.000Z",'
        f'"payload":{{"text":"Looking up the figures you asked for, step {event_id}"}}}}'
    ).encode()


class Counter:
    """A sink that checks per-thread order and says when everything arrived."""

    def __init__(self, expected: int, done: asyncio.Event) -> None:
        self.expected = expected
        self.count = 0
        self.last: dict[str, int] = {}
        self.done = done

    def __call__(self, delivery: Delivery) -> None:
        previous = self.last.get(delivery.thread_id, 0)
        assert delivery.event_id == previous + 1, "out of order"
        self.last[delivery.thread_id] = delivery.event_id
        self.count += 1
        if self.count == self.expected:
            self.done.set()


async def redis_cpu(url: str | None) -> float | None:
    if url is None:
        return None
    client = Redis.from_url(url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def run_scenario(
    url: str, scenario: str, *, users: int, events: int, sockets: int, concurrent: bool
) -> Result:
    options = BrokerOptions(key_prefix=f"bench-{secrets.token_hex(4)}")
    a = open_broker(url, options)
    b = a if url.startswith("memory") else open_broker(url, options)
    await a.start()
    if b is not a:
        await b.start()
    per_user = events // users
    sinks: list[Counter] = []
    waits: list[asyncio.Event] = []
    for user in range(users):
        for _ in range(sockets):
            done = asyncio.Event()
            sink = Counter(per_user, done)
            await b.subscribe(f"user-{user}", sink)
            sinks.append(sink)
            waits.append(done)
    payloads = [
        [Delivery(f"th_{user}", n, frame(f"th_{user}", n)) for n in range(1, per_user + 1)]
        for user in range(users)
    ]
    redis_url = None if url.startswith("memory") else url
    cpu_before, redis_before = time.process_time(), await redis_cpu(redis_url)
    started = time.perf_counter()

    async def publish(user: int) -> None:
        for delivery in payloads[user]:
            await a.publish(f"user-{user}", delivery)

    if concurrent:
        await asyncio.gather(*(publish(user) for user in range(users)))
    else:
        for user in range(users):
            await publish(user)
    await asyncio.gather(*(done.wait() for done in waits))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    redis_after = await redis_cpu(redis_url)
    await a.close()
    if b is not a:
        await b.close()
    redis_spent = (
        None if redis_after is None or redis_before is None else redis_after - redis_before
    )
    kind = url.partition("://")[0]
    total = per_user * users
    return Result(kind, scenario, total, sum(s.count for s in sinks), seconds, cpu, redis_spent)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--sockets", type=int, default=2, help="sockets per user on instance B")
    args = parser.parse_args()
    scenarios = [
        ("1 user, 1 run, 1 socket", 1, 1, False),
        (f"{args.users} users concurrent, 1 socket", args.users, 1, True),
        (f"{args.users} users concurrent, {args.sockets} sockets", args.users, args.sockets, True),
    ]
    print(HEADER)
    for url in ("memory://", args.redis_url):
        for name, users, sockets, concurrent in scenarios:
            result = await run_scenario(
                url, name, users=users, events=args.events, sockets=sockets, concurrent=concurrent
            )
            print(result.row(), flush=True)


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
