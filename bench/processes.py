"""Server processes under test: started, awaited until they listen, measured, stopped.

Every child is tied to the harness: it gets SIGTERM if the harness dies
(``PR_SET_PDEATHSIG``), and :class:`Fleet` stops each one it started, SIGTERM
then SIGKILL, whatever happened in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import asyncpg
import psutil

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
CHATGATE = Path(sys.executable).parent / "chatgate"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1
_OWNED_ENV = ("CHATGATE_", "E2E_")
_OWNED_NAMES = {"ENVIRONMENT", "GOOGLE_CLOUD_PROJECT", "K_SERVICE", "PORT", "PYTHONPATH"}
PG_URL = os.environ.get("CHATGATE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CHATGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
_DROP_TIMEOUT_S = 30.0

# The limits are raised so that the load, not a per-user or per-socket policy,
# decides the figures: each load socket is its own user anyway.
CHATGATE_LOAD_ENV = {
    "ENVIRONMENT": "production",
    "CHATGATE_LOG_LEVEL": "WARNING",
    "CHATGATE_LOG_FORMAT": "json",
    "CHATGATE_RATE_LIMIT_MESSAGES": "100000000",
    "CHATGATE_RATE_LIMIT_WINDOW_S": "1",
    "CHATGATE_MAX_CONNECTIONS_PER_USER": "100000",
    "CHATGATE_MAX_CONNECTIONS": "100000",
    "CHATGATE_AGENT": "bench_agent:BenchAgent",
    "CHATGATE_BROKER_URL": "memory://",
}


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: a harness killed by SIGKILL
    # must not leave servers behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def clean_env(**variables: str) -> dict[str, str]:
    """The harness's environment without any chatgate setting, plus ``variables``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_OWNED_ENV) and key not in _OWNED_NAMES
    }
    env.update(variables)
    return env


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """A server the harness can start: its name, its wire flavour and how to run it.

    ``store`` is chatgate's store: ``memory`` (the gateway alone), ``sqlite`` (a
    database file in the run's scratch directory) or ``postgresql`` (a fresh schema of
    the local database, dropped when the server stops); ``redis`` puts the broker on
    the local Redis under a key prefix of the server's own.
    """

    name: str
    flavor: str
    checks_tokens: bool
    store: str | None = None
    redis: bool = False

    def command(self, port: int) -> list[str]:
        """The argv that serves on ``port``."""
        if self.store is not None:
            return [str(CHATGATE), "serve", "--port", str(port)]
        module = f"bench.server_{self.name.replace('-', '_')}"
        return [sys.executable, "-m", module, "--port", str(port)]

    def schema(self, port: int) -> str | None:
        """The PostgreSQL schema of a server on ``port``, when its store is PostgreSQL."""
        return f"bench_{port}_{secrets.token_hex(4)}" if self.store == "postgresql" else None

    def environment(
        self, secret: str, workdir: Path, port: int, schema: str | None = None
    ) -> dict[str, str]:
        """The child's environment (``schema``: see :meth:`schema`)."""
        if self.store is None:
            return clean_env(BENCH_JWT_SECRET=secret, PYTHONPATH=str(REPO))
        database = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{workdir}/{port}.db",
            "postgresql": f"{PG_URL}?search_path={schema}",
        }[self.store]
        broker = (
            {
                "CHATGATE_BROKER_URL": REDIS_URL,
                "CHATGATE_BROKER_KEY_PREFIX": f"bench-{port}-{secrets.token_hex(4)}",
            }
            if self.redis
            else {}
        )
        return clean_env(
            **{
                **CHATGATE_LOAD_ENV,
                "CHATGATE_JWT_SECRET": secret,
                "CHATGATE_DATABASE_URL": database,
                # The chatgate next to this bench, whichever checkout is installed.
                "PYTHONPATH": os.pathsep.join((str(BENCH), str(REPO / "src"))),
                **broker,
            }
        )


SERVERS = {
    "chatgate": ServerSpec("chatgate", "json", checks_tokens=True, store="memory"),
    "chatgate-sqlite": ServerSpec("chatgate-sqlite", "json", checks_tokens=True, store="sqlite"),
    "chatgate-postgres": ServerSpec(
        "chatgate-postgres", "json", checks_tokens=True, store="postgresql"
    ),
    "chatgate-pg-redis": ServerSpec(
        "chatgate-pg-redis", "json", checks_tokens=True, store="postgresql", redis=True
    ),
    "socketio": ServerSpec("socketio", "socketio", checks_tokens=True),
    "socketio-lean": ServerSpec("socketio-lean", "socketio", checks_tokens=True),
    "uvicorn": ServerSpec("uvicorn", "json", checks_tokens=False),
    "picows": ServerSpec("picows", "json", checks_tokens=False),
}


def drop_schema(schema: str) -> None:
    """Drop a server's PostgreSQL schema and everything in it.

    Runs its own event loop in a thread, so that it works whether or not the
    caller is inside one.
    """
    failed: list[BaseException] = []

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL, timeout=_DROP_TIMEOUT_S)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    def work() -> None:
        try:
            asyncio.run(drop())
        except (OSError, asyncpg.PostgresError) as exc:
            failed.append(exc)

    worker = threading.Thread(target=work, name="bench-drop-schema")
    worker.start()
    worker.join(_DROP_TIMEOUT_S * 2)
    if failed:
        raise RuntimeError(f"could not drop schema {schema}: {failed[0]}")


@dataclass
class Server:
    """A running server process."""

    spec: ServerSpec
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    secret: str
    schema: str | None = None
    """The PostgreSQL schema the server has to itself, dropped when it stops."""

    @property
    def name(self) -> str:
        """The server's name in the report."""
        return self.spec.name

    def target(self) -> dict[str, object]:
        """How a load generator reaches it."""
        return {
            "port": self.port,
            "flavor": self.spec.flavor,
            "secret": self.secret if self.spec.checks_tokens else None,
        }

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def cpu_s(self) -> float:
        """CPU seconds (user and system) the server process has used so far."""
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's output, for an error message."""
        return self.log.read_text(errors="replace")[-chars:]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Fleet:
    """Starts servers and guarantees that each one it started is stopped."""

    workdir: Path
    secret: str
    started: list[Server] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    def start(
        self,
        name: str,
        wrapper: Sequence[str] = (),
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ) -> Server:
        """Start ``name`` on a free port; return once it accepts connections.

        ``wrapper`` is put before the server's command (a profiler, say).

        Raises:
            RuntimeError: the server exited or did not listen within the startup timeout.
        """
        spec = SERVERS[name]
        port = free_port()
        log = self.workdir / f"{name}-{port}.log"
        schema = spec.schema(port)
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and scripts
                [*wrapper, *spec.command(port)],
                env=spec.environment(self.secret, self.workdir, port, schema),
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only; no threads are started yet
            )
        server = Server(spec, port, process, log, self.secret, schema)
        self.started.append(server)
        self.pids.append(process.pid)
        self._wait_listening(server, startup_timeout_s)
        return server

    @staticmethod
    def _wait_listening(server: Server, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not server.alive():
                raise RuntimeError(f"{server.name} exited at startup:\n{server.log_tail()}")
            if _listening(server.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{server.name} did not listen within {timeout_s:g}s")

    def stop(self, server: Server) -> None:
        """SIGTERM, then SIGKILL after the stop timeout; then drop the server's schema.

        Raises:
            RuntimeError: the schema could not be dropped (the process is stopped anyway).
        """
        process = server.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
        if server in self.started:
            self.started.remove(server)
            if server.schema is not None:
                drop_schema(server.schema)

    def stop_all(self) -> None:
        """Stop every server still running."""
        for server in list(self.started):
            self.stop(server)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop_all()
