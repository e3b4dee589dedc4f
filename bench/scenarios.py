"""The scenarios: what is measured against one freshly started server, as named figures.

Each function starts its server, drives the generators, stops the server and
returns ``{metric: value}``; problems seen on the way (client errors, failed
connects, sockets lost) go into ``notes``.
"""

from __future__ import annotations

import resource
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.generators import Generators
from bench.processes import Fleet, Server

_IDLE_WARMUP_S = 0.5
_WINDOW_LAG_S = 0.06
"""From asking the generators to the window's start: their go delay, and a little more."""
_SOCKETS_PER_SOURCE = 20_000
"""Sockets per loopback source address: well inside its ~28,000 ephemeral ports."""
_SPARE_FILES = 1000
"""Descriptors a server needs besides its sockets, with a margin: listeners, pools, logs."""
"""Sockets per loopback source address: well inside its ~28,000 ephemeral ports."""


@dataclass(frozen=True, slots=True)
class Config:
    """How big and how long a harness run is."""

    name: str
    runs: int
    warmup: float
    duration: float
    servers: tuple[str, ...]
    handshake_concurrency: int
    echo_sockets: int
    chat_sockets: tuple[int, ...]
    stream_sockets: int
    idle_steps: tuple[int, ...]
    idle_settle_s: float
    stores: tuple[str, ...] = ("chatgate", "chatgate-sqlite")
    """The chatgate servers the streamed-answer scenarios compare (one per store)."""
    crowd_steps: tuple[int, ...] = ()
    """Idle sockets chatgate alone is made to hold, beyond ``idle_steps``; empty skips it."""
    delta_sockets: int = 100
    resume_deltas: int = 10_000
    resume_repeats: int = 3
    only: tuple[str, ...] = ()
    """The scenarios to run, by name; empty runs them all."""
    generators: int = 1


@dataclass
class Context:
    """What a scenario needs: the processes, the sizes, and where to note problems."""

    fleet: Fleet
    generators: Generators
    config: Config
    notes: list[str] = field(default_factory=list)


Metrics = dict[str, float]
Scenario = Callable[[Context, Server], Metrics]


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``samples`` (0 when there are none)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank]


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _jobs(ctx: Context, server: Server, tag: str, **job: Any) -> list[dict[str, Any]]:
    return [
        {**job, "target": server.target(), "user_prefix": f"{tag}-g{index}"}
        for index in range(ctx.generators.count)
    ]


def _note_problems(ctx: Context, server: Server, tag: str, results: list[dict[str, Any]]) -> None:
    errors = sum(r.get("errors", 0) for r in results)
    failed = sum(r.get("failed_connects", 0) for r in results)
    closes: dict[str, int] = {}
    for result in results:
        for code, count in result.get("closes", {}).items():
            closes[str(code)] = closes.get(str(code), 0) + count
    if errors or failed or closes:
        ctx.notes.append(
            f"{tag} on {server.name}: {errors} error frames or failed requests, "
            f"{failed} failed connects, server closes {closes or 'none'}"
        )


def _load(ctx: Context, server: Server, tag: str, mode: str, sockets: int) -> list[dict[str, Any]]:
    config = ctx.config
    shares = _split(sockets, ctx.generators.count)
    jobs = _jobs(ctx, server, tag, kind="load", mode=mode)
    for job, share in zip(jobs, shares, strict=True):
        job["sockets"] = share
    results = ctx.generators.run(jobs, config.warmup, config.duration)
    _note_problems(ctx, server, tag, results)
    return results


def handshakes(ctx: Context, server: Server) -> Metrics:
    """Authenticated handshakes per second: connect, established, close, closed.

    Also the CPU seconds each side used per second of the window: a side near 1.0
    was busy all the time, and so was the limit.
    """
    config = ctx.config
    shares = _split(config.handshake_concurrency, ctx.generators.count)
    jobs = _jobs(ctx, server, "handshakes", kind="handshakes")
    for job, share in zip(jobs, shares, strict=True):
        job["concurrency"] = share
    # The generators answer ready at once, so the window opens about warm-up seconds from now.
    server_cpu = _cpu_between(server, config.warmup + _WINDOW_LAG_S, config.duration)
    results = ctx.generators.run(jobs, config.warmup, config.duration)
    server_cpu.join()
    _note_problems(ctx, server, "handshakes", results)
    return {
        "handshakes": sum(r["completed"] for r in results) / config.duration,
        "handshakes_client_cpu": sum(r["cpu_s"] for r in results) / config.duration,
        "handshakes_server_cpu": server_cpu.result / config.duration,
    }


class _CpuSampler(threading.Thread):
    """Reads a server's CPU seconds ``delay`` seconds from now and ``duration`` later."""

    def __init__(self, server: Server, delay: float, duration: float) -> None:
        super().__init__(name="bench-cpu-sampler", daemon=True)
        self.server, self.delay, self.duration = server, delay, duration
        self.result = 0.0

    def run(self) -> None:
        time.sleep(self.delay)
        before = self.server.cpu_s()
        time.sleep(self.duration)
        self.result = self.server.cpu_s() - before


def _cpu_between(server: Server, delay: float, duration: float) -> _CpuSampler:
    sampler = _CpuSampler(server, delay, duration)
    sampler.start()
    return sampler


def echo(ctx: Context, server: Server) -> Metrics:
    """Ping-pong round trips per second (chatgate's ``ping``; the baselines echo)."""
    results = _load(ctx, server, "echo", "echo", ctx.config.echo_sockets)
    return {"echo": sum(r["completed"] for r in results) / ctx.config.duration}


def chat(sockets: int, mode: str = "chat") -> Scenario:
    """Chat round trips per second on ``sockets`` sockets, and latency percentiles.

    ``mode`` ``chat`` sends ``what is 6*7?`` (the demo agent's turn), each message
    opening a thread; ``thread`` sends it in the thread its socket's first message
    opened (history grows: the demo agent reads it); ``parity`` is :func:`parity`.
    The figures are named ``{mode}{sockets}``.
    """
    key = f"{mode}{sockets}"

    def measure(ctx: Context, server: Server) -> Metrics:
        results = _load(ctx, server, key, mode, sockets)
        started = [s for r in results for s in r["to_started"]]
        completed = [s for r in results for s in r["to_completed"]]
        metrics = {key: sum(r["completed"] for r in results) / ctx.config.duration}
        # No sample, no percentile: a run slower than the window shows as "n/a", not 0 ms.
        for edge, samples in (("started", started), ("completed", completed)):
            if samples:
                metrics[f"{key}_{edge}_p50"] = percentile(samples, 0.50) * 1000
                metrics[f"{key}_{edge}_p99"] = percentile(samples, 0.99) * 1000
        return metrics

    measure.__name__ = key
    return measure


def parity(sockets: int) -> Scenario:
    """The chat round trip with what the lean python-socketio server sends: ``parity{sockets}``.

    chatgate's bench agent answers the parity message with the lean server's
    events (ack, ``agent_started``, thinking, the tool's two events,
    ``agent_completed`` with the answer text); the lean server answers any message so.
    The answer is still stored and each event still committed before it goes out.
    """
    return chat(sockets, "parity")


def latency(ctx: Context, server: Server) -> Metrics:
    """One socket, closed loop, chat turns on an idle server: p50 and p90 of a turn in ms.

    A turn is ``what is 6*7?`` from the send to ``agent_completed``; as many turns as
    fit in the window, each after the previous one completed.
    """
    results = _load(ctx, server, "latency", "chat", 1)
    completed = [s for r in results for s in r["to_completed"]]
    if not completed:
        return {}
    return {
        "latency_p50": percentile(completed, 0.50) * 1000,
        "latency_p90": percentile(completed, 0.90) * 1000,
        "latency_turns": len(completed),
    }


def stream(ctx: Context, server: Server) -> Metrics:
    """Frames per second reaching clients from runs that stream many small events."""
    results = _load(ctx, server, "stream", "stream", ctx.config.stream_sockets)
    return {"stream": sum(r["frames"] for r in results) / ctx.config.duration}


def deltas(ctx: Context, server: Server) -> Metrics:
    """``agent_text_delta`` frames per second reaching clients from runs that stream an answer."""
    results = _load(ctx, server, "deltas", "deltas", ctx.config.delta_sockets)
    return {"deltas": sum(r["deltas"] for r in results) / ctx.config.duration}


def resume(ctx: Context, server: Server) -> Metrics:
    """Replaying an answer of ``resume_deltas`` deltas to fresh sockets: time and frames.

    The median over ``resume_repeats`` replays of milliseconds from ``resume`` to
    ``resume_complete``; the frames a replay brings (all of them, ``resume_complete``
    included, and the ``agent_text_delta`` ones), from the first replay.
    """
    config = ctx.config
    jobs = _jobs(ctx, server, "resume", kind="resume")
    for job in jobs:
        job["deltas"] = config.resume_deltas
        job["repeats"] = config.resume_repeats
    results = ctx.generators.run(jobs, 0.0, 0.0)
    replays = [replay for r in results for replay in r["replays"]]
    live = [r["ready"]["live_deltas"] for r in results]
    if any(count != config.resume_deltas for count in live):
        ctx.notes.append(f"resume on {server.name}: the answer arrived live as {live} deltas")
    first = replays[0]
    return {
        "resume_ms": statistics.median(replay["ms"] for replay in replays),
        "resume_frames": first["frames"],
        "resume_delta_frames": first["deltas"],
    }


def idle(ctx: Context, server: Server) -> Metrics:
    """Server RSS per idle authenticated socket at each of ``idle_steps``, and how many it held."""
    return hold(ctx, server, "idle", ctx.config.idle_steps)


def crowd(ctx: Context, server: Server) -> Metrics:
    """Idle authenticated sockets at each of ``crowd_steps``, from several source addresses.

    Past one source address's ephemeral ports (about 28,000 toward one server port)
    the sockets spread over 127.0.0.2, 127.0.0.3, ...; with the kernel's memory too.
    """
    wanted = ctx.config.crowd_steps
    # The server inherits the harness's open-file limit; a step it cannot hold
    # would only measure refusals, so the largest one it can stands in for it.
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    room = (limit - _SPARE_FILES) // 1000 * 1000
    steps = tuple(dict.fromkeys(min(step, room) for step in wanted))
    if steps != wanted:
        ctx.notes.append(
            f"crowd on {server.name}: steps {list(steps)} instead of {list(wanted)}: the "
            f"open-file limit is {limit:,} and could not be raised (raising a hard limit "
            "needs CAP_SYS_RESOURCE)"
        )
    sources = -(-max(steps) // _SOCKETS_PER_SOURCE)
    return {"crowd_fd_limit": float(limit)} | hold(ctx, server, "crowd", steps, sources)


def hold(
    ctx: Context, server: Server, tag: str, steps: tuple[int, ...], sources: int = 0
) -> Metrics:
    """Open idle sockets up to each of ``steps``; measure the server at each.

    Per step ``s``: ``{tag}{s}_kb``, the growth of the server's RSS since before the
    first socket, per socket held; ``{tag}{s}_held``; ``{tag}{s}_kernel_kb``, the
    growth of the kernel's slab memory per socket held. Over loopback the kernel
    holds both ends of each connection, so the server's share is about half of that.
    """
    config = ctx.config
    warm = _jobs(ctx, server, f"{tag}-warm", kind="handshakes")
    for job in warm:
        job["concurrency"] = 4
    ctx.generators.run(warm, 0.0, _IDLE_WARMUP_S)
    time.sleep(config.idle_settle_s)
    base, slab = server.rss(), kernel_slab()
    metrics: Metrics = {}
    jobs = _jobs(ctx, server, tag, kind="idle", sources=sources)
    for job in jobs:
        job["steps"] = [0] * len(steps)
    for step_index, step in enumerate(steps):
        for job, share in zip(jobs, _split(step, ctx.generators.count), strict=True):
            job["steps"][step_index] = share

    def at_step(index: int, readies: list[dict[str, Any]]) -> None:
        step = steps[index]
        time.sleep(config.idle_settle_s)
        held = sum(r["open"] for r in readies)
        metrics[f"{tag}{step}_kb"] = (server.rss() - base) / max(held, 1) / 1024
        metrics[f"{tag}{step}_kernel_kb"] = (kernel_slab() - slab) / max(held, 1) / 1024
        metrics[f"{tag}{step}_held"] = held
        if held < step:
            ctx.notes.append(f"{tag} on {server.name}: held {held} of {step} sockets")

    results = ctx.generators.steps(jobs, at_step)
    _note_problems(ctx, server, tag, results)
    return metrics


def kernel_slab() -> int:
    """The kernel's slab memory now (``Slab`` of /proc/meminfo), in bytes: sockets live there."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1]) * 1024
    return 0


def run_on_fresh_server(ctx: Context, name: str, scenario: Scenario) -> Metrics:
    """Start ``name``, measure ``scenario`` on it, stop it whatever happens."""
    server = ctx.fleet.start(name)
    try:
        metrics = scenario(ctx, server)
        if not server.alive():
            raise RuntimeError(f"{name} died during {scenario.__name__}:\n{server.log_tail()}")
        return metrics
    finally:
        ctx.fleet.stop(server)
