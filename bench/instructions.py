"""Instructions per operation, counted by callgrind: a figure the machine's noise does not move.

Timed figures on a shared 2-core machine move by a third from one run to the
next; the number of instructions a server executes for one handshake or one
chat round trip does not. ``python -m bench.instructions`` starts each server
under ``valgrind --tool=callgrind`` with counting off, warms it up, counts only
while a fixed number of operations runs one after the other from one client,
and prints instructions per operation and the ratio to the first server::

    .venv/bin/python -m bench.instructions --op handshakes --servers chatgate,uvicorn
    .venv/bin/python -m bench.instructions --op chat --count 100
    .venv/bin/python -m bench.instructions --op parity --servers chatgate,socketio-lean
    .venv/bin/python -m bench.instructions --op chat --count 400 --sockets 20 \\
        --servers chatgate,chatgate-sqlite

``--sockets`` runs the round trips from that many sockets at once, closed loop,
so that turns share the group commit's batches as under load (larger ones than
in a timed run: the server is slower here). ``thread`` is ``chat`` with each
socket's turns in one thread.

``chat`` is the demo agent's turn (``what is 6*7?``: ack and eight events from
chatgate); ``parity`` is the turn that sends what the lean python-socketio
server sends (ack and five events, see ``bench/bench_agent.py``).

Needs valgrind (Debian's ``valgrind`` package). Under callgrind a server runs
about fifty times slower: counts stay small, and startup takes a while.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench.clients import Tally, Window
from bench.loadgen import CONNECT_TIMEOUT_S, Target, open_client
from bench.processes import Fleet, Server

VALGRIND_STARTUP_S = 300.0
WARMUP_OPS = 20
MAX_COUNT = 10_000
_OP_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Counted:
    """What callgrind counted for one server."""

    server: str
    operations: int
    instructions: int

    @property
    def per_operation(self) -> float:
        """Instructions per operation."""
        return self.instructions / self.operations


async def _handshakes(target: Target, count: int, _sockets: int) -> int:
    tally = Tally()
    for _ in range(count):
        client = await open_client(target, "idle", tally, "instructions-user")
        assert client.transport is not None
        client.close()
        await asyncio.wait_for(client.transport.wait_disconnected(), _OP_TIMEOUT_S)
    return count


async def _round_trips(target: Target, count: int, mode: str, sockets: int) -> int:
    # One tally for every socket: together they stop once ``count`` round trips are done.
    tally = Tally(window=Window(0.0, float("inf")))
    clients = [
        await open_client(target, mode, tally, f"instructions-user-{n}") for n in range(sockets)
    ]
    idles = [client.start() for client in clients]
    async with asyncio.timeout(_OP_TIMEOUT_S * count):
        # The clients count in their frame callbacks; a bounded poll is the simplest wait.
        while tally.completed < count:  # noqa: ASYNC110 - see above
            await asyncio.sleep(0.005)
    tally.sending = False
    await asyncio.wait_for(asyncio.gather(*idles), _OP_TIMEOUT_S)
    for client in clients:
        client.close()
        assert client.transport is not None
        await asyncio.wait_for(client.transport.wait_disconnected(), CONNECT_TIMEOUT_S)
    if tally.errors:
        raise RuntimeError(f"{tally.errors} round trips failed")
    return tally.completed


async def _chats(target: Target, count: int, sockets: int) -> int:
    return await _round_trips(target, count, "chat", sockets)


async def _threads(target: Target, count: int, sockets: int) -> int:
    return await _round_trips(target, count, "thread", sockets)


async def _parity(target: Target, count: int, sockets: int) -> int:
    return await _round_trips(target, count, "parity", sockets)


_OPERATIONS = {"handshakes": _handshakes, "chat": _chats, "thread": _threads, "parity": _parity}


def _control(pid: int, *arguments: str) -> None:
    subprocess.run(  # noqa: S603 - valgrind's own tool on our own child
        ["callgrind_control", *arguments, str(pid)],  # noqa: S607 - found on PATH, checked first
        check=True,
        capture_output=True,
        timeout=60,
    )


def _totals(dump: Path) -> int:
    # The dump ends with "totals:"; its "summary:" header may still read 0.
    for line in reversed(dump.read_text().splitlines()):
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def count(
    fleet: Fleet, scratch: Path, name: str, op: str, operations: int, *, sockets: int = 1
) -> Counted:
    """Run ``operations`` of ``op`` against ``name`` under callgrind; count them only.

    Round trips come from ``sockets`` sockets at once, each closed loop; the
    count is per round trip completed, which may exceed ``operations`` by the
    few in flight when the tally reached it.
    """
    out = scratch / f"callgrind-{name}.out"
    wrapper = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
    ]
    server: Server = fleet.start(name, wrapper, startup_timeout_s=VALGRIND_STARTUP_S)
    try:
        target = Target.from_job({"target": server.target()})
        run = _OPERATIONS[op]
        uvloop.run(run(target, WARMUP_OPS, sockets))
        _control(server.process.pid, "--instr=on")
        done = uvloop.run(run(target, operations, sockets))
        _control(server.process.pid, "--instr=off")
        _control(server.process.pid, "--dump")
    finally:
        fleet.stop(server)
    dumps = sorted(scratch.glob(f"callgrind-{name}.out.*"))
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for {name}:\n{server.log_tail()}")
    return Counted(name, done, _totals(dumps[0]))


def main(argv: list[str] | None = None) -> int:
    """Count each server's instructions per operation; print them with ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--op", choices=sorted(_OPERATIONS), default="handshakes")
    parser.add_argument("--servers", default="chatgate,uvicorn")
    parser.add_argument("--count", type=int, default=200, help=f"operations (1..{MAX_COUNT})")
    parser.add_argument(
        "--sockets",
        type=int,
        default=1,
        help="round trips from this many sockets at once (chat, thread, parity): batches form",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be between 1 and {MAX_COUNT}")
    if not 1 <= args.sockets <= args.count or (args.sockets > 1 and args.op == "handshakes"):
        parser.error("--sockets must be between 1 and --count, and 1 for handshakes")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    names = args.servers.split(",")
    with (
        tempfile.TemporaryDirectory(prefix="chatgate-instructions-") as scratch,
        Fleet(Path(scratch), secrets.token_urlsafe(32)) as fleet,
    ):
        counted = [
            count(fleet, Path(scratch), name, args.op, args.count, sockets=args.sockets)
            for name in names
        ]
    first = counted[0]
    how = "one after the other" if args.sockets == 1 else f"from {args.sockets} sockets at once"
    print(f"{args.op}: {args.count} operations, {how}, per server")
    for result in counted:
        ratio = result.per_operation / first.per_operation
        print(
            f"  {result.server:<16} {result.per_operation:>12,.0f} instructions/op"
            f"   {ratio:.3f}x {first.server}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
