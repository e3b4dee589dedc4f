"""Reports of the probe and the checks: results, counts, exit code, text and JSON.

No token or key ever reaches a report: every string is scrubbed of the
run's secrets and of anything shaped like a JWT before it is printed or saved.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatgate import __version__
from chatgate.probe.console import Console
from chatgate.probe.outcome import Result, Status

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

REDACTED = "[redacted]"
_JWT_SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class Scrubber:
    """Removes the run's secrets, and anything shaped like a JWT, from text."""

    def __init__(self, secrets: list[str]) -> None:
        # Longest first, so a secret that contains another is removed whole.
        self._secrets = sorted((s for s in secrets if s), key=len, reverse=True)

    def text(self, value: str) -> str:
        """``value`` without secrets."""
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        return _JWT_SHAPED.sub(REDACTED, value)

    def data(self, value: Any) -> Any:
        """A JSON-like value with every string scrubbed."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


@dataclass(slots=True)
class Report:
    """Every result of one run of the probe (``kind="scenario"``) or the checks (``"check"``)."""

    kind: str
    url: str
    results: list[Result] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    _started: float = field(default_factory=time.monotonic, repr=False)
    duration_ms: float = 0.0

    def finish(self) -> None:
        """Stamp the run's duration."""
        self.duration_ms = (time.monotonic() - self._started) * 1000

    def count(self, status: Status) -> int:
        """How many results have ``status``."""
        return sum(1 for result in self.results if result.status is status)

    @property
    def exit_code(self) -> int:
        """1 when any failure was reproduced, else 0."""
        return EXIT_FAILED if self.count(Status.FAIL) else EXIT_OK

    @property
    def cause(self) -> str | None:
        """The cause of the first failure."""
        for result in self.results:
            if result.failure is not None:
                return result.failure.cause
        return None

    def summary(self) -> str:
        """``N passed, M failed``, with ``, K skipped`` when any was skipped."""
        line = f"{self.count(Status.PASS)} passed, {self.count(Status.FAIL)} failed"
        skipped = self.count(Status.SKIP)
        return f"{line}, {skipped} skipped" if skipped else line

    def to_json(self) -> dict[str, Any]:
        """The report as the ``--json`` file holds it."""
        return {
            "tool": f"chatgate {'probe' if self.kind == 'scenario' else 'check'}",
            "version": __version__,
            "url": self.url,
            "started_at": self.started_at,
            "duration_ms": round(self.duration_ms, 1),
            "exit_code": self.exit_code,
            "passed": self.count(Status.PASS),
            "failed": self.count(Status.FAIL),
            "skipped": self.count(Status.SKIP),
            "summary": self.summary(),
            "cause": self.cause,
            f"{self.kind}s": [result.to_json() for result in self.results],
        }


def save_json(report: Report, path: Path, scrubber: Scrubber) -> None:
    """Write the JSON report to ``path`` (``-`` is not special: it is a file name)."""
    path.write_text(json.dumps(scrubber.data(report.to_json()), indent=2) + "\n", encoding="utf-8")


def _failure_lines(result: Result, indent: str) -> list[str]:
    failure = result.failure
    if failure is None:
        return []
    lines = [
        f"{indent}what happened: {failure.what}",
        f"{indent}likely cause:  {failure.likely}",
        f"{indent}next step:     {failure.next_step}",
    ]
    if failure.body:
        lines.append(f"{indent}body:          {failure.body[:120]!r}")
    return lines


def print_report(report: Report, console: Console, scrubber: Scrubber) -> None:
    """Print one line per result, the diagnosis under each failure, then the summary line."""
    tool = "probe" if report.kind == "scenario" else "check"
    console.line(scrubber.text(f"chatgate {tool} {report.url}"))
    width = max((len(r.name) for r in report.results), default=0)
    for result in report.results:
        mark = console.mark(result.status)
        label = result.status.value.upper()
        head = f"{mark} {label} {result.id} {result.name.ljust(width)}"
        summary = result.summary or (result.failure.cause if result.failure else "")
        console.line(scrubber.text(f"{head}  {summary}".rstrip()))
        if result.connection_ids:
            indent = " " * (len(mark) + 1 + 4)
            console.line(f"{indent}connection:    {', '.join(result.connection_ids)}")
        for line in _failure_lines(result, " " * (len(mark) + 1 + 4)):
            console.line(scrubber.text(line))
    if report.kind == "scenario" and report.cause is not None:
        console.line(f"first failure: {report.cause}")
    console.line(report.summary())
