"""Reports: counts, the summary line, exit codes, JSON, and no secret anywhere."""

from __future__ import annotations

import io
import json
from pathlib import Path

from chatgate.probe.console import Console
from chatgate.probe.outcome import Result, Status, fail
from chatgate.probe.report import EXIT_FAILED, EXIT_OK, Report, Scrubber, print_report, save_json

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
KEY = "e2e-key-that-must-never-be-printed-0123456789"


def report(*statuses: Status) -> Report:
    built = Report("check", "ws://h/ws")
    for n, status in enumerate(statuses, 1):
        failure = fail("auth_invalid", "closed 4003").failure if status is Status.FAIL else None
        built.results.append(Result(f"P1-{n:02d}", f"c{n}", status, "", 1.0, failure))
    return built


def test_the_summary_line() -> None:
    assert report(Status.PASS, Status.PASS).summary() == "2 passed, 0 failed"
    assert (
        report(Status.PASS, Status.FAIL, Status.SKIP).summary() == "1 passed, 1 failed, 1 skipped"
    )
    assert report().summary() == "0 passed, 0 failed"


def test_exit_codes() -> None:
    assert report(Status.PASS, Status.SKIP).exit_code == EXIT_OK == 0
    assert report(Status.PASS, Status.FAIL).exit_code == EXIT_FAILED == 1


def test_the_last_printed_line_is_the_summary() -> None:
    out = io.StringIO()
    print_report(report(Status.PASS, Status.FAIL), Console(out), Scrubber([]))
    lines = out.getvalue().splitlines()
    assert lines[0] == "chatgate check ws://h/ws"
    assert lines[1].startswith("✓ PASS P1-01")
    assert lines[2].startswith("✗ FAIL P1-02")
    assert lines[3].strip().startswith("what happened: closed 4003")
    assert lines[-1] == "1 passed, 1 failed"


def test_secrets_are_scrubbed_from_text_and_json(tmp_path: Path) -> None:
    leaky = report(Status.FAIL)
    leaky.results[0].summary = f"the server echoed {TOKEN} and {KEY}"
    leaky.results[0].details = {"nested": [f"Bearer {TOKEN}"], KEY: 1}
    scrubber = Scrubber([KEY])
    out = io.StringIO()
    print_report(leaky, Console(out), scrubber)
    path = tmp_path / "r.json"
    save_json(leaky, path, scrubber)
    for text in (out.getvalue(), path.read_text()):
        assert TOKEN not in text
        assert KEY not in text
        assert "[redacted]" in text


def test_the_json_report_shape(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    save_json(report(Status.PASS, Status.FAIL), path, Scrubber([]))
    data = json.loads(path.read_text())
    assert data["tool"] == "chatgate check"
    assert (data["passed"], data["failed"], data["skipped"]) == (1, 1, 0)
    assert data["exit_code"] == 1
    assert data["cause"] == "auth_invalid"
    assert data["checks"][1]["failure"]["likely_cause"]
    assert data["checks"][1]["failure"]["next_step"]
