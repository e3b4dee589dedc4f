"""Persisted events per second, for each store.

Many runs write at once, as on a busy gateway: ``--writers`` concurrent
writers, each in its own thread, append ``--events`` events one after the
other, each awaiting its commit (what a run does). The figure is events stored
and committed per second of wall time; afterwards every thread's log is read
back and checked to hold ids 1..N.

    .venv/bin/python bench/store.py                   # memory, sqlite, postgresql
    .venv/bin/python bench/store.py --stores sqlite --writers 50

PostgreSQL is ``$CHATGATE_BENCH_PG_URL`` (default the local ``test`` database);
the run uses a fresh schema and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import asyncpg

from chatgate.store import Store, StoreOptions, open_store

PG_URL = os.environ.get("CHATGATE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PAYLOAD = {"text": "I will work out 6*7 with the calculator, then answer in a sentence."}


@contextlib.asynccontextmanager
async def store_url(kind: str) -> AsyncIterator[str]:
    """A URL of an empty database of ``kind``, removed afterwards."""
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{directory}/bench.db"
    else:
        schema = f"bench_{secrets.token_hex(4)}"
        try:
            yield f"{PG_URL}?search_path={schema}"
        finally:
            conn = await asyncpg.connect(PG_URL)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()


async def writer(store: Store, thread_id: str, events: int) -> None:
    """Append ``events`` events to one thread, each after the previous one is committed."""
    for _ in range(events):
        await store.append_event(thread_id, "run_bench", "agent_thinking", PAYLOAD)


async def check(store: Store, thread_ids: list[str], events: int) -> None:
    """Every thread holds exactly ids 1..events."""
    for thread_id in thread_ids:
        ids = [e.event_id for e in await store.events_after(thread_id, 0, events + 1)]
        assert ids == list(range(1, events + 1)), f"{thread_id}: {len(ids)} events"


async def measure(kind: str, args: argparse.Namespace) -> float:
    """Events per second for one store kind."""
    async with store_url(kind) as url:
        store = open_store(url, StoreOptions(batch_ms=args.batch_ms, batch_max=args.batch_max))
        await store.start()
        try:
            threads = [await store.create_thread("bench", "bench") for _ in range(args.writers)]
            thread_ids = [t.id for t in threads]
            # A short warm-up fills the connection pool and the statement caches.
            await asyncio.gather(*(writer(store, t, 2) for t in thread_ids))
            started = time.perf_counter()
            await asyncio.gather(*(writer(store, t, args.events) for t in thread_ids))
            elapsed = time.perf_counter() - started
            await check(store, thread_ids, args.events + 2)
        finally:
            await store.close()
    return args.writers * args.events / elapsed


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run on uvloop when installed, as the server does."""
    if importlib.util.find_spec("uvloop"):
        import uvloop  # noqa: PLC0415 - optional, as in the server

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())


def main() -> None:
    """Parse the options, measure each store, print one line per store."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", default="memory,sqlite,postgresql")
    parser.add_argument("--writers", type=int, default=200, help="concurrent writers (runs)")
    parser.add_argument("--events", type=int, default=100, help="events per writer")
    parser.add_argument("--batch-ms", type=float, default=5.0)
    parser.add_argument("--batch-max", type=int, default=256)
    args = parser.parse_args()

    async def measure_all() -> None:
        total = args.writers * args.events
        print(f"{args.writers} writers x {args.events} events = {total} events per store")
        for kind in args.stores.split(","):
            rate = await measure(kind, args)
            print(f"{kind:<11} {rate:>10,.0f} persisted events/s")

    run(measure_all)


if __name__ == "__main__":
    main()
