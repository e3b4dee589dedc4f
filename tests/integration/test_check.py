"""``chatgate check`` against real servers: in process, and as the command operators run."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path
from typing import Any

from chatgate.probe.budgets import Budgets
from chatgate.probe.checks import CHECKS
from chatgate.probe.commands import Options, check_async

from processes import CHATGATE, base_env
from support import E2E_KEY, running_server

OTHER_SECRET = "another-secret-0123456789abcdef-012345"
ALL_IDS = [f"P1-{n:02d}" for n in range(1, 23)]


async def check(
    tmp_path: Path,
    url: str,
    only: str | None = None,
    budgets: Budgets | None = None,
    **options: Any,
) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    path = tmp_path / "check.json"
    options.setdefault("timeout", 5.0)
    code = await check_async(Options(url=url, json_path=path, **options), only, budgets, out, err)
    return code, json.loads(path.read_text()), out.getvalue()


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


async def test_a_healthy_server_passes_all_22_checks_with_an_e2e_key(tmp_path: Path) -> None:
    async with running_server(e2e_oauth_simulation_key=E2E_KEY, auth_timeout_s=0.5) as server:
        code, report, text = await check(tmp_path, server.ws_url, e2e_key=E2E_KEY)
    failed = {c["id"]: c["failure"] for c in report["checks"] if c["status"] != "pass"}
    assert failed == {}, text
    assert code == 0
    assert [c["id"] for c in report["checks"]] == ALL_IDS
    assert text.splitlines()[-1] == "22 passed, 0 failed"
    assert report["summary"] == "22 passed, 0 failed"


async def test_without_credentials_the_checks_that_need_them_skip_and_say_why(
    tmp_path: Path,
) -> None:
    async with running_server(auth_timeout_s=0.5) as server:
        code, report, text = await check(tmp_path, server.ws_url)
    assert code == 0, text
    ran = {key: value for key, value in statuses(report).items() if value != "skip"}
    assert ran == {"P1-01": "pass", "P1-02": "pass", "P1-06": "pass", "P1-07": "pass"}
    by_id = {c["id"]: c for c in report["checks"]}
    assert "needs --e2e-key" in by_id["P1-16"]["summary"]
    assert "needs a credential" in by_id["P1-12"]["summary"]
    # Where E2E mode is on, proving a test token is accepted takes the key.
    assert "needs --e2e-key" in by_id["P1-09"]["summary"]
    assert text.splitlines()[-1] == "4 passed, 0 failed, 18 skipped"


async def test_a_user_token_runs_the_single_user_checks(tmp_path: Path) -> None:
    async with running_server(auth_timeout_s=0.5) as server:
        only = "auth_header,auth_subprotocol,auth_message,P1-12,P1-16,P1-20,P1-21"
        code, report, text = await check(tmp_path, server.ws_url, only, token=server.token("bob"))
    assert code == 0, text
    assert statuses(report) == {
        "P1-03": "pass",
        "P1-04": "pass",
        "P1-05": "pass",
        "P1-12": "pass",
        "P1-16": "skip",
        "P1-20": "pass",
        "P1-21": "pass",
    }
    assert text.splitlines()[-1] == "6 passed, 0 failed, 1 skipped"


async def test_e2e_off_is_checked_without_a_key(tmp_path: Path) -> None:
    async with running_server(
        environment="staging", disable_enhanced_e2e_detection=True, auth_timeout_s=0.5
    ) as server:
        code, report, text = await check(tmp_path, server.ws_url, "e2e_policy")
    assert code == 0, text
    assert report["checks"][0]["summary"].startswith("staging, E2E off")
    assert "e2e_not_enabled" in report["checks"][0]["summary"]


async def test_failures_are_diagnosed_and_counted(tmp_path: Path) -> None:
    async with running_server(jwt_secret=OTHER_SECRET, auth_timeout_s=0.5) as server:
        code, report, text = await check(
            tmp_path, server.ws_url, "P1-03,auth_missing", token=server.token("alice")
        )
    assert code == 1
    assert statuses(report) == {"P1-03": "fail", "P1-06": "pass"}
    failure = report["checks"][0]["failure"]
    assert (failure["cause"], failure["code"], failure["slug"]) == (
        "auth_invalid",
        4003,
        "auth_invalid",
    )
    lines = text.splitlines()
    assert any(line.strip().startswith("likely cause:") for line in lines)
    assert lines[-1] == "1 passed, 1 failed"
    assert report["cause"] == "auth_invalid"


async def test_the_latency_budget_is_configurable(tmp_path: Path) -> None:
    tiny = Budgets(started_ms=0.0, completed_ms=0.0, round_trips=3)
    async with running_server() as server:
        code, report, _ = await check(
            tmp_path, server.ws_url, "latency", tiny, token=server.token("carol")
        )
    assert code == 1
    failure = report["checks"][0]["failure"]
    assert failure["cause"] == "too_slow"
    assert "budgets 0 / 0 ms" in failure["what"]


async def test_an_unknown_check_is_a_usage_error(tmp_path: Path) -> None:
    err = io.StringIO()
    code = await check_async(Options(url="ws://127.0.0.1:1/ws"), "P1-99", None, io.StringIO(), err)
    assert code == 2
    assert "P1-99" in err.getvalue()
    assert not (tmp_path / "check.json").exists()


def test_the_table_has_22_checks_with_unique_names() -> None:
    assert [c.id for c in CHECKS] == ALL_IDS
    assert len({c.name for c in CHECKS}) == 22


async def run_cli(*args: str, encoding: str = "utf-8") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        CHATGATE,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=base_env(PYTHONIOENCODING=encoding),
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(encoding), stderr.decode(encoding)


async def test_the_command_on_a_legacy_code_page_prints_ascii(tmp_path: Path) -> None:
    report = tmp_path / "check.json"
    async with running_server(e2e_oauth_simulation_key=E2E_KEY) as server:
        code, out, err = await run_cli(
            "check",
            server.ws_url,
            "--e2e-key",
            E2E_KEY,
            "--only",
            "health,handshake,agent_events,concurrency",
            "--json",
            str(report),
            encoding="cp1252",
        )
    assert code == 0, out + err
    assert out.isascii(), out
    assert out.splitlines()[-1] == "4 passed, 0 failed"
    assert "PASS P1-12 agent_events" in out
    assert E2E_KEY not in out + report.read_text()
    assert json.loads(report.read_text())["passed"] == 4


async def test_the_probe_command_exits_1_on_a_failure_and_2_on_bad_usage(tmp_path: Path) -> None:
    async with running_server(jwt_secret=OTHER_SECRET) as server:
        token = server.token("alice")
        code, out, _ = await run_cli("probe", server.ws_url, "--token", token, "--ascii")
    assert code == 1
    assert out.isascii()
    assert "closed 4003 auth_invalid" in out
    assert token not in out
    code, _, err = await run_cli("probe", "http://example.com/ws")
    assert code == 2
    assert "ws://" in err
    code, _, _ = await run_cli("check", "--timeout", "-1")
    assert code == 2


def test_the_python_running_the_tests_has_the_command() -> None:
    assert Path(CHATGATE).parent == Path(sys.executable).parent
