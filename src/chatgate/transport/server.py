"""Serving the app with uvicorn: its configuration, and a server that exits 0 after a drain.

The HTTP protocol it runs is :class:`~chatgate.transport.uvicorn_http.GatewayHttpProtocol`,
which bounds the request head and the number of open sockets; the WebSocket
protocol is :class:`~chatgate.transport.uvicorn_ws.GatewayWebSocketProtocol`,
which maps every protocol-level close onto the close-code table.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
import resource
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from chatgate.settings import Settings
from chatgate.transport.uvicorn_http import (
    GatewayConfig,
    GatewayHttpProtocol,
    TransportLimits,
    limits_of,
)
from chatgate.transport.uvicorn_ws import GatewayWebSocketProtocol

log = logging.getLogger("chatgate.transport.server")

_DRAIN_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_GC_THRESHOLD = 10_000
_RFC_TOO_BIG = 1009
_RFC_INTERNAL = 1011
_SPARE_FILES = 256
_UVICORN_ERROR_LOG = "uvicorn.error"
"""Descriptors beyond one per socket: store and broker pools, logs, the listening sockets."""


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The server's configuration: the gateway's protocols, and uvloop when installed.

    Call it once logging is configured: it pins uvicorn's error logger to the level in force.
    """
    _pin_uvicorn_log_level()
    options: dict[str, Any] = {
        "host": settings.bind_host,
        "port": settings.port,
        "ws": GatewayWebSocketProtocol,
        "ws_max_size": settings.max_message_bytes,
        "ws_ping_interval": settings.heartbeat_interval_s,
        "ws_ping_timeout": settings.heartbeat_timeout_s,
        "ws_per_message_deflate": settings.ws_compression,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        # httptools is a dependency: the head limits live in the gateway's subclass of it.
        "http": GatewayHttpProtocol,
        "lifespan": "on",
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": max(settings.drain_timeout_s - 1.0, 1.0),
    }
    options.update(overrides)
    return GatewayConfig(app, limits=TransportLimits.from_settings(settings), **options)


def _pin_uvicorn_log_level() -> None:
    """Give ``uvicorn.error`` its effective level as its own, the same lines passing.

    uvicorn tests the logger's own level, not the effective one, to decide
    whether to format a TRACE line: unset (0), it formats four per socket
    only for the logger to drop them.
    """
    logger = logging.getLogger(_UVICORN_ERROR_LOG)
    if logger.level == logging.NOTSET:
        logger.setLevel(logger.getEffectiveLevel())


def file_limit_warning(max_connections: int) -> str | None:
    """A warning when this process may not open a descriptor for every allowed socket."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + _SPARE_FILES
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    return (
        f"the open-file limit ({soft}) is below CHATGATE_MAX_CONNECTIONS ({max_connections}) "
        f"plus {_SPARE_FILES} spare: raise it (ulimit -n {needed}) "
        "or lower CHATGATE_MAX_CONNECTIONS"
    )


class GatewayServer(uvicorn.Server):
    """uvicorn's server, exiting 0 after an orderly drain.

    uvicorn re-raises the signal it caught once it has drained, so a supervisor
    would see a process killed by SIGTERM; the drain finished, so say so.
    """

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until told to exit; first, say if the file limit cannot hold every socket."""
        warning = file_limit_warning(limits_of(self.config).max_connections)
        if warning is not None:
            log.warning(warning)
        super().run(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Route SIGINT and SIGTERM to a graceful shutdown while serving."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _DRAIN_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def serve(app: ASGIApp, settings: Settings, sockets: list[socket.socket] | None = None) -> None:
    """Run the server (on ``sockets`` when given) until SIGTERM or SIGINT, then drain."""
    # Objects made at boot live as long as the process: freeze them out of
    # every collection. Each socket and event allocates a few dozen objects;
    # with the default threshold of 700 the collector ran every few events.
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_THRESHOLD, *gc.get_threshold()[1:])
    GatewayServer(uvicorn_config(app, settings)).run(sockets=sockets)
