"""The chat use cases without a socket: a ChatService with a list as its outbox."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from chatgate.agents.demo import DemoAgent
from chatgate.agents.loader import LoadedAgent
from chatgate.auth.minting import mint_token
from chatgate.auth.tokens import TokenVerifier
from chatgate.broker.memory import MemoryBroker
from chatgate.chat.runs import RunManager
from chatgate.chat.service import ChatService
from chatgate.chat.session import Session
from chatgate.errors import AuthError, StoreUnavailable
from chatgate.gateway import e2e_policy_for
from chatgate.protocol import Cancel, Ping, Resume, TokenRefresh, UserMessage
from chatgate.settings import load_settings
from chatgate.store.memory import MemoryStore

SECRET = "s" * 40
AGENT_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed"]


class Frames:
    """The service's outbox: keeps every frame, decoded."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()

    def put(self, frame: bytes) -> None:
        self.items.append(orjson.loads(frame))
        self._arrived.set()

    async def room(self) -> bool:
        return True

    async def wait_for(self, kind: str) -> None:
        async with asyncio.timeout(5):
            while kind not in self.types():
                self._arrived.clear()
                await self._arrived.wait()

    def types(self) -> list[str]:
        return [item["type"] for item in self.items]


class World:
    def __init__(self) -> None:
        self.settings = load_settings(environment="test", jwt_secret=SECRET)
        self.store = MemoryStore()
        self.broker = MemoryBroker()
        agent = DemoAgent()
        self.runs = RunManager(self.store, self.broker, LoadedAgent("demo", agent))
        self.verifier = TokenVerifier(self.settings, e2e_policy_for(self.settings))
        self.refreshed: list[Session] = []

    async def service(self, user_id: str = "alice") -> tuple[ChatService, Frames]:
        frames = Frames()
        session = Session(user_id, f"conn_{user_id}", expires_at=4e9, is_test=False)
        service = ChatService(
            session,
            frames,
            settings=self.settings,
            store=self.store,
            runs=self.runs,
            verifier=self.verifier,
            on_refresh=self.refreshed.append,
        )
        await self.broker.subscribe(user_id, service.deliver)
        return service, frames


async def test_a_user_message_is_acked_then_its_run_streams_in_order() -> None:
    world = World()
    service, frames = await world.service()
    await service.handle(UserMessage(id="m1", thread_id=None, text="what is 6*7?"))
    await frames.wait_for("agent_completed")
    types = frames.types()
    assert types[0] == "message_ack"
    assert [t for t in types if t in AGENT_EVENTS] == AGENT_EVENTS
    assert types[-1] == "agent_completed"
    ack = frames.items[0]["payload"]
    assert ack["client_message_id"] == "m1"
    completed = frames.items[-1]
    assert completed["run_id"] == ack["run_id"]
    assert "42" in completed["payload"]["text"]
    ids = [item["event_id"] for item in frames.items[1:]]
    assert ids == list(range(1, len(ids) + 1))


async def test_another_users_events_never_reach_the_service() -> None:
    world = World()
    _, alice = await world.service("alice")
    bob_service, bob = await world.service("bob")
    await bob_service.handle(UserMessage(id="b", thread_id=None, text="what is 1+1?"))
    await bob.wait_for("agent_completed")
    assert alice.items == []


async def test_resume_replays_each_event_once_and_ends_with_resume_complete() -> None:
    world = World()
    service, frames = await world.service()
    await service.handle(UserMessage(id="m1", thread_id=None, text="what is 6*7?"))
    await frames.wait_for("agent_completed")
    thread_id = frames.items[0]["payload"]["thread_id"]
    live = len(frames.items)
    await service.handle(Resume(id="r", thread_id=thread_id, after_event_id=0))
    # Every event was already sent live on this socket: only the completion comes.
    assert frames.types()[live:] == ["resume_complete"]
    assert frames.items[-1]["payload"]["last_event_id"] == live - 1

    other, fresh = await world.service()
    await other.handle(Resume(id="r", thread_id=thread_id, after_event_id=2))
    # The streamed answer comes back as one delta carrying the last merged id.
    assert fresh.types() == [
        "tool_executing",
        "tool_completed",
        "agent_text_delta",
        "agent_completed",
        "resume_complete",
    ]
    ids = [item["event_id"] for item in fresh.items[:-1]]
    assert ids[:2] == [3, 4]
    assert ids[-1] == live - 1
    assert ids[-2] == live - 2
    delta = fresh.items[2]["payload"]
    assert delta["offset"] == 0
    assert delta["text"] == fresh.items[3]["payload"]["text"]
    assert "42" in delta["text"]


async def test_a_thread_of_another_user_is_not_found() -> None:
    world = World()
    bob_service, bob = await world.service("bob")
    await bob_service.handle(UserMessage(id="b", thread_id=None, text="hi"))
    await bob.wait_for("agent_completed")
    thread_id = bob.items[0]["payload"]["thread_id"]
    service, frames = await world.service("alice")
    await service.handle(UserMessage(id="x", thread_id=thread_id, text="hi"))
    await service.handle(Resume(id="y", thread_id=thread_id, after_event_id=0))
    assert [(f["type"], f["payload"]["code"], f["payload"]["id"]) for f in frames.items] == [
        ("error", "thread_not_found", "x"),
        ("error", "thread_not_found", "y"),
    ]


async def test_ping_pongs_and_an_unknown_run_cannot_be_cancelled() -> None:
    world = World()
    service, frames = await world.service()
    await service.handle(Ping(id="p"))
    await service.handle(Cancel(id="c", run_id="run_nope"))
    assert frames.items[0] == {**frames.items[0], "type": "pong", "payload": {"id": "p"}}
    assert (frames.items[1]["type"], frames.items[1]["payload"]["code"]) == (
        "error",
        "run_not_found",
    )


async def test_token_refresh_makes_a_new_session_and_refuses_another_user() -> None:
    world = World()
    service, frames = await world.service()
    before = service.session
    await service.handle(TokenRefresh(id=None, token=mint_token(SECRET, "alice", ttl_s=600)))
    assert frames.types() == ["token_refreshed"]
    assert service.session is not before
    assert service.session.expires_at != before.expires_at
    assert world.refreshed == [service.session]
    with pytest.raises(AuthError) as refused:
        await service.handle(TokenRefresh(id=None, token=mint_token(SECRET, "bob", ttl_s=600)))
    assert refused.value.code == 4003
    assert service.session.user_id == "alice"


class DownStore(MemoryStore):
    """Every queued write of a turn fails as a batch does when the database is down."""

    def _down(self) -> asyncio.Future[Any]:
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(StoreUnavailable("memory store unavailable: down"))
        self.failed.append(failed)
        return failed

    def __init__(self) -> None:
        super().__init__()
        self.failed: list[asyncio.Future[Any]] = []

    def queue_thread(self, owner: str, title: str) -> Any:
        thread, _ = super().queue_thread(owner, title)
        return thread, self._down()

    def queue_message(self, *args: Any, **kwargs: Any) -> Any:
        return self._down()

    def queue_run(self, run: Any) -> Any:
        return self._down()


async def test_a_turn_whose_writes_fail_raises_once_and_leaves_no_failure_unread() -> None:
    world = World()
    world.store = DownStore()
    world.runs = RunManager(world.store, world.broker, LoadedAgent("demo", DemoAgent()))
    service, frames = await world.service()
    with pytest.raises(StoreUnavailable):
        await service.handle(UserMessage(id="m1", text="hi", thread_id=None))
    # The thread's write raised; the message's and the run's failures were read
    # too (asyncio would otherwise log each as never retrieved).
    assert len(world.store.failed) == 3
    assert all(not f._log_traceback for f in world.store.failed)
    assert frames.types() == []
