"""Runs in the store: how each run ends up recorded, and how orphaned runs are ended."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from chatgate.agents.loader import LoadedAgent
from chatgate.broker.memory import MemoryBroker
from chatgate.chat.recovery import Recovery, identity_for, process_namespace, proven_gone
from chatgate.chat.runs import RunManager
from chatgate.models import Delivery, RunRecord
from chatgate.settings import load_settings
from chatgate.store.base import InstanceLease
from chatgate.store.memory import MemoryStore


class Scripted:
    """Yields the given events; waits forever where an event is None."""

    name = "scripted"

    def __init__(self, *events: dict[str, Any] | None) -> None:
        self.events = events
        self.waiting = asyncio.Event()

    async def run(self, _history: Sequence[Any], _text: str) -> AsyncIterator[dict[str, Any]]:
        for event in self.events:
            if event is None:
                self.waiting.set()
                await asyncio.Event().wait()
            elif event["type"] == "raise":
                raise RuntimeError("broken on purpose")
            else:
                yield event


DONE = {"type": "agent_completed", "payload": {"text": "ok"}}
THINK = {"type": "agent_thinking", "payload": {"text": "hm"}}


class World:
    def __init__(self, agent: Any, instance_id: str = "host:1") -> None:
        self.store = MemoryStore()
        self.broker = MemoryBroker()
        self.runs = RunManager(self.store, self.broker, LoadedAgent(agent.name, agent), instance_id)
        self.seen: list[dict[str, Any]] = []

    async def watch(self, user_id: str = "alice") -> None:
        def sink(delivery: Delivery) -> None:
            self.seen.append(orjson.loads(delivery.frame))

        await self.broker.subscribe(user_id, sink)

    async def run(self, thread_id: str, run_id: str = "run_1") -> asyncio.Task[None]:
        run = self.runs.start(
            run_id=run_id,
            thread_id=thread_id,
            user_id="alice",
            connection_id="conn_1",
            history=[],
            text="hi",
        )
        assert run.task is not None
        return run.task

    def status(self, run_id: str = "run_1") -> str:
        return self.store._runs[run_id].status


def types(frames: list[dict[str, Any]]) -> list[str]:
    return [f["type"] for f in frames]


async def test_runs_are_recorded_with_how_they_ended() -> None:
    for agent, status in (
        (Scripted(THINK, DONE), "completed"),
        (Scripted(THINK, {"type": "raise"}), "failed"),
    ):
        world = World(agent)
        thread = await world.store.create_thread("alice", "t")
        await (await world.run(thread.id))
        assert world.status() == status
        assert world.store._runs["run_1"].instance_id == "host:1"


async def test_a_cancelled_run_is_recorded_cancelled() -> None:
    agent = Scripted(THINK, None)
    world = World(agent)
    thread = await world.store.create_thread("alice", "t")
    task = await world.run(thread.id)
    await agent.waiting.wait()
    assert world.runs.cancel("alice", "run_1")
    await task
    assert world.status() == "cancelled"


async def test_shutdown_ends_runs_in_flight_as_interrupted() -> None:
    agent = Scripted(THINK, None)
    world = World(agent)
    await world.watch()
    thread = await world.store.create_thread("alice", "t")
    await world.run(thread.id)
    await agent.waiting.wait()
    await world.runs.shutdown()
    assert types(world.seen) == ["agent_started", "agent_thinking", "agent_error"]
    assert world.seen[-1]["payload"]["code"] == "run_interrupted"
    assert world.seen[-1]["event_id"] == 3
    assert world.status() == "interrupted"


HOST = "box boot-1 pid:[1]"
ME = InstanceLease("box:8000/new", "box:8000", False, HOST, 200)


def lease(instance_id: str, pid: int | None, host: str | None = HOST, **kw: Any) -> InstanceLease:
    base = instance_id.partition("/")[0]
    return InstanceLease(instance_id, kw.pop("base", base), kw.pop("configured", False), host, pid)


def only_alive(*pids: int) -> Any:
    return lambda pid: pid in pids


async def test_a_restarted_process_ends_the_runs_of_a_dead_predecessor_after_their_events() -> None:
    world = World(Scripted(DONE), instance_id="")
    await world.watch()
    thread = await world.store.create_thread("alice", "t")
    await world.store.register_instance(lease("box:8000/old", pid=100))
    await world.store.register_instance(lease("box:8001/live", pid=101))
    await world.store.record_run(RunRecord("run_old", thread.id, "alice", "box:8000/old"))
    await world.store.append_event(thread.id, "run_old", "agent_started", {"agent": "x"})
    await world.store.record_run(RunRecord("run_done", thread.id, "alice", "box:8000/old"))
    await world.store.append_event(thread.id, "run_done", "agent_completed", {"text": ""})
    await world.store.record_run(RunRecord("run_live", thread.id, "alice", "box:8001/live"))

    recovery = Recovery(
        world.store, world.runs, identity=ME, heartbeat_s=5.0, alive=only_alive(101)
    )
    await recovery.start()
    try:
        assert world.runs.instance_id == "box:8000/new"
        assert [(f["type"], f["run_id"], f["event_id"]) for f in world.seen] == [
            ("agent_error", "run_old", 3)
        ]
        assert world.seen[0]["payload"]["code"] == "run_interrupted"
        assert world.status("run_live") == "running"
        assert world.status("run_done") == "interrupted"
        leases = [i.instance_id for i in await world.store.list_instances()]
        assert leases == ["box:8000/new", "box:8001/live"]
    finally:
        await recovery.stop()
    assert [i.instance_id for i in await world.store.list_instances()] == ["box:8001/live"]


def test_a_process_on_this_host_is_gone_only_when_its_pid_is() -> None:
    alive = only_alive(101, 200)
    assert proven_gone(lease("box:8000/old", pid=100), ME, alive) is not None
    assert proven_gone(lease("box:8000/x", pid=101), ME, alive) is None
    # Its pid is this process's: the process that had it is gone.
    assert proven_gone(lease("box:8000/x", pid=200), ME, alive) is not None
    assert proven_gone(ME, ME, alive) is None
    # Same id, same port, another host or namespace: nothing proves it gone.
    assert proven_gone(lease("box:8000/x", pid=100, host="box boot-2 pid:[1]"), ME, alive) is None
    assert proven_gone(lease("box:8000/x", pid=None, host=None), ME, alive) is None


def test_a_configured_instance_id_names_one_process_at_a_time() -> None:
    me = InstanceLease("gw-a/new", "gw-a", True, "pod-a ns-2", 1)
    elsewhere = "pod-a ns-1"
    alive = only_alive(1)
    same = lease("gw-a/old", pid=1, host=elsewhere, configured=True)
    assert proven_gone(same, me, alive) is not None
    other = lease("gw-b/old", pid=1, host=elsewhere, configured=True)
    assert proven_gone(other, me, alive) is None
    # The same host name and port, but not configured: not proof enough.
    assert proven_gone(same, dataclasses.replace(me, configured=False), alive) is None
    # A live process on this very host is never judged gone, whatever its id.
    here = lease("gw-a/twin", pid=7, host="pod-a ns-2", configured=True)
    assert proven_gone(here, me, only_alive(1, 7)) is None


async def test_others_are_judged_only_after_a_stale_interval_of_own_heartbeats() -> None:
    world = World(Scripted(DONE))
    await world.watch()
    thread = await world.store.create_thread("alice", "t")
    await world.store.record_run(RunRecord("run_lost", thread.id, "alice", "gone:1"))

    patient = Recovery(world.store, world.runs, identity=ME, heartbeat_s=3600.0)
    assert await patient.sweep() == 0
    assert world.status("run_lost") == "running"

    eager = Recovery(world.store, world.runs, identity=ME, heartbeat_s=0.0)
    assert await eager.sweep() == 1
    assert world.status("run_lost") == "interrupted"
    assert types(world.seen) == ["agent_error"]


def test_every_process_has_an_identity_of_its_own() -> None:
    settings = load_settings(port=9123)
    first, second = identity_for(settings), identity_for(settings)
    assert first.instance_id != second.instance_id
    assert first.instance_id.startswith(f"{first.base}/")
    assert first.base is not None
    assert first.base.endswith(":9123")
    assert not first.configured
    assert first.pid == os.getpid()
    assert first.host == process_namespace()
    configured = identity_for(load_settings(instance_id="gw-a"))
    assert (configured.base, configured.configured) == ("gw-a", True)
    assert configured.instance_id.startswith("gw-a/")
