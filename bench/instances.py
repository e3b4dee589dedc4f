"""Agent events per second delivered across two gateway instances sharing Redis and PostgreSQL.

Two ``chatgate serve`` processes, A and B, share the local Redis (the broker, under
a key prefix of their own) and a fresh schema of the local PostgreSQL (the store),
as two replicas of one deployment do. Each of ``--users`` users has two sockets: a
*driver* on A that asks for ``stream N`` runs of the bench agent, one after the other
(the next when ``agent_completed`` arrives), and a *listener* that only reads. The
figure is agent events received by the listeners per second, in two layouts:

- ``across``: the listeners are on B, so every event crosses from A to B through Redis;
- ``same``: the listeners are on A beside the drivers, the in-run baseline. Events
  still go through Redis pub/sub (the broker is Redis), but one process does all the work.

After each window the drivers stop, and every event a driver saw must reach its
listener (``lost`` counts those that do not). CPU seconds of A, B, Redis and the
instances' PostgreSQL backends over the window give each one's cost per 1,000 events
delivered; ``CPU busy`` is the share of the whole machine that was busy meanwhile
(when it nears 100 %, the machine, not chatgate, sets the figure). Run from the
repository root:

    .venv/bin/python -m bench.instances
    .venv/bin/python -m bench.instances --users 50 --events 100 --seconds 5 --runs 3

PostgreSQL is ``$CHATGATE_BENCH_PG_URL`` (default the local ``test`` database), Redis
``$CHATGATE_BENCH_REDIS_URL`` (default the local one); all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil

from bench import report
from bench.broker import redis_cpu
from bench.frames import json_request
from bench.instance_sockets import Driver, Listener, Shared, open_socket
from bench.loadgen import DRAIN_TIMEOUT_S, close_all, raise_fd_limit
from bench.processes import (
    CHATGATE,
    CHATGATE_LOAD_ENV,
    PG_URL,
    REDIS_URL,
    REPO,
    STARTUP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    _die_with_parent,
    clean_env,
    free_port,
)
from bench.store import run, store_url

LAYOUTS = ("across", "same")


@dataclass
class Instance:
    """A ``chatgate serve`` child process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def cpu_s(self) -> float:
        """CPU seconds (user and system) the process has used so far."""
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the instance's output, for an error message."""
        return self.log.read_text(errors="replace")[-chars:]


def instance_env(secret: str, database_url: str, prefix: str, name: str) -> dict[str, str]:
    """An instance's environment: the load settings of ``bench/run.py``, on Redis and PostgreSQL."""
    return clean_env(
        **{
            **CHATGATE_LOAD_ENV,
            "CHATGATE_JWT_SECRET": secret,
            "CHATGATE_DATABASE_URL": database_url,
            "CHATGATE_BROKER_URL": REDIS_URL,
            "CHATGATE_BROKER_KEY_PREFIX": prefix,
            "CHATGATE_INSTANCE_ID": name,
            "CHATGATE_AGENT": "bench.bench_agent:BenchAgent",
            "PYTHONPATH": str(REPO),
        }
    )


def start_instance(name: str, workdir: Path, env: dict[str, str]) -> Instance:
    """Start one instance on a free port; return once ``/readyz`` answers 200.

    Raises:
        RuntimeError: the instance exited, or was not ready within the startup timeout.
    """
    port = free_port()
    log = workdir / f"{name}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter's chatgate
            [str(CHATGATE), "serve", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only; no threads are started yet
        )
    instance = Instance(name, port, process, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"instance {name} exited at startup:\n{instance.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                return instance
        time.sleep(0.05)
    stop_instance(instance)
    raise RuntimeError(f"instance {name} not ready within {STARTUP_TIMEOUT_S:g}s")


def stop_instance(instance: Instance) -> None:
    """SIGTERM, then SIGKILL after the stop timeout."""
    process = instance.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


@contextlib.asynccontextmanager
async def two_instances(plan: Plan, workdir: Path) -> AsyncIterator[tuple[Instance, Instance]]:
    """Instances A and B on one fresh PostgreSQL schema and one Redis key prefix of their own."""
    prefix = f"bench-{secrets.token_hex(4)}"
    async with store_url("postgresql") as schema_url:
        database_url = f"{schema_url}&application_name={plan.application_name}"
        started: list[Instance] = []
        try:
            # One after the other: the first one migrates the fresh schema.
            for name in ("a", "b"):
                env = instance_env(plan.secret, database_url, prefix, f"bench-{name}")
                started.append(start_instance(name, workdir, env))
            yield started[0], started[1]
        finally:
            for instance in started:
                stop_instance(instance)


# Measuring


@dataclass(frozen=True, slots=True)
class Result:
    """One layout measured once."""

    layout: str
    events: int
    """Agent events the listeners received in the window."""
    driver_events: int
    """Agent events the drivers received in the window (the rate runs were produced at)."""
    seconds: float
    lost: int
    failures: int
    """Error frames and ``agent_error`` events received, and sockets the server closed."""
    cpu_a: float
    cpu_b: float
    cpu_redis: float
    cpu_postgres: float
    machine_busy: float
    """The share of the machine's CPU time that was busy during the window (0 to 1)."""

    @property
    def rate(self) -> float:
        """Agent events per second delivered to the listeners."""
        return self.events / self.seconds

    def cost_ms(self, cpu_s: float) -> float:
        """CPU milliseconds per 1,000 events delivered to the listeners."""
        return 1000 * cpu_s / self.events * 1000 if self.events else float("nan")

    def row(self) -> str:
        """One line of the report."""
        return (
            f"{self.layout:7} {self.rate:12,.0f} {self.driver_events / self.seconds:12,.0f} "
            f"{self.lost:6} {self.failures:8} {self.cost_ms(self.cpu_a):9.1f} "
            f"{self.cost_ms(self.cpu_b):9.1f} {self.cost_ms(self.cpu_redis):11.2f} "
            f"{self.cost_ms(self.cpu_postgres):8.1f} {self.machine_busy:8.0%}"
        )


HEADER = (
    f"{'layout':7} {'delivered/s':>12} {'produced/s':>12} {'lost':>6} {'failures':>8} "
    f"{'A ms/1k':>9} {'B ms/1k':>9} {'Redis ms/1k':>11} {'PG ms/1k':>8} {'CPU busy':>8}"
)


@dataclass(frozen=True, slots=True)
class Plan:
    """How one measurement is sized."""

    users: int
    events: int
    warmup: float
    seconds: float
    secret: str
    application_name: str
    """What the instances call their PostgreSQL connections."""


async def postgres_cpu(application_name: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend serving the instances, by pid.

    The instances name their connections (``application_name``), so that other
    clients of the same PostgreSQL do not count.
    """
    conn = await asyncpg.connect(PG_URL)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", application_name
        )
    finally:
        await conn.close()
    spent: dict[int, float] = {}
    for row in rows:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(row["pid"]).cpu_times()
            spent[row["pid"]] = times.user + times.system
    return spent


@dataclass(frozen=True, slots=True)
class Snapshot:
    """CPU seconds used so far by each party, and by the whole machine."""

    a: float
    b: float
    redis: float
    postgres: dict[int, float]
    machine_busy: float
    machine_total: float

    @classmethod
    async def take(cls, a: Instance, b: Instance, application_name: str) -> Snapshot:
        """Read every counter now."""
        redis = await redis_cpu(REDIS_URL) or 0.0
        postgres = await postgres_cpu(application_name)
        times = psutil.cpu_times()
        total = sum(times)
        busy = total - times.idle - getattr(times, "iowait", 0.0)
        return cls(a.cpu_s(), b.cpu_s(), redis, postgres, busy, total)

    def postgres_since(self, before: Snapshot) -> float:
        """CPU seconds of the backends since ``before``; a backend opened meanwhile counts whole."""
        return sum(cpu - before.postgres.get(pid, 0.0) for pid, cpu in self.postgres.items())


async def measure(layout: str, a: Instance, b: Instance, plan: Plan, tag: str) -> Result:
    """Drive runs from A for ``plan.users`` users; count what their listeners receive."""
    shared = Shared()
    body = {"id": "1", "payload": {"text": f"stream {plan.events}"}}
    request = json_request("user_message", body)
    listen_on = b if layout == "across" else a
    users = [f"{tag}-{i}" for i in range(plan.users)]
    drivers = await asyncio.gather(
        *(open_socket(a.port, plan.secret, u, lambda: Driver(shared, request)) for u in users)
    )
    listeners = await asyncio.gather(
        *(open_socket(listen_on.port, plan.secret, u, lambda: Listener(shared)) for u in users)
    )
    try:
        for driver in drivers:
            driver.start()
        await asyncio.sleep(plan.warmup)
        before = await Snapshot.take(a, b, plan.application_name)
        shared.window.start = time.perf_counter()
        shared.window.end = shared.window.start + plan.seconds
        await asyncio.sleep(plan.seconds)
        after = await Snapshot.take(a, b, plan.application_name)
        shared.sending = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(d.idle for d in drivers)), DRAIN_TIMEOUT_S)
        lost = await _settle(drivers, listeners)
    finally:
        await close_all([*drivers, *listeners])
    busy = after.machine_busy - before.machine_busy
    total = after.machine_total - before.machine_total
    return Result(
        layout,
        events=sum(sock.measured for sock in listeners),
        driver_events=sum(d.measured for d in drivers),
        seconds=plan.seconds,
        lost=lost,
        failures=sum(
            sock.failures + (sock.closed_by_server is not None) for sock in [*drivers, *listeners]
        ),
        cpu_a=after.a - before.a,
        cpu_b=after.b - before.b,
        cpu_redis=after.redis - before.redis,
        cpu_postgres=after.postgres_since(before),
        machine_busy=busy / total if total else float("nan"),
    )


async def _settle(drivers: list[Driver], listeners: list[Listener]) -> int:
    """Wait (bounded) until each listener has every event its driver saw; return the shortfall."""
    pairs = list(zip(drivers, listeners, strict=True))
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        missing = sum(max(d.events - sock.events, 0) for d, sock in pairs)
        if missing == 0 or time.monotonic() >= deadline:
            return missing
        await asyncio.sleep(0.05)


# Report


def summary(runs: list[dict[str, Result]]) -> str:
    """Medians over the runs, and the median of the within-run ratios."""
    lines = []
    for layout in LAYOUTS:
        rates = [run[layout].rate for run in runs]
        redis = [run[layout].cost_ms(run[layout].cpu_redis) for run in runs]
        lines.append(
            f"{layout:7} median {statistics.median(rates):10,.0f} events/s "
            f"({min(rates):,.0f}-{max(rates):,.0f}); Redis "
            f"{statistics.median(redis):.2f} CPU ms per 1,000 events; "
            f"lost {sum(run[layout].lost for run in runs)}"
        )
    ratios = [run["across"].rate / run["same"].rate for run in runs]
    lines.append(
        f"across / same: median {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}x-{max(ratios):.2f}x)"
    )
    return "\n".join(lines)


async def run_all(args: argparse.Namespace) -> None:
    """Start A and B once, measure each layout ``--runs`` times, print the report."""
    plan = Plan(
        args.users,
        args.events,
        args.warmup,
        args.seconds,
        secret=secrets.token_urlsafe(32),
        application_name=f"bench-instances-{secrets.token_hex(4)}",
    )
    print(report.machine())
    print(
        f"- {plan.users} users, each with a driver on A running `stream {plan.events}` runs "
        f"back to back; {plan.warmup:g} s warm-up, {plan.seconds:g} s window; {args.runs} run(s)"
    )
    runs: list[dict[str, Result]] = []
    with tempfile.TemporaryDirectory() as workdir:
        async with two_instances(plan, Path(workdir)) as (a, b):
            print(HEADER)
            for index in range(args.runs):
                # Alternate the order, so that neither layout always runs on a warmer system.
                order = LAYOUTS if index % 2 == 0 else LAYOUTS[::-1]
                results: dict[str, Result] = {}
                for layout in order:
                    results[layout] = await measure(layout, a, b, plan, f"r{index}-{layout}")
                    print(results[layout].row(), flush=True)
                runs.append(results)
    print(summary(runs))


def main() -> None:
    """Parse the options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100, help="users, each with 2 sockets")
    parser.add_argument("--events", type=int, default=100, help="agent events per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    raise_fd_limit()
    run(lambda: run_all(args))


if __name__ == "__main__":
    main()
