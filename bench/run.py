"""The harness's command line: ``python -m bench.run --mode full|quick|smoke``.

``full`` (``make bench``) writes ``docs/benchmarks.md``; ``quick``
(``make bench-quick``) prints a smoke table in under a minute; ``smoke`` is the
smallest run, for the harness's own test.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType

from bench import report, report_stores, targets
from bench.generators import GeneratorError, Generators
from bench.loadgen import raise_fd_limit
from bench.method import METHOD
from bench.processes import BENCH, REPO, SERVERS, Fleet, clean_env
from bench.scenarios import (
    Config,
    Context,
    Metrics,
    Scenario,
    chat,
    crowd,
    deltas,
    echo,
    handshakes,
    idle,
    latency,
    parity,
    resume,
    run_on_fresh_server,
    stream,
)

ALL_SERVERS = ("chatgate", "socketio", "socketio-lean", "uvicorn", "picows")
PERSISTED = ("chatgate-sqlite", "chatgate-postgres", "chatgate-pg-redis")
"""chatgate on a store that persists: SQLite; PostgreSQL; PostgreSQL with the Redis broker."""
STORE_SCENARIOS = frozenset({"chat100", "chat1000", "stream"})
"""Where chatgate with a persistent store is measured too: the paths that write events."""
STREAMED_SCENARIOS = frozenset({"deltas", "resume"})
"""Measured on chatgate only, once per store (``Config.stores``): streamed answers."""
PARITY_SERVERS = ("chatgate", "socketio-lean")
"""Where the parity round trip runs: chatgate, and the lean server whose turn it copies."""
LATENCY_SERVERS = ("socketio", "socketio-lean")
"""Besides chatgate on each store, the servers the one-socket latency is measured on."""
CONFIGS = {
    "full": Config(
        "full",
        runs=3,
        warmup=1.0,
        duration=3.0,
        servers=(*ALL_SERVERS, *PERSISTED),
        handshake_concurrency=64,
        echo_sockets=100,
        chat_sockets=(100, 1000),
        stream_sockets=100,
        idle_steps=(5000, 10000),
        idle_settle_s=1.0,
        crowd_steps=(20_000, 50_000),
        stores=("chatgate", *PERSISTED),
    ),
    "quick": Config(
        "quick",
        runs=1,
        warmup=0.3,
        duration=1.2,
        servers=ALL_SERVERS,
        handshake_concurrency=64,
        echo_sockets=100,
        chat_sockets=(100,),
        stream_sockets=100,
        idle_steps=(1000,),
        idle_settle_s=0.3,
    ),
    "smoke": Config(
        "smoke",
        runs=1,
        warmup=0.2,
        duration=0.5,
        servers=("chatgate", "picows"),
        handshake_concurrency=4,
        echo_sockets=4,
        chat_sockets=(8,),
        stream_sockets=4,
        idle_steps=(20,),
        idle_settle_s=0.1,
        delta_sockets=4,
        resume_deltas=2_000,
        resume_repeats=1,
    ),
}
_BASELINES = "chatgate,uvicorn,socketio"
EXTRAS: tuple[tuple[str, ...], ...] = (
    ("store",),
    ("broker",),
    ("instructions", "--op", "handshakes", "--servers", _BASELINES),
    ("instructions", "--op", "chat", "--servers", f"{_BASELINES},socketio-lean", "--count", "100"),
    ("instructions", "--op", "parity", "--servers", "chatgate,socketio-lean", "--count", "100"),
    (
        "instructions",
        "--op",
        "chat",
        "--servers",
        "chatgate,chatgate-sqlite,chatgate-postgres,chatgate-pg-redis",
        "--count",
        "400",
        "--sockets",
        str(targets.STORE_COUNT_SOCKETS),
    ),
)
"""Benchmarks other modules of ``bench/`` provide, with their arguments; a full run
includes what they print."""
_EXTRA_TIMEOUT_S = 600


def scenarios(config: Config) -> list[Scenario]:
    """The scenarios of a run, in order (those of ``config.only`` when it names any)."""
    # Each demo-agent chat figure, then the parity one beside it.
    chats = [scenario for n in config.chat_sockets for scenario in (chat(n), parity(n))]
    # The turn in an existing thread, at the first size: chatgate on each store.
    chats.insert(1, chat(config.chat_sockets[0], "thread"))
    every = [handshakes, echo, *chats, latency, stream, deltas, resume, idle]
    if config.crowd_steps:
        every.append(crowd)
    return [s for s in every if not config.only or s.__name__ in config.only]


def servers_for(config: Config, scenario: str, index: int) -> tuple[str, ...]:
    """The servers ``scenario`` runs on in run ``index``, in the order they run."""
    if scenario in STREAMED_SCENARIOS:
        names = config.stores
    elif scenario == "latency":
        names = config.stores + tuple(s for s in LATENCY_SERVERS if s in config.servers)
    elif scenario == "crowd":
        names = ("chatgate",)
    elif scenario.startswith("thread"):
        names = tuple(s for s in config.servers if s == "chatgate" or s in PERSISTED)
    elif scenario.startswith("parity"):
        names = tuple(s for s in PARITY_SERVERS if s in config.servers)
    elif scenario in STORE_SCENARIOS:
        names = config.servers
    else:
        names = tuple(name for name in config.servers if name not in PERSISTED)
    # Rotating the order keeps any drift of a noisy machine off one server.
    shift = index % len(names) if names else 0
    return names[shift:] + names[:shift]


def _stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so every finally block stops its processes.
    raise SystemExit(128 + signal.SIGTERM)


def measure(config: Config, workdir: Path, pids: list[int]) -> tuple[report.Runs, list[str]]:
    """Run every scenario on every server, ``config.runs`` times; return figures and notes."""
    runs: report.Runs = []
    notes: list[str] = []
    secret = secrets.token_urlsafe(32)
    with Fleet(workdir, secret) as fleet:
        generators = Generators(config.generators)
        pids += generators.pids
        try:
            for index in range(config.runs):
                figures: dict[str, Metrics] = {
                    name: {} for name in dict.fromkeys((*config.servers, *config.stores))
                }
                for scenario in scenarios(config):
                    for name in servers_for(config, scenario.__name__, index):
                        ctx = Context(fleet, generators, config)
                        try:
                            figures[name].update(run_on_fresh_server(ctx, name, scenario))
                        except (GeneratorError, RuntimeError) as exc:
                            notes.append(f"run {index + 1}, {scenario.__name__} on {name}: {exc}")
                            generators.close()
                            generators = Generators(config.generators)
                            pids += generators.pids
                        notes += [f"run {index + 1}: {note}" for note in ctx.notes]
                        print(
                            f"  run {index + 1} {scenario.__name__:<10} {name:<9} done",
                            file=sys.stderr,
                            flush=True,
                        )
                runs.append(figures)
        finally:
            pids += fleet.pids
            generators.close()
    return runs, notes


def extras() -> list[tuple[str, str]]:
    """The output of each of ``EXTRAS``, headed by its command line."""
    found = []
    for name, *arguments in EXTRAS:
        script = BENCH / f"{name}.py"
        if not script.exists():
            continue
        try:
            done = subprocess.run(  # noqa: S603 - our own interpreter and script
                [sys.executable, str(script), *arguments],
                cwd=REPO,
                env=clean_env(PYTHONPATH=str(REPO)),
                capture_output=True,
                text=True,
                timeout=_EXTRA_TIMEOUT_S,
                check=False,
            )
            output = done.stdout + (
                f"\n(exit {done.returncode})\n{done.stderr[-1500:]}" if done.returncode else ""
            )
        except subprocess.TimeoutExpired:
            output = f"did not finish within {_EXTRA_TIMEOUT_S} s"
        found.append((" ".join([f"bench/{name}.py", *arguments]), output.strip()))
    return found


def instruction_counts(found: list[tuple[str, str]]) -> targets.Counts:
    """Instructions per operation by server, of each instruction count the extras made."""
    counts: targets.Counts = {}
    for name, output in found:
        if "instructions" not in name:
            continue
        if "--op handshakes" in name:
            counts["handshakes"] = targets.instruction_counts(output)
        elif "--sockets" in name:
            counts["stores"] = targets.instruction_counts(output)
    return counts


def persisted(config: Config, runs: report.Runs, counts: targets.Counts) -> list[str]:
    """The sections about "Persisted chat at full speed": targets, reference, the figures.

    A table this run measured nothing for (a header and nothing under it) is left out.
    """
    parts = [
        "## Targets: persisted chat at full speed",
        "",
        targets.targets(runs, counts),
        "",
    ]
    sections = (
        ("The issue's reference figures beside this run's", targets.reference(runs)),
        (
            "Each store beside the memory store and both python-socketio servers",
            report_stores.stores(config, runs),
        ),
        ("One socket, closed loop, idle server", report_stores.latency(config, runs)),
        ("Handshakes: the CPU each side used", report_stores.handshake_cpu(runs)),
        ("Idle sockets held by one chatgate process", report_stores.crowd(runs)),
    )
    for title, text in sections:
        if len(text.splitlines()) > 2:
            parts += [f"### {title}", "", text, ""]
    return parts


def document(
    config: Config,
    runs: report.Runs,
    notes: list[str],
    found: list[tuple[str, str]],
    machine: str,
) -> str:
    """The whole of ``docs/benchmarks.md``; ``machine`` is :func:`report.machine` at the start."""
    parts = [
        "# Benchmarks",
        "",
        (
            "Written by `make bench` (`bench/run.py`); do not edit by hand. The machine is shared "
            "and noisy: absolute figures move from run to run, ratios within a run hold."
        ),
        "",
        machine,
        "",
        report.settings(config),
        "",
        *persisted(config, runs, instruction_counts(found)),
        "## Results",
        "",
        report.table(config, runs),
        "",
        "## Earlier targets",
        "",
        report.targets(config, runs),
        "",
        "## Streamed answers",
        "",
        report.streamed(config, runs),
        "",
        "## Lean socketio baseline",
        "",
        report.lean(config, runs),
        "",
        METHOD,
    ]
    for name, output in found:
        parts += [f"## {name}", "", "```", output, "```", ""]
    parts += ["## Notes", ""]
    parts += [f"- {note}" for note in notes] or [
        "- none: no errors, failed connects or lost sockets"
    ]
    return "\n".join(parts) + "\n"


def _config(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=sorted(CONFIGS), default="quick")
    parser.add_argument("--runs", type=int, help="override the number of runs")
    parser.add_argument("--only", help="run only these scenarios (comma-separated names)")
    parser.add_argument("--servers", help="override the servers (comma-separated names)")
    parser.add_argument("--stores", help="override the chatgate servers of streamed answers")
    parser.add_argument("--write", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write figures, notes and child pids here")
    parser.add_argument(
        "--render", type=Path, help="measure nothing: write the report of a --json file again"
    )
    args = parser.parse_args(argv)
    config = CONFIGS[args.mode]
    if args.runs:
        config = replace(config, runs=args.runs)
    if args.only:
        only = tuple(args.only.split(","))
        known = {s.__name__ for s in scenarios(config)}
        if unknown := sorted(set(only) - known):
            parser.error(f"--only: unknown scenario {unknown[0]!r} ({', '.join(sorted(known))})")
        config = replace(config, only=only)
    servers = tuple(args.servers.split(",")) if args.servers else config.servers
    stores = tuple(args.stores.split(",")) if args.stores else config.stores
    if unknown := sorted(set(servers + stores) - set(SERVERS)):
        parser.error(f"--servers, --stores: unknown server {unknown[0]!r}")
    return replace(config, servers=servers, stores=stores), args


def render(saved: Path, write: Path | None) -> int:
    """Write the report of a ``--json`` file again, with the code's current tables."""
    figures = json.loads(saved.read_text())
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in figures["config"].items()}
    config = Config(**fields)
    found = [(name, output) for name, output in figures["extras"]]
    text = document(config, figures["runs"], figures["notes"], found, figures["machine"])
    if write:
        write.write_text(text)
    else:
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the harness; print the tables; write the document and JSON when asked."""
    config, args = _config(argv)
    if args.render:
        return render(args.render, args.write)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    raise_fd_limit()
    started = time.monotonic()
    machine = report.machine()
    pids: list[int] = []
    with tempfile.TemporaryDirectory(prefix="chatgate-bench-") as workdir:
        runs, notes = measure(config, Path(workdir), pids)
    # The other benchmarks belong to a whole run, not to one picked by --only.
    found = extras() if config.name == "full" and not config.only else []
    text = document(config, runs, notes, found, machine)
    print(report.table(config, runs))
    print()
    print(report.streamed(config, runs))
    print()
    print("\n".join(persisted(config, runs, instruction_counts(found))))
    if notes:
        print("\nnotes:\n" + "\n".join(f"- {note}" for note in notes))
    print(f"\n{config.name} run took {time.monotonic() - started:.0f} s")
    if args.write:
        args.write.write_text(text)
    if args.json:
        saved = {
            "runs": runs,
            "notes": notes,
            "pids": pids,
            "extras": found,
            "machine": machine,
            "config": asdict(config),
        }
        args.json.write_text(json.dumps(saved, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
