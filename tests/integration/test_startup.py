"""A store that is down at boot: waited for within CHATGATE_STARTUP_TIMEOUT_S, then exit 3
with one line. Real ``chatgate serve`` processes, a real PostgreSQL behind a TCP relay.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from databases import postgres_schema
from processes import free_port, run_cli, server_process
from support import SECRET

_UVICORN_STARTUP_FAILURE = 3
_RETRYING = "dependency unavailable at startup; retrying"


class Relay:
    """Forwards TCP connections from a local port to PostgreSQL, once started."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def relay_started_once_logged(logs: list[Path], line: str, port: int) -> Iterator[Relay]:
    """Start the relay once ``line`` appears in one of ``logs`` (polled for at most 20 s)."""
    relay = Relay(port, ("127.0.0.1", 5432))
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 20.0
        while not done.is_set() and time.monotonic() < deadline:
            if any(log.exists() and line in log.read_text(errors="replace") for log in logs):
                relay.start()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield relay
    finally:
        done.set()
        watcher.join()
        relay.stop()


def test_a_store_that_never_answers_stops_boot_with_one_line_and_exit_3() -> None:
    closed = free_port()
    result = run_cli(
        "serve",
        CHATGATE_PORT=str(free_port()),
        CHATGATE_JWT_SECRET=SECRET,
        CHATGATE_DATABASE_URL=f"postgresql://postgres:pw-never-shown@127.0.0.1:{closed}/test",
        CHATGATE_STARTUP_TIMEOUT_S="1",
        CHATGATE_LOG_FORMAT="json",
    )
    output = result.stdout + result.stderr
    assert result.returncode == _UVICORN_STARTUP_FAILURE, output
    assert (
        f"chatgate: startup failed: postgresql store at 127.0.0.1:{closed}/test unavailable: "
        "ConnectionRefusedError; "
        "gave up after 1s (CHATGATE_STARTUP_TIMEOUT_S)"
    ) in output
    assert _RETRYING in output
    assert "Traceback" not in output
    assert "pw-never-shown" not in output


async def test_a_store_that_comes_up_late_is_waited_for(tmp_path: Path) -> None:
    async with postgres_schema() as url:
        relay_port, server_port = free_port(), free_port()
        late_url = url.replace("127.0.0.1:5432", f"127.0.0.1:{relay_port}")
        # The database "comes up" only once the gateway has found it down.
        logs = [tmp_path / f"{stream}-{server_port}.log" for stream in ("stdout", "stderr")]
        with (
            relay_started_once_logged(logs, _RETRYING, relay_port),
            server_process(
                tmp_path,
                port=server_port,
                CHATGATE_JWT_SECRET=SECRET,
                CHATGATE_DATABASE_URL=late_url,
                CHATGATE_STARTUP_TIMEOUT_S="15",
            ) as server,
        ):
            async with httpx.AsyncClient(timeout=5.0) as client:
                ready = await client.get(f"{server.http_url}/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["status"] == "ready"
            output = server.output()
            assert _RETRYING in output
            assert "startup failed" not in output
