"""Operators see everything: /metrics moves by what happened; every connection has a record."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs
from websockets.exceptions import ConnectionClosed

from chatgate.closecodes import CloseCode
from chatgate.probe.commands import Options, probe_async

from databases import postgres_schema
from support import (
    DEMO_RUN,
    RECORD_FIELDS,
    RECV_TIMEOUT_S,
    Server,
    chat,
    established,
    expect_close,
    recv_until,
    running_server,
    send_json,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
ADMIN_TOKEN = "admin-token-0123456789-abcdef"


async def scrape(http: httpx.AsyncClient, **headers: str) -> Samples:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    async with asyncio.timeout(RECV_TIMEOUT_S):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.02)
    pytest.fail(f"{what} did not happen")  # pragma: no cover - the timeout raises first


async def closed_record(http: httpx.AsyncClient, connection_id: str) -> dict[str, Any]:
    """The record of a connection once the server has finished closing it."""

    async def check() -> dict[str, Any] | None:
        response = await http.get(f"/diagnostics/connections/{connection_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["closed_at"] is not None else None

    found: dict[str, Any] = await until(check, f"the close of {connection_id}")
    return found


async def no_socket_open(http: httpx.AsyncClient) -> Samples:
    async def check() -> Samples | None:
        samples = await scrape(http)
        return samples if value(samples, "chatgate_connections_open") == 0 else None

    found: Samples = await until(check, "every socket closed")
    return found


async def one_chat(server: Server, http: httpx.AsyncClient) -> tuple[str, str, int]:
    """Chat once over a header-authenticated socket; return its id, the thread and an event id."""
    async with server.connect(server.token("alice")) as ws:
        hello = await established(ws)
        during = await scrape(http)
        assert value(during, "chatgate_connections_open") == 1
        frames = await chat(ws, "what is 6*7?")
    assert [f["type"] for f in frames] == ["message_ack", *DEMO_RUN]
    return hello["payload"]["connection_id"], frames[0]["thread_id"], frames[1]["event_id"]


async def test_one_chat_one_resume_one_refusal_move_the_counters_by_exactly_that() -> None:
    async with running_server() as server, server.http() as http:
        before = await scrape(http)
        chat_id, thread_id, first_event = await one_chat(server, http)
        token = server.token("alice")
        async with server.connect(subprotocols=["chatgate.v1", f"bearer.{token}"]) as ws:
            resume_id = (await established(ws))["payload"]["connection_id"]
            await send_json(
                ws,
                {"type": "resume", "thread_id": thread_id, "after_event_id": first_event},
            )
            await recv_until(ws, "resume_complete")
        async with server.connect("not-a-token") as ws:
            await expect_close(ws, CloseCode.AUTH_INVALID)
        after = await no_socket_open(http)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("chatgate_connections_total") == 3
        assert moved("chatgate_connections_closed_total", code="1000") == 2
        assert moved("chatgate_connections_closed_total", code="4003") == 1
        assert moved("chatgate_handshake_failures_total", reason="auth_invalid") == 1
        assert {
            o: moved("chatgate_runs_total", outcome=o)
            for o in ("completed", "cancelled", "failed", "interrupted")
        } == {
            "completed": 1,
            "cancelled": 0,
            "failed": 0,
            "interrupted": 0,
        }
        assert moved("chatgate_resumes_total") == 1
        assert moved("chatgate_resume_events_count") == 1
        assert moved("chatgate_text_deltas_total") == DEMO_RUN.count("agent_text_delta")
        assert moved("chatgate_run_first_event_seconds_count") == 1
        assert value(after, "chatgate_runs_in_flight") == 0
        assert value(after, "chatgate_broker_up") == 1
        assert value(after, "chatgate_store_up") == 1
        assert value(after, "process_cpu_seconds_total") > 0

        record = await closed_record(http, chat_id)
        assert set(record) == RECORD_FIELDS
        assert (record["close_code"], record["closed_by"]) == (1000, "client")
        assert (record["user_id"], record["auth_method"], record["runs"]) == ("alice", "header", 1)
        # In: the user_message. Out: connection_established, message_ack, the run.
        assert (record["frames_in"], record["frames_out"]) == (1, 2 + len(DEMO_RUN))
        assert record["remote"].startswith("127.0.0.1:")
        assert record["user_agent"].startswith("Python/")
        assert record["opened_at"] <= record["closed_at"]
        resumed = await closed_record(http, resume_id)
        assert (resumed["auth_method"], resumed["runs"], resumed["frames_in"]) == (
            "subprotocol",
            0,
            1,
        )


async def test_a_server_close_is_recorded_as_the_servers_with_its_reason() -> None:
    async with running_server() as server, server.http() as http:
        async with server.connect() as ws:
            await send_json(ws, {"type": "auth", "token": server.token("alice")})
            connection_id = (await established(ws))["payload"]["connection_id"]
            await send_json(ws, {"type": "token_refresh", "token": server.token("mallory")})
            await expect_close(ws, CloseCode.AUTH_INVALID)
        record = await closed_record(http, connection_id)
    assert (record["close_code"], record["closed_by"]) == (4003, "server")
    assert record["close_reason"] == "auth_invalid: token of another user"
    assert (record["auth_method"], record["user_id"], record["frames_in"]) == (
        "message",
        "alice",
        2,
    )


async def test_a_close_the_protocol_sent_is_the_servers_and_counted() -> None:
    async with running_server(max_message_bytes=1024) as server, server.http() as http:
        before = await scrape(http)
        async with server.connect(server.token("alice")) as ws:
            connection_id = (await established(ws))["payload"]["connection_id"]
            await ws.send("x" * 4096)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
            assert ws.close_code == CloseCode.MESSAGE_TOO_BIG
        record = await closed_record(http, connection_id)
        after = await no_socket_open(http)
    assert (record["close_code"], record["closed_by"]) == (1009, "server")
    assert record["close_reason"].startswith("message_too_big")
    closed = value(after, "chatgate_connections_closed_total", code="1009")
    assert closed - value(before, "chatgate_connections_closed_total", code="1009") == 1


async def test_each_close_is_one_info_line_with_the_record_and_no_token() -> None:
    async with running_server() as server, server.http() as http:
        token = server.token("alice")
        with capture_logs() as logs:
            async with server.connect(token) as ws:
                connection_id = (await established(ws))["payload"]["connection_id"]
            await closed_record(http, connection_id)
    lines = [
        e
        for e in logs
        if e.get("connection_id") == connection_id and e["event"] == "connection closed"
    ]
    assert len(lines) == 1
    assert lines[0]["log_level"] == "info"
    assert set(lines[0]) - {"event", "log_level"} == RECORD_FIELDS
    assert token not in repr(lines[0])


async def test_a_forgotten_connection_is_404() -> None:
    async with running_server(connection_records=1) as server, server.http() as http:
        ids = []
        for _ in range(2):
            async with server.connect(server.token("alice")) as ws:
                ids.append((await established(ws))["payload"]["connection_id"])
            await closed_record(http, ids[-1])
        assert (await http.get(f"/diagnostics/connections/{ids[0]}")).status_code == 404
        assert (await http.get("/diagnostics/connections/conn_nothing")).status_code == 404


async def test_in_production_metrics_and_records_need_the_admin_token() -> None:
    async with (
        running_server(environment="production", admin_token=ADMIN_TOKEN) as server,
        server.http() as http,
    ):
        async with server.connect(server.token("alice")) as ws:
            connection_id = (await established(ws))["payload"]["connection_id"]
        for path in ("/metrics", f"/diagnostics/connections/{connection_id}"):
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                refused = await http.get(path, headers=headers)
                assert refused.status_code == 403, path
                assert "CHATGATE_ADMIN_TOKEN" in refused.json()["detail"]
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        samples = await scrape(http, **admin)
        assert value(samples, "chatgate_connections_total") == 1
        answer = await http.get(f"/diagnostics/connections/{connection_id}", headers=admin)
        assert answer.status_code == 200
        assert answer.json()["connection_id"] == connection_id


@pytest.mark.integration
async def test_a_burst_of_readiness_requests_never_marks_postgresql_down() -> None:
    async with (
        postgres_schema() as url,
        running_server(database_url=url) as server,
        httpx.AsyncClient(
            base_url=server.http_url,
            timeout=60.0,
            limits=httpx.Limits(max_connections=100),
        ) as http,
    ):
        gate = asyncio.Semaphore(100)
        health = server.booted.gateway.health
        probed_before = health.checks_run

        async def ready() -> int:
            async with gate:
                return (await http.get("/readyz")).status_code

        statuses = await asyncio.gather(*(ready() for _ in range(3000)))
        probes = health.checks_run - probed_before
    assert statuses.count(200) == 3000, {s: statuses.count(s) for s in set(statuses)}
    # The answers came from the cached verdict: a probe per request is what
    # made a loaded database look down. The background loop probes every 2 s.
    assert probes < 100, probes


async def run_probe(tmp_path: Path, url: str, **options: Any) -> tuple[dict[str, Any], str]:
    out = io.StringIO()
    path = tmp_path / "probe.json"
    await probe_async(Options(url=url, json_path=path, timeout=5.0, **options), out, io.StringIO())
    return json.loads(path.read_text()), out.getvalue()


def probed(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in report["scenarios"] if s["name"] == name)
    return found


async def test_the_probe_names_each_connection_and_what_the_server_saw(tmp_path: Path) -> None:
    # A send queue too small for a run's events: the round trip ends 4102, closed by the server.
    async with running_server(send_queue_bytes=300) as server:
        report, text = await run_probe(tmp_path, server.ws_url, token=server.token("alice"))
    authenticated = probed(report, "authentication")
    assert authenticated["status"] == "pass"
    assert authenticated["connection_ids"] == [authenticated["details"]["connection_id"]]
    assert f"connection:    {authenticated['connection_ids'][0]}" in text
    failed = probed(report, "chat_round_trip")["failure"]
    assert (failed["code"], failed["slug"]) == (4102, "slow_consumer")
    record = failed["server_record"]
    assert failed["connection_id"] == record["connection_id"]
    assert (record["close_code"], record["closed_by"], record["runs"]) == (4102, "server", 1)
    assert f"the server saw {record['connection_id']} closed 4102" in failed["what"]
    assert "by the server after 1 frames in" in failed["what"]


async def test_in_production_the_probe_needs_the_admin_token_for_the_record(
    tmp_path: Path,
) -> None:
    async with running_server(
        send_queue_bytes=300, environment="production", admin_token=ADMIN_TOKEN
    ) as server:
        token = server.token("alice")
        without, _ = await run_probe(tmp_path, server.ws_url, token=token)
        given, _ = await run_probe(tmp_path, server.ws_url, token=token, admin_token=ADMIN_TOKEN)
    refused = probed(without, "chat_round_trip")["failure"]
    assert refused["server_record"] is None
    assert "needs --admin-token" in refused["what"]
    seen = probed(given, "chat_round_trip")["failure"]["server_record"]
    assert (seen["close_code"], seen["closed_by"]) == (4102, "server")
    assert ADMIN_TOKEN not in json.dumps(given)
