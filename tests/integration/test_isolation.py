"""Who sees what: every socket of a user sees the user's runs, and nobody else's."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from support import (
    DEMO_RUN,
    assert_answers_assemble,
    established,
    recv_json,
    recv_until,
    running_server,
    send_json,
)

# Names no random id will contain, so a foreign frame is found by searching for them.
ALICE = "alice-isolation"
BOB = "bob-isolation"
AGENT_EVENTS = DEMO_RUN


async def _flush(ws: Any, ping_id: str) -> list[dict[str, Any]]:
    """Every frame the socket got before the pong of a fresh ping (the pong included)."""
    await send_json(ws, {"type": "ping", "id": ping_id})
    frames = []
    while True:
        frame = await recv_json(ws)
        frames.append(frame)
        if frame["type"] == "pong" and frame["payload"].get("id") == ping_id:
            return frames


async def test_both_sockets_of_a_user_see_a_run_started_on_either() -> None:
    async with running_server() as server:
        token = server.token("alice")
        async with server.connect(token) as one, server.connect(token) as two:
            await established(one)
            await established(two)
            for sender, watcher, text in ((one, two, "what is 6*7?"), (two, one, "what is 2*3?")):
                await send_json(
                    sender, {"type": "user_message", "id": "m", "payload": {"text": text}}
                )
                sent = await recv_until(sender, "agent_completed")
                seen = await recv_until(watcher, "agent_completed")
                assert [f["type"] for f in sent] == ["message_ack", *AGENT_EVENTS]
                assert_answers_assemble(sent)
                # The ack answers the sender only; the events go to every socket of the user.
                assert seen == sent[1:]
            for ws, ping_id in ((one, "p1"), (two, "p2")):
                leftovers = await _flush(ws, ping_id)
                assert [f["type"] for f in leftovers] == ["pong"], leftovers


class _Observer:
    """One socket of a user, keeping every frame it receives."""

    def __init__(self, user: str, ws: Any) -> None:
        self.user = user
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def recv_until(self, *types: str) -> list[dict[str, Any]]:
        got = await recv_until(self.ws, *types)
        self.frames += got
        return got

    async def flush(self, ping_id: str) -> None:
        self.frames += await _flush(self.ws, ping_id)


async def _converse(observer: _Observer, peers: list[_Observer], texts: list[str]) -> set[str]:
    """Run ``texts`` one after another in one thread; return the thread and run ids used."""
    thread_id: str | None = None
    ids: set[str] = set()
    for n, text in enumerate(texts):
        frame: dict[str, Any] = {"type": "user_message", "id": f"m{n}", "payload": {"text": text}}
        if thread_id is not None:
            frame["thread_id"] = thread_id
        await send_json(observer.ws, frame)
        frames = await observer.recv_until("agent_completed", "agent_error")
        assert frames[-1]["type"] == "agent_completed", frames[-1]
        ack = frames[0]["payload"]
        thread_id = ack["thread_id"]
        ids |= {ack["thread_id"], ack["run_id"]}
        for peer in peers:
            await peer.recv_until("agent_completed")
    return ids


async def test_two_users_at_once_never_see_each_others_frames() -> None:
    async with running_server(demo_delay_ms=20) as server, contextlib.AsyncExitStack() as stack:
        observers: dict[str, list[_Observer]] = {}
        for user in (ALICE, BOB):
            observers[user] = []
            for _ in range(2):
                ws = await stack.enter_async_context(server.connect(server.token(user)))
                observers[user].append(_Observer(user, ws))
        for watchers in observers.values():
            for observer in watchers:
                observer.frames.append(await recv_json(observer.ws))
        texts = ["what is 6*7?", "what is 2+2?", "hello"]
        alice_ids, bob_ids = await asyncio.gather(
            _converse(observers[ALICE][0], observers[ALICE][1:], texts),
            _converse(observers[BOB][0], observers[BOB][1:], texts),
        )
        assert alice_ids.isdisjoint(bob_ids)
        for n, watchers in enumerate(observers.values()):
            for m, observer in enumerate(watchers):
                await observer.flush(f"flush-{n}-{m}")
        _assert_only_own(observers[ALICE], alice_ids, bob_ids, foreign_user=BOB)
        _assert_only_own(observers[BOB], bob_ids, alice_ids, foreign_user=ALICE)


def _assert_only_own(
    watchers: list[_Observer], own: set[str], foreign: set[str], foreign_user: str
) -> None:
    for observer in watchers:
        hello, *rest = observer.frames
        assert hello["type"] == "connection_established"
        assert hello["payload"]["user_id"] == observer.user
        for frame in rest:
            assert frame["type"] != "connection_established", frame
            for key in ("thread_id", "run_id"):
                if frame[key] is not None:
                    assert frame[key] in own, (observer.user, frame)
                    assert frame[key] not in foreign, (observer.user, frame)
            payload_ids = {v for k, v in frame["payload"].items() if k in {"thread_id", "run_id"}}
            assert payload_ids <= own, (observer.user, frame)
            assert frame["payload"].get("user_id", observer.user) == observer.user, frame
            assert foreign_user not in json.dumps(frame), (observer.user, frame)
        event_ids = [(f["thread_id"], f["event_id"]) for f in rest if f["event_id"] is not None]
        assert len(event_ids) == len(set(event_ids))
        # Each socket saw its user's three runs whole, every answer's deltas included.
        assert sum(f["type"] == "agent_completed" for f in rest) == 3
        assert_answers_assemble(rest)


async def test_a_user_with_no_activity_receives_nothing_while_another_chats() -> None:
    async with (
        running_server() as server,
        server.connect(server.token("alice")) as alice,
        server.connect(server.token("bob")) as bob,
    ):
        await established(alice)
        await established(bob)
        await send_json(alice, {"type": "user_message", "id": "m", "payload": {"text": "6*7"}})
        await recv_until(alice, "agent_completed")
        frames = await _flush(bob, "bob-flush")
        assert [f["type"] for f in frames] == ["pong"], frames
