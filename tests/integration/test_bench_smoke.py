"""The benchmark harness's own smoke test: it starts, measures, and stops all it started.

No figure is compared with another (the machine is noisy): the test only holds
the harness to measuring something on each server and leaving no process behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
SERVERS = ("chatgate", "picows")
STORES = ("chatgate", "chatgate-sqlite")
SCENARIO_FIGURES = ("handshakes", "echo", "chat8", "chat8_completed_p50", "stream")


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


def test_smoke_run_measures_every_scenario_and_stops_every_process(tmp_path: Path) -> None:
    figures = tmp_path / "smoke.json"
    done = _bench("run", "--mode", "smoke", "--json", str(figures), timeout=120)
    result = json.loads(figures.read_text())

    (run,) = result["runs"]
    for server in SERVERS:
        for figure in SCENARIO_FIGURES:
            assert run[server][figure] > 0, (server, figure)
        assert run[server]["idle20_held"] == 20
        assert run[server]["idle20_kb"] > 0
    for store in STORES:
        assert run[store]["deltas"] > 0, store
        assert run[store]["resume_ms"] > 0, store
        # 2,000 deltas of "w<i> " fit in one merged frame; with agent_started,
        # agent_completed and resume_complete that is four frames.
        assert run[store]["resume_delta_frames"] == 1, store
        assert run[store]["resume_frames"] == 4, store
    assert result["notes"] == []
    assert "| chatgate | picows | chatgate / picows |" in done.stdout
    assert "| chatgate | chatgate, SQLite store | chatgate, SQLite store / chatgate |" in (
        done.stdout
    )

    # One server per scenario and server (5 x 2, and 2 x 2 streamed), and a generator.
    assert len(result["pids"]) >= 15
    assert [pid for pid in result["pids"] if _running(pid)] == []


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
