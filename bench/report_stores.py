"""Report tables of chatgate on each store: throughput beside the memory store and both
python-socketio servers, the one-socket latency, and the idle sockets of the crowd scenario."""

from __future__ import annotations

from bench.frames import ANSWER_DELTAS, STREAM_EVENTS
from bench.report import PERSISTED, SHOWN, Row, Runs, cell, median_of, ratios_of
from bench.scenarios import Config

STORES = ("chatgate", *PERSISTED)
SOCKETIO = ("socketio", "socketio-lean")
AGAINST = ("chatgate", *SOCKETIO)
"""The servers every figure of the store table is divided by."""


def store_rows(config: Config) -> list[Row]:
    """The throughput figures measured on each store."""
    found = []
    for i, n in enumerate(config.chat_sockets):
        found.append(Row(f"chat{n}", f"chat round trips, {n:,} sockets", "/s"))
        if i == 0:
            label = f"chat round trips in one thread per socket, {n:,} sockets"
            found.append(Row(f"thread{n}", label, "/s"))
        found.append(Row(f"parity{n}", f"parity round trips, {n:,} sockets", "/s"))
    found.append(
        Row(
            "stream",
            f"agent events delivered, {config.stream_sockets} sockets, runs of {STREAM_EVENTS}",
            "events/s",
        )
    )
    found.append(
        Row(
            "deltas",
            f"agent_text_delta delivered, {config.delta_sockets} sockets, "
            f"answers of {ANSWER_DELTAS}",
            "deltas/s",
        )
    )
    return found


def stores(config: Config, runs: Runs) -> str:
    """One row per figure and server: the figure, and its ratio to each of ``AGAINST``."""
    header = ["metric", "server", "figure", *(f"/ {SHOWN[b]}" for b in AGAINST)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in store_rows(config):
        for server in (*STORES, *SOCKETIO):
            values = median_of(runs, server, row.key)
            if not values:
                continue
            cells = [row.label, SHOWN[server], f"{cell(values)} {row.unit}"]
            cells += [
                "-" if base == server else cell(ratios_of(runs, base, row.key, server), ratio=True)
                for base in AGAINST
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latency(config: Config, runs: Runs) -> str:
    """One socket, closed loop, on an idle server: each server's turn time."""
    del config  # the same shape whatever the size of the run
    header = ["server", "turns per window", "p50 (ms)", "p90 (ms)", "p50 / chatgate's p50"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for server in (*STORES, *SOCKETIO):
        p50 = median_of(runs, server, "latency_p50")
        if not p50:
            continue
        lines.append(
            "| "
            + " | ".join(
                [
                    SHOWN[server],
                    cell(median_of(runs, server, "latency_turns")),
                    cell(p50),
                    cell(median_of(runs, server, "latency_p90")),
                    cell(ratios_of(runs, "chatgate", "latency_p50", server), ratio=True),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def crowd(runs: Runs) -> str:
    """The crowd scenario: idle sockets held by one chatgate process, and what they cost."""
    steps = sorted(
        {
            int(key[len("crowd") : -len("_held")])
            for run in runs
            for key in run.get("chatgate", {})
            if key.startswith("crowd") and key.endswith("_held")
        }
    )
    header = [
        "idle sockets asked for",
        "held",
        "server RSS per socket (KB)",
        "kernel slab per connection, both ends (KB)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for step in steps:
        cells = [f"{step:,}"] + [
            cell(median_of(runs, "chatgate", f"crowd{step}_{suffix}"))
            for suffix in ("held", "kb", "kernel_kb")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    limits = median_of(runs, "chatgate", "crowd_fd_limit")
    if limits:
        lines += ["", f"Open-file limit of the harness and its servers: {min(limits):,.0f}."]
    return "\n".join(lines)


def handshake_cpu(runs: Runs) -> str:
    """Handshakes per second beside the CPU each side used: which side set the pace."""
    header = [
        "server",
        "handshakes/s",
        "load generator CPU s per s (window)",
        "server CPU s per s (window)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for server in SHOWN:
        if not median_of(runs, server, "handshakes_client_cpu"):
            continue
        cells = [SHOWN[server]] + [
            cell(median_of(runs, server, key))
            for key in ("handshakes", "handshakes_client_cpu", "handshakes_server_cpu")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
