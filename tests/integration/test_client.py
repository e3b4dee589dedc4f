"""The client SDK against real servers: every class of close, real ones, drives reconnection.

40xx: stop and raise the close. 41xx, 1011, 1013 and drops: full-jitter
backoff. 1012: reconnect at once. After a reconnection the runs in flight
finish through the automatic resume, each event once, in order.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import chatgate.store.base
from chatgate.backends import Backend
from chatgate.client import (
    AuthMethod,
    Client,
    ConnectionLost,
    Event,
    Interrupted,
    MessageNotConfirmed,
    ReconnectAttempt,
    ReconnectFailed,
    ReconnectPolicy,
    RequestFailed,
    RunStream,
    ServerClosed,
)
from chatgate.closecodes import Retry

from faults import closed_port, drainable_server, tcp_proxy
from support import (
    DEMO_RUN,
    Server,
    assert_resumed,
    established,
    recv_until,
    running_server,
    sign_token,
    stored_log,
    user_claims,
)

OTHER_SECRET = "another-secret-0123456789abcdef-012345"
QUESTION = "what is 6*7?"
ANSWER = "6*7 = 42"


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible jitter, not a secret


def fast_policy(**overrides: object) -> ReconnectPolicy:
    options: dict[str, object] = {"base_s": 0.01, "cap_s": 0.05, "rng": seeded(7)}
    options.update(overrides)
    return ReconnectPolicy(**options)  # type: ignore[arg-type]


def recorder() -> tuple[list[ReconnectAttempt], Callable[[ReconnectAttempt], None]]:
    attempts: list[ReconnectAttempt] = []
    return attempts, attempts.append


def closes(server) -> dict[str, int]:
    return server.booted.gateway.closes.snapshot()


def assert_one_whole_run(events: list[Event], first_id: int = 1) -> None:
    assert [e.type for e in events] == DEMO_RUN
    assert [e.event_id for e in events] == list(range(first_id, first_id + len(DEMO_RUN)))
    assert len({e.run_id for e in events}) == 1


def frame_of(event: Event) -> dict[str, object]:
    """The frame an event was read from, as the shared resume checks take it."""
    return {
        "type": event.type,
        "event_id": event.event_id,
        "thread_id": event.thread_id,
        "run_id": event.run_id,
        "ts": event.ts,
        "payload": event.payload,
    }


async def assert_one_resumed_run(server: Server, run: RunStream, events: list[Event]) -> None:
    """A run that lived through a reconnection: every event of its log once, in order.

    The resume may merge deltas the client missed into one (its id skips), so
    the events are checked against the thread's log in the server's store.
    """
    assert {e.run_id for e in events} == {run.run_id}
    assert events[0].type == "agent_started"
    assert [e.type for e in events].count("agent_completed") == 1
    assert events[-1].type == "agent_completed"
    log = await stored_log(server, run.thread_id)
    assert [f["type"] for f in log] == DEMO_RUN
    assert_resumed([frame_of(e) for e in events], log)
    assert run.answer.text == events[-1].payload["text"] == ANSWER


async def ping_through_reconnection(client: Client) -> dict[str, object]:
    """Ping until the reconnected socket answers (an Interrupted ping is safe to repeat)."""
    async with asyncio.timeout(10):
        while True:
            try:
                return await client.ping()
            except Interrupted:
                continue


@pytest.mark.parametrize("auth", list(AuthMethod))
async def test_each_way_to_present_the_token_opens_a_session(auth: AuthMethod) -> None:
    async with (
        running_server() as server,
        Client(server.ws_url, server.token("alice"), auth=auth) as client,
    ):
        assert client.established["user_id"] == "alice"
        run = await client.send_message(QUESTION)
        events = await run.collect()
    assert_one_whole_run(events)
    assert events[3].payload["result"] == 42
    assert events[-1].payload["text"] == ANSWER
    assert [e.payload["text"] for e in events[4:-1]] == ["6*7 ", "= ", "42"]
    assert run.answer.text == ANSWER


async def test_a_thread_continues_and_a_new_client_resumes_it() -> None:
    async with running_server() as server:
        token = server.token("alice")
        async with Client(server.ws_url, token) as client:
            first = await client.ask(QUESTION)
            thread_id = first[0].thread_id
            assert thread_id is not None
            second = await client.ask("what is 2+3?", thread_id)
            assert client.last_event_id(thread_id) == 2 * len(DEMO_RUN)
        assert_one_whole_run(second, first_id=len(DEMO_RUN) + 1)
        async with Client(server.ws_url, token) as later:
            replayed = await later.resume(thread_id, after_event_id=3)
            assert later.last_event_id(thread_id) == 2 * len(DEMO_RUN)
        log = await stored_log(server, thread_id)
    # Each answer's three deltas come merged into one, with the id of the last.
    assert [(e.type, e.event_id) for e in replayed] == [
        ("tool_completed", 4),
        ("agent_text_delta", 7),
        ("agent_completed", 8),
        ("agent_started", 9),
        ("agent_thinking", 10),
        ("tool_executing", 11),
        ("tool_completed", 12),
        ("agent_text_delta", 15),
        ("agent_completed", 16),
    ]
    assert_resumed([frame_of(e) for e in replayed], log, after=3)
    assert [e.payload["text"] for e in replayed if e.type == "agent_text_delta"] == [
        ANSWER,
        "2+3 = 5",
    ]


async def test_4003_stops_at_once_and_raises_the_close() -> None:
    attempts, record = recorder()
    async with running_server() as server:
        forged = sign_token(user_claims("alice"), key=OTHER_SECRET)
        client = Client(server.ws_url, forged, policy=fast_policy(), on_reconnect=record)
        with pytest.raises(ServerClosed) as caught:
            await client.connect()
        assert closes(server) == {"4003": 1}
    assert (caught.value.code, caught.value.slug) == (4003, "auth_invalid")
    assert caught.value.detail == "bad signature"
    assert caught.value.retry is Retry.NEVER
    assert attempts == []


async def test_4003_in_a_session_ends_it_and_fails_what_waits() -> None:
    attempts, record = recorder()
    async with running_server(demo_delay_ms=300) as server:
        client = Client(server.ws_url, server.token("alice"), on_reconnect=record)
        await client.connect()
        run = await client.send_message(QUESTION)
        with pytest.raises(ServerClosed) as refreshed:
            await client.refresh_token(server.token("mallory"))
        with pytest.raises(ServerClosed):
            await run.collect()
        ended = await client.wait_closed()
        await client.close()
    assert (refreshed.value.code, refreshed.value.slug) == (4003, "auth_invalid")
    assert refreshed.value.detail == "token of another user"
    assert ended is refreshed.value
    assert attempts == []
    assert client.reconnects == 0


async def test_4010_connection_limit_is_not_retried() -> None:
    async with running_server(max_connections_per_user=1) as server:
        token = server.token("alice")
        async with Client(server.ws_url, token):
            with pytest.raises(ServerClosed) as caught:
                await Client(server.ws_url, token, policy=fast_policy()).connect()
    assert (caught.value.code, caught.value.slug) == (4010, "connection_limit")


async def test_4100_rate_limited_backs_off_reconnects_and_the_run_completes_once() -> None:
    attempts, record = recorder()
    async with running_server(rate_limit_messages=3, demo_delay_ms=100) as server:
        async with Client(
            server.ws_url, server.token("alice"), policy=fast_policy(), on_reconnect=record
        ) as client:
            first_connection = client.connection_id
            run = await client.send_message(QUESTION)
            await client.ping()
            await client.ping()
            with pytest.raises(RequestFailed) as refused:
                await client.ping()
            with pytest.raises(Interrupted) as interrupted:
                await client.ping()
            events = await run.collect()
            assert client.connection_id != first_connection
        assert closes(server)["4100"] == 1
        await assert_one_resumed_run(server, run, events)
    assert refused.value.code == "rate_limited"
    assert isinstance(interrupted.value.cause, ServerClosed)
    assert interrupted.value.cause.slug == "rate_limited"
    assert [(a.attempt, a.retry) for a in attempts] == [(0, Retry.BACKOFF)]
    assert isinstance(attempts[0].cause, ServerClosed)
    assert attempts[0].cause.code == 4100
    assert 0 < attempts[0].delay_s <= 0.01
    assert client.reconnects == 1


async def test_a_dropped_connection_backs_off_and_the_run_resumes_where_it_was() -> None:
    attempts, record = recorder()
    async with (
        running_server(demo_delay_ms=150) as server,
        tcp_proxy(("127.0.0.1", server.port)) as proxy,
        Client(
            proxy.ws_url, server.token("alice"), policy=fast_policy(), on_reconnect=record
        ) as client,
    ):
        run = await client.send_message(QUESTION)
        events = []
        async for event in run:
            events.append(event)
            if event.type == "agent_started":
                proxy.drop_all()
        await assert_one_resumed_run(server, run, events)
    assert len(attempts) == 1
    assert isinstance(attempts[0].cause, ConnectionLost)
    assert attempts[0].retry is Retry.BACKOFF
    assert proxy.connections == 2


async def test_an_answer_streamed_while_the_client_was_away_arrives_merged_and_ends_once() -> None:
    async with (
        running_server(demo_delay_ms=50) as server,
        tcp_proxy(("127.0.0.1", server.port)) as proxy,
        server.connect(server.token("alice")) as watcher,
        Client(
            proxy.ws_url, server.token("alice"), policy=fast_policy(max_attempts=None)
        ) as client,
    ):
        await established(watcher)
        run = await client.send_message(QUESTION)
        events = []
        async for event in run:
            events.append(event)
            if event.type == "agent_started":
                # Away until the run is over, so the resume has the whole answer to merge;
                # the merged delta's id skips, and the client must still release it and the end.
                proxy.status = 503
                proxy.drop_all()
                await recv_until(watcher, "agent_completed")
                proxy.status = None
        await assert_one_resumed_run(server, run, events)
        assert client.reconnects == 1
    assert [(e.type, e.event_id) for e in events][-2:] == [
        ("agent_text_delta", 7),
        ("agent_completed", 8),
    ]
    assert events[-2].payload["offset"] == 0
    assert events[-2].payload["text"] == ANSWER


async def test_1012_from_a_draining_server_reconnects_at_once() -> None:
    attempts, record = recorder()
    # A backoff would wait up to 60 s: only an immediate reconnection passes in time.
    slow_backoff = ReconnectPolicy(base_s=60.0, cap_s=60.0)
    async with (
        drainable_server() as first,
        running_server() as second,
        tcp_proxy(("127.0.0.1", first.port)) as balancer,
    ):
        client = Client(
            balancer.ws_url, first.token("alice"), policy=slow_backoff, on_reconnect=record
        )
        await client.connect()
        before = client.connection_id
        balancer.upstream = ("127.0.0.1", second.port)
        await first.drain()
        pong = await ping_through_reconnection(client)
        after = client.connection_id
        await client.close()
    assert "id" in pong
    assert after != before
    assert [(a.attempt, a.delay_s, a.retry) for a in attempts] == [(0, 0.0, Retry.NOW)]
    cause = attempts[0].cause
    assert isinstance(cause, ServerClosed)
    assert (cause.code, cause.slug) == (1012, "service_restart")


async def test_1013_backs_off_until_the_attempts_run_out() -> None:
    attempts, record = recorder()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(user_claims("alice"), key, algorithm="RS256")
    jwks_down = f"http://127.0.0.1:{closed_port()}/jwks.json"
    async with running_server(jwt_algorithms="HS256,RS256", jwks_url=jwks_down) as server:
        client = Client(
            server.ws_url, token, policy=fast_policy(max_attempts=2), on_reconnect=record
        )
        with pytest.raises(ReconnectFailed) as caught:
            await client.connect()
        assert closes(server) == {"1013": 3}
    assert caught.value.attempts == 2
    assert caught.value.code == 1013
    last = caught.value.last_error
    assert isinstance(last, ServerClosed)
    assert last.slug == "try_again_later"
    assert [(a.attempt, a.retry) for a in attempts] == [(0, Retry.BACKOFF), (1, Retry.BACKOFF)]
    assert all(0 < a.delay_s <= 0.05 for a in attempts)


async def test_1011_backs_off_and_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(chatgate.store.base._BACKENDS, "buggy", Backend("faults:BuggyStore"))
    attempts, record = recorder()
    async with (
        running_server(database_url="buggy://") as server,
        Client(
            server.ws_url, server.token("alice"), policy=fast_policy(), on_reconnect=record
        ) as client,
    ):
        with pytest.raises(MessageNotConfirmed) as unconfirmed:
            await client.send_message(QUESTION)
        await ping_through_reconnection(client)
    cause = unconfirmed.value.cause
    assert isinstance(cause, ServerClosed)
    assert (cause.code, cause.slug) == (1011, "internal_error")
    assert cause.detail.startswith("cid=")
    assert [(a.retry, a.cause) for a in attempts] == [(Retry.BACKOFF, cause)]
    assert client.reconnects == 1


async def test_an_expired_token_is_replaced_by_the_provider_once() -> None:
    attempts, record = recorder()
    async with running_server() as server:
        tokens = iter([server.token("alice", ttl_s=-60), server.token("alice")])
        calls = 0

        async def provider() -> str:
            nonlocal calls
            calls += 1
            return next(tokens)

        async with Client(server.ws_url, token_provider=provider, on_reconnect=record) as client:
            assert client.established["user_id"] == "alice"
        assert closes(server)["4004"] == 1
    assert calls == 2
    assert [(a.delay_s, a.retry) for a in attempts] == [(0.0, Retry.NOW)]


async def test_without_a_provider_an_expired_token_raises_auth_expired() -> None:
    async with running_server() as server:
        client = Client(server.ws_url, server.token("alice", ttl_s=-60))
        with pytest.raises(ServerClosed) as caught:
            await client.connect()
    assert (caught.value.code, caught.value.slug) == (4004, "auth_expired")


async def test_token_expiring_is_answered_with_a_refresh_from_the_provider() -> None:
    # Every token warns half a second after it is presented; a refresh that the
    # server accepts re-arms the warning, so a third call proves the second worked.
    async with running_server(token_expiry_warning_s=3599.5) as server:
        calls: list[float] = []
        third_call = asyncio.Event()

        async def provider() -> str:
            calls.append(time.monotonic())
            if len(calls) == 3:
                third_call.set()
            return server.token("alice", ttl_s=3600)

        async with Client(server.ws_url, token_provider=provider) as client:
            first_connection = client.connection_id
            await asyncio.wait_for(third_call.wait(), 10)
            await client.ping()
            assert client.connection_id == first_connection
        assert "4004" not in closes(server)
        assert "4003" not in closes(server)
    assert client.reconnects == 0
