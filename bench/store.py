"""Persisted events per second, and chat turns per second, for each store.

Events: many runs write at once, as on a busy gateway: ``--writers``
concurrent writers, each in its own thread, append ``--events`` events one
after the other, each awaiting its commit (what a run does). The figure is
events stored and committed per second of wall time; afterwards every thread's
log is read back and checked to hold ids 1..N.

Turns: ``--users`` concurrent users each chat ``--turns`` times, one turn
after the other; a turn makes the store calls of a chat round trip on a new
thread, in the gateway's order (``Connection._on_user_message``, then the
run): create the thread, read its history, store the user's message, record
the run, append five events, store the answer, finish the run. The figure is
turns per second; afterwards every thread is checked to hold its two messages,
its five events and its finished run.

    .venv/bin/python -m bench.store                   # memory, sqlite, postgresql
    .venv/bin/python -m bench.store --stores sqlite --writers 50 --bench turns

PostgreSQL is ``$CHATGATE_BENCH_PG_URL`` (default the local ``test`` database);
the run uses a fresh schema and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import asyncpg

from bench.processes import PG_URL
from chatgate.models import RunRecord, new_id
from chatgate.store.base import Store, StoreOptions, open_store

PAYLOAD = {"text": "I will work out 6*7 with the calculator, then answer in a sentence."}
QUESTION = "what is 6*7?"
ANSWER = "6*7 = 42."
TURN_EVENTS = (
    ("agent_started", {"agent": "demo"}),
    ("agent_thinking", PAYLOAD),
    ("tool_started", {"tool": "calculator", "input": {"expression": "6*7"}}),
    ("tool_completed", {"tool": "calculator", "output": "42"}),
    ("agent_completed", {"text": ANSWER, "status": "completed"}),
)
INSTANCE = "bench:1"


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


def options(args: argparse.Namespace) -> StoreOptions:
    """The group commit as asked; a memory store that keeps the whole run, checked after it."""
    default = StoreOptions()
    threads = args.writers + args.users * (args.turns + 1)
    events = args.writers * (args.events + 2) + args.users * (args.turns + 1) * len(TURN_EVENTS)
    return StoreOptions(
        batch_ms=args.batch_ms,
        batch_max=args.batch_max,
        memory_threads=max(default.memory_threads, threads),
        memory_events=max(default.memory_events, events),
        memory_messages=max(default.memory_messages, 2 * args.users * (args.turns + 1)),
    )


async def writer(store: Store, thread_id: str, events: int) -> None:
    """Append ``events`` events to one thread, each after the previous one is committed."""
    for _ in range(events):
        await store.append_event(thread_id, "run_bench", "agent_thinking", PAYLOAD)


async def check(store: Store, thread_ids: list[str], events: int) -> None:
    """Every thread holds exactly ids 1..events."""
    for thread_id in thread_ids:
        ids = [e.event_id for e in await store.events_after(thread_id, 0, events + 1)]
        assert ids == list(range(1, events + 1)), f"{thread_id}: {len(ids)} events"


async def measure_events(kind: str, args: argparse.Namespace) -> float:
    """Events per second for one store kind."""
    async with store_url(kind) as url:
        store = open_store(url, options(args))
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


async def turn(store: Store, owner: str) -> str:
    """One chat round trip's store calls, each awaited as the gateway awaits it; the thread id."""
    thread = await store.create_thread(owner, QUESTION)
    await store.list_messages(thread.id)
    run_id = new_id("run")
    await store.add_message(thread.id, "user", QUESTION, run_id)
    await store.record_run(RunRecord(run_id, thread.id, owner, INSTANCE))
    for kind, payload in TURN_EVENTS:
        await store.append_event(thread.id, run_id, kind, payload)
    await store.add_message(thread.id, "assistant", ANSWER, run_id)
    await store.finish_run(run_id, "completed")
    return thread.id


async def user(store: Store, owner: str, turns: int) -> list[str]:
    """``turns`` chat turns of one user, one after the other; their thread ids."""
    return [await turn(store, owner) for _ in range(turns)]


async def check_turns(store: Store, owner: str, thread_ids: list[str]) -> None:
    """Every turn's thread holds its two messages, its five events and its finished run."""
    for thread_id in thread_ids:
        roles = [m.role for m in await store.list_messages(thread_id)]
        assert roles == ["user", "assistant"], f"{thread_id}: {roles}"
        logged = await store.events_after(thread_id, 0, 10)
        assert [e.event_id for e in logged] == [1, 2, 3, 4, 5], f"{thread_id}: {len(logged)}"
        run = await store.get_run(owner, str(logged[0].run_id))
        assert run is not None, f"{thread_id}: no run"
        assert run.status == "completed", f"{thread_id}: {run.status}"


async def measure_turns(kind: str, args: argparse.Namespace) -> float:
    """Chat turns per second for one store kind."""
    async with store_url(kind) as url:
        store = open_store(url, options(args))
        await store.start()
        try:
            owners = [f"user{i}" for i in range(args.users)]
            # A short warm-up fills the connection pool and the statement caches.
            await asyncio.gather(*(user(store, owner, 1) for owner in owners))
            started = time.perf_counter()
            threads = await asyncio.gather(*(user(store, o, args.turns) for o in owners))
            elapsed = time.perf_counter() - started
            for owner, thread_ids in zip(owners, threads, strict=True):
                await check_turns(store, owner, thread_ids)
        finally:
            await store.close()
    return args.users * args.turns / elapsed


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run on uvloop when installed, as the server does."""
    if importlib.util.find_spec("uvloop"):
        import uvloop  # noqa: PLC0415 - optional, as in the server

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())


def main() -> None:
    """Parse the options, measure each store, print one line per store and benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", default="memory,sqlite,postgresql")
    parser.add_argument("--bench", default="events,turns", help="events, turns, or events,turns")
    parser.add_argument("--writers", type=int, default=200, help="concurrent writers (runs)")
    parser.add_argument("--events", type=int, default=100, help="events per writer")
    parser.add_argument("--users", type=int, default=200, help="concurrent chatting users")
    parser.add_argument("--turns", type=int, default=10, help="chat turns per user")
    parser.add_argument("--batch-ms", type=float, default=5.0)
    parser.add_argument("--batch-max", type=int, default=256)
    args = parser.parse_args()
    benches = args.bench.split(",")
    unknown = sorted(set(benches) - {"events", "turns"})
    if unknown:
        parser.error(f"--bench: unknown benchmark {unknown[0]!r} (events, turns)")

    async def measure_all() -> None:
        if "events" in benches:
            total = args.writers * args.events
            print(f"{args.writers} writers x {args.events} events = {total} events per store")
            for kind in args.stores.split(","):
                rate = await measure_events(kind, args)
                print(f"{kind:<11} {rate:>10,.0f} persisted events/s")
        if "turns" in benches:
            total = args.users * args.turns
            print(f"{args.users} users x {args.turns} chat turns = {total} turns per store")
            for kind in args.stores.split(","):
                rate = await measure_turns(kind, args)
                print(f"{kind:<11} {rate:>10,.0f} chat turns/s")

    run(measure_all)


if __name__ == "__main__":
    main()
