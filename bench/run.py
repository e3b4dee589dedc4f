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
from dataclasses import replace
from pathlib import Path
from types import FrameType

from bench import report
from bench.generators import GeneratorError, Generators
from bench.loadgen import raise_fd_limit
from bench.processes import BENCH, REPO, SERVERS, Fleet, clean_env
from bench.scenarios import (
    Config,
    Context,
    Metrics,
    Scenario,
    chat,
    deltas,
    echo,
    handshakes,
    idle,
    resume,
    run_on_fresh_server,
    stream,
)

ALL_SERVERS = ("chatgate", "socketio", "socketio-lean", "uvicorn", "picows")
STORE_SCENARIOS = frozenset({"chat100", "stream"})
"""Where chatgate with a persistent store is measured too: the paths that write events."""
STREAMED_SCENARIOS = frozenset({"deltas", "resume"})
"""Measured on chatgate only, once per store (``Config.stores``): streamed answers."""
CONFIGS = {
    "full": Config(
        "full",
        runs=3,
        warmup=1.0,
        duration=3.0,
        servers=(*ALL_SERVERS, "chatgate-sqlite"),
        handshake_concurrency=64,
        echo_sockets=100,
        chat_sockets=(100, 1000),
        stream_sockets=100,
        idle_steps=(5000, 10000),
        idle_settle_s=1.0,
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
    ("instructions", "--op", "chat", "--servers", _BASELINES, "--count", "100"),
)
"""Benchmarks other modules of ``bench/`` provide, with their arguments; a full run
includes what they print."""
_EXTRA_TIMEOUT_S = 300


def scenarios(config: Config) -> list[Scenario]:
    """The scenarios of a run, in order (those of ``config.only`` when it names any)."""
    chats = [chat(n) for n in config.chat_sockets]
    every = [handshakes, echo, *chats, stream, deltas, resume, idle]
    return [s for s in every if not config.only or s.__name__ in config.only]


def servers_for(config: Config, scenario: str, index: int) -> tuple[str, ...]:
    """The servers ``scenario`` runs on in run ``index``, in the order they run."""
    if scenario in STREAMED_SCENARIOS:
        names = config.stores
    elif scenario in STORE_SCENARIOS:
        names = config.servers
    else:
        names = tuple(name for name in config.servers if name != "chatgate-sqlite")
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


METHOD = """\
## What runs

- **chatgate**: `chatgate serve` as operators run it (production tier, memory store and
  broker, `CHATGATE_LOG_LEVEL=WARNING`, no compression), with the bench agent
  (`bench/bench_agent.py`: the demo agent, plus `stream N`). Rate and per-user limits are
  raised so that load, not policy, decides; every load socket is its own user. Tokens go in
  `Authorization: Bearer`; each load user's token is minted once and reused when it
  reconnects, as a client does, so the handshake figure is the server's cost, not PyJWT's.
- **chatgate, SQLite store**: the same, with `CHATGATE_DATABASE_URL=sqlite:///...` (a file in
  the run's scratch directory), on the scenarios that write events.
- **python-socketio** (`bench/server_socketio.py`): the same chat round trip written as its
  users write it, on the same uvicorn stack: JWT checked in `connect`, one room per user,
  `message_ack` then the agent's events (the answer's text deltas among them) in chatgate's
  envelope, from the same agent. Its sockets authenticate in the namespace CONNECT packet.
- **python-socketio, lean** (`bench/server_socketio_lean.py`): python-socketio written as
  cheaply as a user would: JWT verified in `connect`, a room per user, `message_ack` then five
  events emitted straight (no agent, no session store, no history, nothing persisted).
- **bare uvicorn** (`bench/server_uvicorn.py`): a Starlette WebSocket endpoint on uvicorn
  (websockets-sansio, uvloop, httptools), no auth, no agent: the framework floor.
- **picows** (`bench/server_picows.py`): a raw picows server on uvloop: the limit reference.
- bare uvicorn and picows greet each socket with a `connection_established`-shaped frame, answer
  a chat message with chatgate's nine frames pre-encoded (the ack, then `agent_started`,
  thinking, the tool's two events, the answer in three text deltas and `agent_completed`) and
  `stream N` with the frames of an N-event run: the cost of moving the same bytes, no logic.

Load comes from separate processes (`bench/loadgen.py`), on uvloop with picows clients that
recognise frames by prefix and never parse them, each socket closed-loop (next request when
the previous one completed), 127.0.0.1 only, every loop bounded in count and time.
A chat round trip is `user_message` (a new thread each time) through `agent_completed`;
latencies are measured from the send to the arrival of `agent_started` and `agent_completed`.
Event delivery counts every frame of `stream 100` runs reaching the clients. Idle memory is
the growth of the server's RSS after a warm-up, divided by the authenticated sockets it holds.

Streamed answers are measured on chatgate alone, once on each store. Delta delivery counts the
`agent_text_delta` frames reaching the clients from `deltas 200` runs (the bench agent yields
200 deltas with no pause, then `agent_completed`), closed loop per socket. Resume: one socket
has a `deltas 10000` answer produced; then fresh sockets of the same user each send `resume`
after event 0 and read until `resume_complete` (deltas arrive merged); the figure is the
median time from the send to `resume_complete`, and the frames one replay brings.

Timed figures on this kind of machine move by a third from run to run. For a figure the noise
does not move, `.venv/bin/python -m bench.instructions --op handshakes` (or `--op chat`) counts
with callgrind the instructions each server executes per operation, and their ratio.

To see where chatgate's time goes under one of these loads (py-spy comes with the bench extra):
`.venv/bin/python -m bench.profiling --scenario chat` (also `handshakes`, `echo`, `chat1000`,
`stream`; `--server uvicorn` profiles a baseline the same way).
"""


def document(
    config: Config, runs: report.Runs, notes: list[str], found: list[tuple[str, str]]
) -> str:
    """The whole of ``docs/benchmarks.md``."""
    parts = [
        "# Benchmarks",
        "",
        (
            "Written by `make bench` (`bench/run.py`); do not edit by hand. The machine is shared "
            "and noisy: absolute figures move from run to run, ratios within a run hold."
        ),
        "",
        report.machine(),
        "",
        report.settings(config),
        "",
        "## Results",
        "",
        report.table(config, runs),
        "",
        "## Targets",
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


def main(argv: list[str] | None = None) -> int:
    """Run the harness; print the tables; write the document and JSON when asked."""
    config, args = _config(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    raise_fd_limit()
    started = time.monotonic()
    pids: list[int] = []
    with tempfile.TemporaryDirectory(prefix="chatgate-bench-") as workdir:
        runs, notes = measure(config, Path(workdir), pids)
    # The other benchmarks belong to a whole run, not to one picked by --only.
    found = extras() if config.name == "full" and not config.only else []
    text = document(config, runs, notes, found)
    print(report.table(config, runs))
    print()
    print(report.streamed(config, runs))
    print()
    print(report.targets(config, runs))
    if notes:
        print("\nnotes:\n" + "\n".join(f"- {note}" for note in notes))
    print(f"\n{config.name} run took {time.monotonic() - started:.0f} s")
    if args.write:
        args.write.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "notes": notes, "pids": pids}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
