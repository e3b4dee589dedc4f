"""Profile chatgate under the harness's load with py-spy: where the server's CPU goes.

``python -m bench.profiling --scenario chat`` starts chatgate as the harness
does, loads it with one scenario, samples it with ``py-spy record`` (part of
the bench extra) and prints the functions with the most
samples, by own time and by inclusive time, as shares of the busy samples.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.generators import Generators
from bench.loadgen import raise_fd_limit
from bench.processes import Fleet

_SCENARIOS = {
    "handshakes": {"kind": "handshakes", "concurrency": 64},
    "echo": {"kind": "load", "mode": "echo", "sockets": 100},
    "chat": {"kind": "load", "mode": "chat", "sockets": 100},
    "chat1": {"kind": "load", "mode": "chat", "sockets": 1},
    "thread": {"kind": "load", "mode": "thread", "sockets": 100},
    "chat1000": {"kind": "load", "mode": "chat", "sockets": 1000},
    "parity": {"kind": "load", "mode": "parity", "sockets": 100},
    "stream": {"kind": "load", "mode": "stream", "sockets": 100},
}


def _frame_name(frame: str) -> str:
    # py-spy's raw frames read "function (path/to/file.py:line)".
    function, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{function} ({path})"


def summarize(raw: Path, top: int) -> str:
    """Own and inclusive sample shares from py-spy's collapsed-stack output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return "no samples"
    lines = [f"{total} busy samples", "", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top * 2)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Profile one scenario; print the summary, keep the raw profile where asked."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", choices=sorted(_SCENARIOS), default="chat")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--server", default="chatgate")
    parser.add_argument(
        "--py-spy-flag",
        dest="py_spy_flags",
        action="append",
        default=[],
        help="pass a flag to py-spy record, such as --native or --idle",
    )
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    raise_fd_limit()
    with (
        tempfile.TemporaryDirectory(prefix="chatgate-profile-") as scratch,
        Fleet(Path(scratch), "profile-secret-0123456789abcdef-0123456789") as fleet,
        Generators(1) as generators,
    ):
        server = fleet.start(args.server)
        raw = args.raw or Path(scratch) / "profile.txt"
        job = {**_SCENARIOS[args.scenario], "target": server.target(), "user_prefix": "prof"}
        command = [py_spy, "record", "-p", str(server.process.pid), "-d", str(int(args.seconds))]
        command += [*args.py_spy_flags, "-f", "raw", "-r", "200", "-o", str(raw)]
        record = subprocess.Popen(  # noqa: S603 - py-spy on our own child
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            generators.run([job], 0.0, args.seconds + 1)
        finally:
            _, errors = record.communicate(timeout=60)
        if record.returncode:
            print(errors.decode(errors="replace"), file=sys.stderr)
            return 1
        print(summarize(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
