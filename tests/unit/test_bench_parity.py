"""The benchmark's parity turn: chatgate's bench agent sends what the lean socketio server sends."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from chatgate.agents.loader import LoadedAgent
from chatgate.broker.memory import MemoryBroker
from chatgate.chat.runs import RunManager
from chatgate.models import Delivery
from chatgate.store.memory import MemoryStore

# The harness is a package at the repository's root, not installed: found from here.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import frames, server_socketio_lean
from bench.bench_agent import LEAN_TEXT, BenchAgent


def test_the_load_generator_sends_the_message_the_bench_agent_knows() -> None:
    assert frames.PARITY_TEXT == LEAN_TEXT
    assert orjson.loads(frames.JSON_PARITY)["payload"]["text"] == LEAN_TEXT
    assert orjson.loads(frames.SIO_PARITY[2:])[1]["payload"]["text"] == LEAN_TEXT
    # The lean server answers the parity message as any other: not as a stream.
    assert frames.requested_stream(frames.SIO_PARITY) is None


async def test_chatgate_sends_the_lean_servers_events_on_the_parity_turn() -> None:
    store, broker = MemoryStore(), MemoryBroker()
    runs = RunManager(store, broker, LoadedAgent("lean", BenchAgent()), instance_id="i")
    thread = await store.create_thread("alice", "t")
    sent: list[dict[str, object]] = []

    def sink(delivery: Delivery) -> None:
        sent.append(orjson.loads(delivery.frame))

    await broker.subscribe("alice", sink)
    run = runs.start(
        run_id="run_1",
        thread_id=thread.id,
        user_id="alice",
        connection_id="conn_1",
        history=[],
        text=LEAN_TEXT,
    )
    assert run.task is not None
    await run.task
    lean = server_socketio_lean
    assert [(frame["type"], frame["payload"]) for frame in sent] == [
        ("agent_started", {"agent": "lean"}),
        ("agent_thinking", lean._THINKING),
        ("tool_executing", {**lean._TOOL, "tool_call_id": sent[2]["payload"]["tool_call_id"]}),
        ("tool_completed", {**lean._RESULT, "tool_call_id": sent[2]["payload"]["tool_call_id"]}),
        ("agent_completed", lean._ANSWER),
    ]
    assert [m.content for m in await store.list_messages(thread.id)] == [lean._ANSWER["text"]]
