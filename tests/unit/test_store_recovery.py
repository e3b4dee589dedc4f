"""Runs in the store: how each run ends up recorded, and how orphaned runs are ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from chatgate.agents.loader import LoadedAgent
from chatgate.broker.memory import MemoryBroker
from chatgate.chat.recovery import Recovery, instance_id_for
from chatgate.chat.runs import RunManager
from chatgate.models import Delivery, RunRecord
from chatgate.settings import load_settings
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


async def test_a_restarted_instance_ends_its_orphans_after_their_stored_events() -> None:
    world = World(Scripted(DONE), instance_id="")
    await world.watch()
    thread = await world.store.create_thread("alice", "t")
    await world.store.record_run(RunRecord("run_old", thread.id, "alice", "host:1"))
    await world.store.append_event(thread.id, "run_old", "agent_started", {"agent": "x"})
    await world.store.record_run(RunRecord("run_done", thread.id, "alice", "host:1"))
    await world.store.append_event(thread.id, "run_done", "agent_completed", {"text": ""})
    await world.store.record_run(RunRecord("run_other", thread.id, "alice", "host:2"))
    await world.store.heartbeat("host:2")

    recovery = Recovery(world.store, world.runs, instance_id="host:1", heartbeat_s=5.0)
    await recovery.start()
    try:
        assert world.runs.instance_id == "host:1"
        assert [(f["type"], f["run_id"], f["event_id"]) for f in world.seen] == [
            ("agent_error", "run_old", 3)
        ]
        assert world.seen[0]["payload"]["code"] == "run_interrupted"
        assert world.status("run_other") == "running"
        assert world.status("run_done") == "interrupted"
    finally:
        await recovery.stop()


async def test_others_are_judged_only_after_a_stale_interval_of_own_heartbeats() -> None:
    world = World(Scripted(DONE))
    await world.watch()
    thread = await world.store.create_thread("alice", "t")
    await world.store.record_run(RunRecord("run_lost", thread.id, "alice", "gone:1"))

    patient = Recovery(world.store, world.runs, instance_id="host:1", heartbeat_s=3600.0)
    assert await patient.sweep() == 0
    assert world.status("run_lost") == "running"

    eager = Recovery(world.store, world.runs, instance_id="host:1", heartbeat_s=0.0)
    assert await eager.sweep() == 1
    assert world.status("run_lost") == "interrupted"
    assert types(world.seen) == ["agent_error"]


def test_the_instance_id_defaults_to_host_and_port() -> None:
    settings = load_settings(port=9123)
    assert instance_id_for(settings).endswith(":9123")
    assert instance_id_for(load_settings(instance_id="gw-a")) == "gw-a"


def test_on_cloud_run_the_default_instance_id_is_unique_per_process() -> None:
    settings = load_settings(k_service="chat-staging", port=8080)
    first, second = instance_id_for(settings), instance_id_for(settings)
    assert first != second
    assert ":8080:" in first
    assert instance_id_for(load_settings(k_service="chat-staging", instance_id="pod-1")) == "pod-1"
