"""``chatgate probe`` against real servers: a healthy one passes, each induced fault is named.

Every fault test asserts the exit code 1 and the cause in the JSON report,
and the close code or HTTP status that shows it.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from chatgate.probe.commands import Options, probe_async

from databases import postgres_schema
from faults import (
    StallingAgent,
    agent_of,
    closed_port,
    drainable_server,
    silent_listener,
    tcp_proxy,
)
from support import DEMO_RUN, E2E_KEY, running_server

OTHER_SECRET = "another-secret-0123456789abcdef-012345"


async def probe(tmp_path: Path, url: str, **options: Any) -> tuple[int, dict[str, Any], str]:
    """Run the probe in this event loop; return the exit code, the JSON report and the text."""
    out = io.StringIO()
    path = tmp_path / "probe.json"
    options.setdefault("timeout", 5.0)
    code = await probe_async(Options(url=url, json_path=path, **options), out, io.StringIO())
    return code, json.loads(path.read_text()), out.getvalue()


def scenario(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["scenarios"] if s["name"] == name)


def failure(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = scenario(report, name)
    assert found["status"] == "fail", found
    return found["failure"]


async def test_a_healthy_server_passes_all_five_scenarios(tmp_path: Path) -> None:
    async with running_server(e2e_oauth_simulation_key=E2E_KEY) as server:
        code, report, text = await probe(tmp_path, server.ws_url, e2e_key=E2E_KEY)
    assert code == 0, text
    assert [s["name"] for s in report["scenarios"]] == [
        "connection",
        "authentication",
        "e2e_detection",
        "chat_round_trip",
        "resume",
    ]
    assert [s["status"] for s in report["scenarios"]] == ["pass"] * 5
    assert report["summary"] == "5 passed, 0 failed"
    assert report["cause"] is None
    assert scenario(report, "connection")["details"]["subprotocol"] == "chatgate.v1"
    assert scenario(report, "e2e_detection")["details"] == {
        "tier": "development",
        "enabled": True,
        "test_token_accepted": True,
    }
    assert scenario(report, "chat_round_trip")["details"]["events"] == DEMO_RUN
    # Left after agent_started: the rest of the run, each event once, the deltas maybe merged.
    resumed = scenario(report, "resume")["details"]
    assert resumed["after_event_id"] == 1
    ids = resumed["event_ids"]
    assert ids == sorted(set(ids)), ids
    assert ids[:3] == [2, 3, 4], ids
    assert ids[-1] == len(DEMO_RUN), ids
    assert text.splitlines()[-1] == "5 passed, 0 failed"


async def test_a_user_token_passes_and_never_appears_in_the_report(tmp_path: Path) -> None:
    async with running_server() as server:
        token = server.token("alice")
        code, report, text = await probe(tmp_path, server.ws_url, token=token)
    assert code == 0, text
    assert scenario(report, "authentication")["details"]["user_id"] == "alice"
    assert scenario(report, "e2e_detection")["status"] == "pass"
    dumped = json.dumps(report)
    assert token not in dumped
    assert token not in text


async def test_without_a_credential_the_socket_scenarios_skip_and_say_why(tmp_path: Path) -> None:
    async with running_server() as server:
        code, report, text = await probe(tmp_path, server.ws_url)
    assert code == 0, text
    statuses = {s["name"]: s["status"] for s in report["scenarios"]}
    assert statuses == {
        "connection": "pass",
        "authentication": "skip",
        "e2e_detection": "pass",
        "chat_round_trip": "skip",
        "resume": "skip",
    }
    assert "--token" in scenario(report, "authentication")["summary"]
    assert report["summary"] == "2 passed, 0 failed, 3 skipped"


# The fault matrix.


async def test_wrong_jwt_secret_is_auth_invalid(tmp_path: Path) -> None:
    async with running_server(jwt_secret=OTHER_SECRET) as server:
        code, report, _ = await probe(tmp_path, server.ws_url, token=server.token("alice"))
    assert code == 1
    assert report["cause"] == "auth_invalid"
    found = failure(report, "authentication")
    assert (found["code"], found["slug"]) == (4003, "auth_invalid")
    assert "bad signature" in found["reason"]
    assert "CHATGATE_JWT_SECRET" in found["likely_cause"]


async def test_e2e_disabled_by_the_rollback_flag_is_e2e_not_enabled(tmp_path: Path) -> None:
    async with running_server(
        environment="staging",
        disable_enhanced_e2e_detection=True,
        e2e_oauth_simulation_key=E2E_KEY,
    ) as server:
        code, report, _ = await probe(tmp_path, server.ws_url, e2e_key=E2E_KEY)
    assert code == 1
    assert report["cause"] == "e2e_not_enabled"
    found = failure(report, "authentication")
    assert (found["code"], found["slug"]) == (4005, "e2e_not_enabled")
    assert "DISABLE_ENHANCED_E2E_DETECTION" in found["likely_cause"]
    # The E2E scenario explains it: the server says E2E is off, and it refuses test tokens.
    e2e = scenario(report, "e2e_detection")
    assert e2e["status"] == "pass"
    assert e2e["details"] == {"tier": "staging", "enabled": False, "test_token_accepted": False}


async def test_a_denied_origin_is_origin_denied(tmp_path: Path) -> None:
    async with running_server(allowed_origins="https://app.example.com") as server:
        code, report, _ = await probe(
            tmp_path, server.ws_url, token=server.token("alice"), origin="https://evil.example"
        )
    assert code == 1
    assert report["cause"] == "origin_denied"
    found = failure(report, "authentication")
    assert (found["code"], found["slug"]) == (4006, "origin_denied")


async def test_an_agent_that_raises_is_agent_failed(tmp_path: Path) -> None:
    async with running_server(agent="agents_for_tests:Boom") as server:
        code, report, _ = await probe(tmp_path, server.ws_url, token=server.token("alice"))
    assert code == 1
    assert report["cause"] == "agent_failed"
    found = failure(report, "chat_round_trip")
    assert "correlation_id" in found["what"]
    assert found["code"] is None


async def test_a_draining_server_is_service_restart(tmp_path: Path) -> None:
    async with drainable_server(agent="faults:StallingAgent") as server:
        agent = agent_of(server)
        assert isinstance(agent, StallingAgent)
        running = asyncio.create_task(probe(tmp_path, server.ws_url, token=server.token("alice")))
        await agent.started.wait()
        await server.drain()
        code, report, _ = await running
    assert code == 1
    assert report["cause"] == "service_restart"
    found = failure(report, "chat_round_trip")
    assert (found["code"], found["slug"]) == (1012, "service_restart")
    assert failure(report, "resume")["cause"] == "connection_refused"


@pytest.mark.integration
async def test_a_store_that_went_down_is_store_unavailable(tmp_path: Path) -> None:
    async with (
        postgres_schema() as url,
        tcp_proxy(("127.0.0.1", 5432)) as database,
    ):
        through_proxy = url.replace("127.0.0.1:5432", f"127.0.0.1:{database.port}")
        async with running_server(database_url=through_proxy) as server:
            async with server.http() as http:
                assert (await http.get("/readyz")).status_code == 200
            await database.cut()
            code, report, _ = await probe(tmp_path, server.ws_url, token=server.token("alice"))
    assert code == 1
    assert report["cause"] == "store_unavailable"
    failed = [s for s in report["scenarios"] if s["status"] == "fail"]
    assert failed[0]["failure"]["code"] == 1013
    assert failed[0]["failure"]["slug"] == "try_again_later"
    assert "/readyz names store" in failed[0]["failure"]["what"]


async def test_a_wrong_path_is_named(tmp_path: Path) -> None:
    async with running_server() as server:
        url = f"ws://127.0.0.1:{server.port}/socket"
        code, report, _ = await probe(tmp_path, url, token=server.token("alice"))
    assert code == 1
    assert report["cause"] == "wrong_path"
    found = failure(report, "connection")
    assert found["http_status"] in {403, 404}
    assert "/ws" in found["likely_cause"]


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (400, "http_400"),
        (403, "http_403"),
        (404, "wrong_path"),
        (426, "http_426"),
        (502, "http_502"),
        (503, "http_503"),
    ],
)
async def test_a_proxy_refusing_the_upgrade_is_named_with_its_headers(
    tmp_path: Path, status: int, cause: str
) -> None:
    async with (
        running_server() as server,
        tcp_proxy(("127.0.0.1", server.port), status=status) as proxy,
    ):
        code, report, text = await probe(tmp_path, proxy.ws_url, token=server.token("alice"))
    assert code == 1
    assert report["cause"] == cause
    found = failure(report, "connection")
    assert found["http_status"] == status
    assert found["headers"]["server"] == "fault-proxy"
    assert "via: 1.1 fault-proxy" in found["what"]
    assert found["body"].startswith("refused by the fault proxy")
    assert [s["status"] for s in report["scenarios"][1:]] == ["skip"] * 4
    assert f"HTTP {status}" in text


async def test_a_proxy_that_drops_the_connection_is_a_timed_1006(tmp_path: Path) -> None:
    async with (
        running_server(demo_delay_ms=400) as server,
        tcp_proxy(("127.0.0.1", server.port), drop_after_s=0.6) as proxy,
    ):
        code, report, _ = await probe(tmp_path, proxy.ws_url, token=server.token("alice"))
    assert code == 1
    assert report["cause"] == "abnormal_closure"
    found = failure(report, "chat_round_trip")
    assert found["code"] == 1006
    assert found["slug"] is None
    assert found["elapsed_s"] > 0
    assert found["idle_s"] >= 0
    assert "without a close frame (1006)" in found["what"]
    assert "after the upgrade" in found["what"]


async def test_connection_refused(tmp_path: Path) -> None:
    code, report, _ = await probe(tmp_path, f"ws://127.0.0.1:{closed_port()}/ws", token="x")
    assert code == 1
    assert report["cause"] == "connection_refused"
    assert failure(report, "connection")["cause"] == "connection_refused"


async def test_dns_failure(tmp_path: Path) -> None:
    code, report, _ = await probe(tmp_path, "ws://chatgate-probe.invalid/ws", token="x")
    assert code == 1
    assert report["cause"] == "dns_failure"
    assert "chatgate-probe.invalid" in failure(report, "connection")["what"]


async def test_tls_against_a_plain_port(tmp_path: Path) -> None:
    async with running_server() as server:
        code, report, _ = await probe(tmp_path, f"wss://127.0.0.1:{server.port}/ws", token="x")
    assert code == 1
    assert report["cause"] == "tls_error"


async def test_a_server_that_never_answers_is_a_timeout(tmp_path: Path) -> None:
    async with silent_listener() as port:
        code, report, _ = await probe(tmp_path, f"ws://127.0.0.1:{port}/ws", timeout=0.5)
    assert code == 1
    assert report["cause"] == "timeout"
    assert "timeout" in failure(report, "connection")["what"]


async def test_a_proxy_stripping_authorization_is_the_auth_timeout(tmp_path: Path) -> None:
    async with (
        running_server(auth_timeout_s=0.3) as server,
        tcp_proxy(("127.0.0.1", server.port), strip_header="authorization") as proxy,
    ):
        code, report, _ = await probe(tmp_path, proxy.ws_url, token=server.token("alice"))
    assert code == 1
    assert report["cause"] == "auth_required"
    found = failure(report, "authentication")
    assert (found["code"], found["slug"]) == (4001, "auth_required")
    assert "no credential within" in found["reason"]
    assert "strip" in found["likely_cause"]


async def test_an_expired_token_is_auth_expired(tmp_path: Path) -> None:
    async with running_server() as server:
        token = server.token("alice", ttl_s=-60)
        code, report, _ = await probe(tmp_path, server.ws_url, token=token)
    assert code == 1
    assert report["cause"] == "auth_expired"
    assert failure(report, "authentication")["code"] == 4004


async def test_a_user_at_the_connection_limit_is_connection_limit(tmp_path: Path) -> None:
    async with running_server(max_connections_per_user=1) as server:
        token = server.token("alice")
        async with server.connect(token) as held:
            await held.recv()
            code, report, _ = await probe(tmp_path, server.ws_url, token=token)
    assert code == 1
    assert report["cause"] == "connection_limit"
    assert failure(report, "authentication")["code"] == 4010


async def test_a_wrong_e2e_key_is_named_by_the_e2e_scenario(tmp_path: Path) -> None:
    wrong_key = "not-the-server-key-0123456789abcdef-0123"
    async with running_server(e2e_oauth_simulation_key=E2E_KEY) as server:
        code, report, _ = await probe(tmp_path, server.ws_url, e2e_key=wrong_key)
    assert code == 1
    assert failure(report, "authentication")["cause"] == "auth_invalid"
    found = failure(report, "e2e_detection")
    assert found["cause"] == "e2e_key_mismatch"
    assert found["code"] == 4003
    assert wrong_key not in json.dumps(report)
