"""The report: medians over runs, ratios within each run, targets, machine and versions."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import psutil

from bench.frames import ANSWER_DELTAS, STREAM_EVENTS
from bench.scenarios import Config, Metrics

BASELINES = ("socketio", "socketio-lean", "uvicorn", "picows")
PERSISTED = ("chatgate-sqlite", "chatgate-postgres", "chatgate-pg-redis")
"""chatgate on a store that persists; shown in their own tables (:mod:`bench.report_stores`)."""
SHOWN = {
    "chatgate": "chatgate",
    "chatgate-sqlite": "chatgate, SQLite store",
    "chatgate-postgres": "chatgate, PostgreSQL store",
    "chatgate-pg-redis": "chatgate, PostgreSQL store + Redis broker",
    "socketio": "python-socketio",
    "socketio-lean": "python-socketio, lean",
    "uvicorn": "bare uvicorn",
    "picows": "picows",
}
_PACKAGES = (
    "chatgate",
    "uvicorn",
    "starlette",
    "websockets",
    "uvloop",
    "httptools",
    "orjson",
    "PyJWT",
    "picows",
    "python-socketio",
    "python-engineio",
    "psutil",
)

Runs = list[dict[str, Metrics]]
"""Per run: server name -> {metric: value}."""


@dataclass(frozen=True, slots=True)
class Row:
    """One metric of the table."""

    key: str
    label: str
    unit: str
    higher_is_better: bool = True


def rows(config: Config) -> list[Row]:
    """The table's rows for a configuration, in reading order."""
    table = [
        Row("handshakes", "handshakes (connect, established, close)", "/s"),
        Row("echo", f"ping round trips, {config.echo_sockets} sockets", "/s"),
    ]
    for n in config.chat_sockets:
        # The demo agent's turn, then beside it the parity turn (the lean server's events).
        for key, label in (
            (f"chat{n}", f"chat round trips, {n} sockets"),
            (f"parity{n}", f"parity round trips (ack + the lean server's 5 events), {n} sockets"),
        ):
            table.append(Row(key, label, "/s"))
            table.extend(
                Row(f"{key}_{edge}_{q}", f"  {q} to agent_{edge}", "ms", higher_is_better=False)
                for edge in ("started", "completed")
                for q in ("p50", "p99")
            )
    table.append(
        Row("stream", f"agent events delivered, {config.stream_sockets} sockets", "events/s")
    )
    for n in config.idle_steps:
        table.append(
            Row(f"idle{n}_kb", f"RSS per idle socket at {n:,}", "KB", higher_is_better=False)
        )
        table.append(Row(f"idle{n}_held", f"  idle sockets held of {n:,}", "sockets"))
    return table


def median_of(runs: Runs, server: str, key: str) -> list[float]:
    """Every run's value of ``key`` on ``server``."""
    return [run[server][key] for run in runs if key in run.get(server, {})]


def ratios_of(runs: Runs, baseline: str, key: str, ours: str = "chatgate") -> list[float]:
    """``ours`` / ``baseline`` for ``key``, computed within each run."""
    found = []
    for run in runs:
        mine, theirs = run.get(ours, {}).get(key), run.get(baseline, {}).get(key)
        if mine is not None and theirs:
            found.append(mine / theirs)
    return found


def fmt(value: float) -> str:
    """A figure for the table: thousands separated, three significant digits below 100."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def cell(values: list[float], ratio: bool = False) -> str:
    """The median, with the run-to-run range when there were several runs."""
    if not values:
        return "n/a"
    shown = (lambda v: f"{v:.2f}x") if ratio else fmt
    middle = shown(statistics.median(values))
    if len(values) == 1:
        return middle
    return f"{middle} ({shown(min(values))}-{shown(max(values))})"


def table(config: Config, runs: Runs) -> str:
    """The markdown table of absolute figures and ratios."""
    servers = [s for s in SHOWN if s in config.servers and s not in PERSISTED]
    baselines = [b for b in BASELINES if b in config.servers]
    pairs = [("chatgate", b) for b in baselines]
    return render(rows(config), runs, servers, pairs)


def streamed_rows(config: Config) -> list[Row]:
    """The rows of the streamed-answer table."""
    return [
        Row(
            "deltas",
            f"agent_text_delta delivered, {config.delta_sockets} sockets, "
            f"answers of {ANSWER_DELTAS} deltas",
            "deltas/s",
        ),
        Row(
            "resume_ms",
            f"resume of a {config.resume_deltas:,}-delta answer, to resume_complete",
            "ms",
            higher_is_better=False,
        ),
        Row(
            "resume_delta_frames",
            "  agent_text_delta frames received",
            "frames",
            higher_is_better=False,
        ),
        Row(
            "resume_frames",
            "  frames received, resume_complete included",
            "frames",
            higher_is_better=False,
        ),
    ]


def streamed(config: Config, runs: Runs) -> str:
    """The streamed-answer scenarios: chatgate on each store, and each store / memory."""
    stores = [s for s in SHOWN if s in config.stores]
    pairs = [(s, "chatgate") for s in stores if s in PERSISTED and "chatgate" in stores]
    return render(streamed_rows(config), runs, stores, pairs)


def lean(config: Config, runs: Runs) -> str:
    """chatgate beside both python-socketio servers, with the three ratios."""
    shown: tuple[str, ...] = ("chatgate", "socketio", "socketio-lean")
    servers = [s for s in shown if s in config.servers]
    compared: tuple[tuple[str, str], ...] = (
        ("chatgate", "socketio"),
        ("chatgate", "socketio-lean"),
        ("socketio-lean", "socketio"),
    )
    pairs = [(ours, theirs) for ours, theirs in compared if {ours, theirs} <= set(servers)]
    return render(rows(config), runs, servers, pairs)


def render(
    table_rows: list[Row], runs: Runs, servers: list[str], pairs: list[tuple[str, str]]
) -> str:
    """A markdown table: a column per server, then a column per (ours, baseline) ratio.

    A row no server has a figure for is left out.
    """
    header = ["metric", "unit", *(SHOWN[s] for s in servers)]
    header += [f"{SHOWN[ours]} / {SHOWN[b]}" for ours, b in pairs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table_rows:
        if not any(median_of(runs, s, row.key) for s in servers):
            continue  # a scenario this run left out (``--only``)
        cells = [row.label.strip() if not row.label.startswith(" ") else "↳ " + row.label.strip()]
        cells.append(row.unit + ("" if row.higher_is_better else " (lower is better)"))
        cells += [cell(median_of(runs, s, row.key)) for s in servers]
        cells += [cell(ratios_of(runs, b, row.key, ours), ratio=True) for ours, b in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def median(runs: Runs, server: str, key: str) -> float | None:
    """The median over the runs of ``key`` on ``server``; None when never measured."""
    values = median_of(runs, server, key)
    return statistics.median(values) if values else None


def ratio(runs: Runs, baseline: str, key: str, ours: str = "chatgate") -> float | None:
    """The median of the within-run ratios ``ours`` / ``baseline``; None when never measured."""
    values = ratios_of(runs, baseline, key, ours)
    return statistics.median(values) if values else None


def verdict(value: float | None, goal: float, at_least: bool) -> tuple[str, str]:
    """The figure as shown, and "met", "**missed**" or (never measured) "-"."""
    if value is None:
        return "not measured", "-"
    met = value >= goal if at_least else value <= goal
    return fmt(value) if value >= 10 else f"{value:.2f}", "met" if met else "**missed**"


def targets(config: Config, runs: Runs) -> str:
    """The issue's targets, each with its measured figure."""
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    checks: list[tuple[str, float | None, float, bool]] = [
        (
            f"chat round trips ≥ 3x python-socketio ({n} sockets)",
            ratio(runs, "socketio", f"chat{n}"),
            3.0,
            True,
        )
        for n in config.chat_sockets
    ]
    checks.append(
        (
            "handshakes ≥ 0.85x bare uvicorn (no auth)",
            ratio(runs, "uvicorn", "handshakes"),
            0.85,
            True,
        )
    )
    checks.append(
        ("agent events pushed ≥ 0.7x raw picows", ratio(runs, "picows", "stream"), 0.7, True)
    )
    checks += [
        (
            f"≤ 25 KB RSS per idle authenticated socket (at {n:,})",
            median(runs, "chatgate", f"idle{n}_kb"),
            25.0,
            False,
        )
        for n in config.idle_steps
    ]
    largest = max(config.idle_steps)
    checks.append(
        (
            f"{largest:,} idle sockets held by one process",
            median(runs, "chatgate", f"idle{largest}_held"),
            largest,
            True,
        )
    )
    for label, value, goal, at_least in checks:
        shown, judged = verdict(value, goal, at_least)
        lines.append(f"| {label} | {shown} | {judged} |")
    for n in config.chat_sockets:
        for key, turn in ((f"chat{n}", "chat"), (f"parity{n}", "parity")):
            against_lean = ratio(runs, "socketio-lean", key)
            if against_lean is not None:
                lines.append(
                    f"| for scale: chatgate / lean python-socketio, {turn} round trips "
                    f"({n} sockets) | {against_lean:.2f} | - |"
                )
    # What the framework under chatgate reaches on the same two ratios, for scale.
    for label, key in (("handshakes", "handshakes"), ("event delivery", "stream")):
        floor = ratio(runs, "picows", key, ours="uvicorn")
        if floor is not None:
            lines.append(f"| for scale: bare uvicorn / picows, {label} | {floor:.2f} | - |")
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU model named in /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    """Machine, versions and date, as markdown lines."""
    memory = psutil.virtual_memory().total / 2**30
    versions = []
    for package in _PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (absent)")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join(
        [
            f"- date: {now}",
            (
                f"- machine: {os.cpu_count()} CPUs ({cpu_model()}), {memory:.1f} GiB memory, "
                f"{platform.system()} {platform.release()}; load average at the start {load}"
            ),
            f"- Python {platform.python_version()} ({platform.python_implementation()})",
            "- " + ", ".join(versions),
        ]
    )


def settings(config: Config) -> str:
    """How the run was sized."""
    return (
        f"{config.runs} run(s); each figure is the median over the runs (range in brackets), "
        f"each ratio the median of the ratios computed within each run. Every measurement "
        f"runs against a freshly started server: {config.warmup:g} s of warm-up, then a "
        f"{config.duration:g} s window; {config.generators} load-generator process(es); "
        f"handshakes with {config.handshake_concurrency} concurrent clients; "
        f"stream runs of {STREAM_EVENTS} events."
    )
