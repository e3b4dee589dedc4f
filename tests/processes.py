"""Running ``chatgate`` as a real process, the way operators run it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from support import LocalAddress, free_socket

CHATGATE = str(Path(sys.executable).parent / "chatgate")
_STARTUP_S = 20.0


@dataclass
class ServerProcess(LocalAddress):
    """A ``chatgate serve`` child; its output is collected in files for inspection."""

    process: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(
            errors="replace"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def free_port() -> int:
    """A port nothing listens on right now."""
    probe = free_socket()
    port = int(probe.getsockname()[1])
    probe.close()
    return port


OWNED_PREFIXES = ("CHATGATE_", "E2E_")
OWNED_NAMES = frozenset(
    {
        "ENVIRONMENT",
        "GOOGLE_CLOUD_PROJECT",
        "K_SERVICE",
        "KUBERNETES_SERVICE_HOST",
        "DISABLE_ENHANCED_E2E_DETECTION",
        "PORT",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    }
)
"""Variables the gateway reads: the tests set them, never the developer's shell."""


def base_env(**variables: str) -> dict[str, str]:
    """The parent's environment without any chatgate setting, plus ``variables``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(OWNED_PREFIXES) and k not in OWNED_NAMES
    }
    env.update(variables)
    return env


def wait_healthy(server: ServerProcess) -> None:
    """Poll /healthz until the child serves (a child process offers nothing to await)."""
    deadline = time.monotonic() + _STARTUP_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"server exited with {server.process.returncode}: {server.output()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.http_url}/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"server did not become healthy: {server.output()}")


@contextlib.contextmanager
def server_process(
    tmp_path: Path, port: int | None = None, **variables: str
) -> Iterator[ServerProcess]:
    """Start ``chatgate serve`` on a free port with ``variables``; stop it with SIGTERM after."""
    if port is None:
        port = free_port()
    env = base_env(CHATGATE_PORT=str(port), CHATGATE_LOG_FORMAT="json", **variables)
    out, err = tmp_path / f"stdout-{port}.log", tmp_path / f"stderr-{port}.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [CHATGATE, "serve"], env=env, stdout=stdout, stderr=stderr, cwd=tmp_path
        )
    server = ServerProcess(process, port, out, err)
    try:
        wait_healthy(server)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_cli(
    *args: str, timeout: float = 30.0, **variables: str
) -> subprocess.CompletedProcess[str]:
    """Run ``chatgate ARGS`` to completion with a clean environment plus ``variables``."""
    return subprocess.run(
        [CHATGATE, *args],
        env=base_env(**variables),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
