"""The benchmark harness's own smoke test: it starts, measures, and stops all it started.

No figure is compared with another (the machine is noisy): the test only holds
the harness to measuring something on each server and leaving no process behind.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
SERVERS = ("chatgate", "picows")
STORES = ("chatgate", "chatgate-sqlite", "chatgate-pg-redis")
SCENARIO_FIGURES = (
    "handshakes",
    "handshakes_client_cpu",
    "handshakes_server_cpu",
    "echo",
    "chat8",
    "chat8_completed_p50",
    "stream",
)
SERVER_SCHEMA = re.compile(r"bench_\d+_[0-9a-f]{8}")
"""The schema ``bench/processes.py`` gives each PostgreSQL-backed server."""


def _server_schemas() -> set[str]:
    async def names() -> set[str]:
        conn = await asyncpg.connect(PG_URL)
        try:
            rows = await conn.fetch("SELECT nspname FROM pg_namespace")
        finally:
            await conn.close()
        return {row["nspname"] for row in rows if SERVER_SCHEMA.fullmatch(row["nspname"])}

    return asyncio.run(names())


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _bench(module: str, *arguments: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bench.<module> ARGUMENTS`` from the repository; assert it succeeded."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.integration
def test_smoke_run_measures_every_scenario_and_stops_every_process(tmp_path: Path) -> None:
    figures = tmp_path / "smoke.json"
    schemas_before = _server_schemas()
    stores = ",".join(STORES)
    done = _bench("run", "--mode", "smoke", "--stores", stores, "--json", str(figures), timeout=180)
    result = json.loads(figures.read_text())

    (run,) = result["runs"]
    for server in SERVERS:
        for figure in SCENARIO_FIGURES:
            assert run[server][figure] > 0, (server, figure)
        assert run[server]["idle20_held"] == 20
        assert run[server]["idle20_kb"] > 0
    # Turns in one thread per socket: chatgate only (an error frame, such as a
    # thread not found, would be a note).
    assert run["chatgate"]["thread8"] > 0
    assert "thread8" not in run["picows"]
    for store in STORES:
        assert run[store]["deltas"] > 0, store
        assert run[store]["resume_ms"] > 0, store
        # 2,000 deltas of "w<i> " fit in one merged frame; with agent_started,
        # agent_completed and resume_complete that is four frames.
        assert run[store]["resume_delta_frames"] == 1, store
        assert run[store]["resume_frames"] == 4, store
        assert 0 < run[store]["latency_p50"] <= run[store]["latency_p90"], store
        assert run[store]["latency_turns"] > 0, store
    assert result["notes"] == []
    assert "| chatgate | picows | chatgate / picows |" in done.stdout
    streamed_header = (
        "| chatgate | chatgate, SQLite store | chatgate, PostgreSQL store + Redis broker "
        "| chatgate, SQLite store / chatgate "
        "| chatgate, PostgreSQL store + Redis broker / chatgate |"
    )
    assert streamed_header in done.stdout
    assert "| one socket, idle server: p50 turn with SQLite ≤ 2 ms |" in done.stdout

    # One server per scenario and server (5 x 2, and 3 x 3 on the stores), and a generator.
    assert len(result["pids"]) >= 20
    assert [pid for pid in result["pids"] if _running(pid)] == []
    # Each PostgreSQL-backed server's schema is dropped when it stops.
    assert _server_schemas() - schemas_before == set()


def test_instruction_counts_are_measured_for_each_server() -> None:
    # Counted by callgrind, so the figures are not noisy; the test still only
    # holds the tool to counting something for each server, in order.
    done = _bench(
        "instructions", "--op", "chat", "--servers", "chatgate,uvicorn", "--count", "3", timeout=600
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "chat: 3 operations, one after the other, per server"
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == ["chatgate", "uvicorn"]
    per_op = [int(row[1].replace(",", "")) for row in rows]
    assert all(count > 10_000 for count in per_op), lines
    assert rows[0][3] == "1.000x"
